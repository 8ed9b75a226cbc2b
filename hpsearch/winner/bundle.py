"""The winner bundle: a run's best retrained net on disk (``<run>/winner.pt``) and back.

The bundle holds the weights and the optimizer's state (so ``partial_fit`` on a loaded winner goes
on with Adam's moments instead of restarting them), the config, the dataset's name, image shape and
class names, the test accuracy, the epochs and the per-epoch history, and the preprocessing that turns a picture
into the net's input (``"preprocess"``: image shape, scaling, inversion, centering; see
``hpsearch.data.preprocess``; bundles written before it get their dataset's settings). It loads with
``torch.load(weights_only=True)``: plain tensors, numbers, strings, lists and dicts only.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import torch
from skorch.history import History

from ..data.dataset import Dataset
from ..data.preprocess import preprocessing_for
from ..errors import UsageError, brief, shell
from ..rundir.atomic import atomic_write
from ..rundir.names import WINNER_FILE
from ..rundir.pickle_scan import load_torch_data
from ..rundir.states import unreadable
from ..tasks import task_for
from ..training.models import is_user_model, model_class, module_keys, trust
from ..training.models.code import code_digest, same_code
from ..training.models.user import ModuleImportError, add_module_path, module_root, run_folder_holding
from ..training.net import make_net, resolve_device
from .familiar import familiarity_reference
from .limits import MAX_VALUES, whole

__all__ = ["save_winner", "winner_payload", "load_winner", "read_winner_info", "BUNDLE_FORMAT"]

BUNDLE_FORMAT = 1


def _history_list(net) -> list[dict]:
    """The skorch history without per-batch records, JSON-clean (for the bundle)."""
    def plain(v):  # numpy scalars would not load with torch.load(weights_only=True)
        return v.item() if isinstance(v, np.generic) else v

    return [{k: plain(v) for k, v in epoch.items()
             if k != "batches" and isinstance(v, bool | int | float | str | np.generic)}
            for epoch in net.history]


def _on_cpu(state):
    """A (nested) state dict with every tensor copied to the CPU."""
    if isinstance(state, torch.Tensor):
        return state.detach().cpu().clone()
    if isinstance(state, dict):
        return {k: _on_cpu(v) for k, v in state.items()}
    if isinstance(state, list | tuple):
        return type(state)(_on_cpu(v) for v in state)
    return state


def winner_payload(net) -> bytes:
    """What of a fitted net goes into the bundle (weights, optimizer state, history, batch size),
    serialized: it travels from a job's process to the one that saves the winner as plain bytes."""
    buffer = io.BytesIO()
    torch.save({
        "state_dict": _on_cpu(net.module_.state_dict()),
        "optimizer_state": _on_cpu(net.optimizer_.state_dict()),
        "epochs": len(net.history),
        "batch_size": int(net.batch_size),
        "history": _history_list(net),
    }, buffer)
    return buffer.getvalue()


def save_winner(net, run_dir, dataset: Dataset, *, config: dict, test_accuracy: float,
                extra: dict | None = None) -> Path:
    """Save a fitted net (or its ``winner_payload``) as the run's winner in ``<run_dir>/winner.pt``,
    atomically.

    Returns
    -------
    Path
        The bundle's path.
    """
    run_dir = Path(run_dir)
    payload = net if isinstance(net, bytes) else winner_payload(net)
    parts = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    bundle = {
        "format": BUNDLE_FORMAT,
        "state_dict": parts["state_dict"],
        "optimizer_state": parts["optimizer_state"],
        "config": json.loads(json.dumps(config)),
        "dataset": dataset.name,
        "image_shape": [int(v) for v in dataset.image_shape],
        "class_names": list(dataset.class_names),
        "n_features": int(dataset.n_features),
        "n_classes": int(dataset.n_classes),
        "positions": int(dataset.task.positions),  # 0: one label per image
        "test_accuracy": float(test_accuracy),
        "epochs": parts["epochs"],
        "batch_size": parts["batch_size"],
        "history": parts["history"],
        "preprocess": preprocessing_for(dataset.name, dataset.image_shape),
        # is an input like the training images? (hpsearch.winner.familiar; the page and predict flag it)
        "familiarity": familiarity_reference(dataset.X_train),
        **_module_entry(config),
        **(extra or {}),
    }
    path = run_dir / WINNER_FILE
    atomic_write(path, lambda fh: torch.save(bundle, fh), binary=True)
    return path


def _module_entry(config: dict) -> dict:
    """Your module, named (never pickled): its import path, the module path it was found in (the folder
    holding its module or package; None when installed), and the constructor's arguments from the
    config (``image_shape`` and ``n_classes`` are the bundle's own)."""
    kind = config.get("model")
    if not is_user_model(kind):
        return {}
    return {"module": {"import": kind, "path": module_root(model_class(kind)), "code": code_digest(kind),
                       "args": {k: config[k] for k in module_keys(kind) if k in config}}}


def _import_module_of(bundle: dict, run_dir) -> bool:
    """Make the winner's own module importable again, or say what to do; returns whether its code changed
    since the retraining (a winner written before the code was recorded: never). The folder the bundle
    names is used only when it exists, is absolute and lies in no run folder (a shared winner.pt names
    code, it never brings any)."""
    entry = bundle.get("module")
    if not isinstance(entry, dict):
        return False
    path = entry.get("path")
    usable = isinstance(path, str) and Path(path).is_absolute() and Path(path).is_dir()
    in_run = usable and run_folder_holding(path) is not None
    trust.on_a_run(run_dir)
    if usable and not in_run and trust.trusted("", path):
        add_module_path(path)
    elif usable and not in_run:
        trust.note_named(path)  # imported only once trusted (hpsearch trust RUN)
    ref = str(entry.get("import"))
    try:
        model_class(ref)
        return "code" in entry and not same_code(entry["code"], code_digest(ref))
    except ModuleImportError as exc:
        top = ref.split(":")[0].split(".")[0]
        where = (f"the folder it names, {path}, is in a run folder, where hpsearch never imports from: put {top}.py "
                 "elsewhere and" if in_run else
                 f"put {top}.py (or {top}/) back in {path} (where the search found it), or" if path else
                 "install it, or")
        raise UsageError(f"{Path(run_dir) / WINNER_FILE}: the winner is your network {ref!r}, which cannot be "
                         f"imported here: {exc.why}; {where} make it importable (PYTHONPATH, pip install)") from None


def _changed(kind: str) -> str:
    return (f"{kind} changed since the retraining: put it back as it was" if is_user_model(kind) else
            f"the {kind} model of this hpsearch differs from the one that saved it: use that version")


def _check_module_takes_config(config: dict, kind: str, run_dir) -> None:
    """Your module must still take every argument the winner was trained with: one it no longer
    takes would be dropped, and the net built with its default instead."""
    if not is_user_model(kind):
        return
    from ..space.checks import NET_CHECKS  # the training settings: every other key went to the module

    takes = set(module_keys(kind))
    dropped = [key for key in config if key not in NET_CHECKS and key not in takes]
    if dropped:
        given = ", ".join(f"{key}={config[key]!r}" for key in dropped)
        raise UsageError(f"{Path(run_dir) / WINNER_FILE}: the winner was trained with {given}, which {kind} no "
                         f"longer takes (it takes {', '.join(sorted(takes))}); {_changed(kind)}, or retrain: "
                         f"hpsearch retrain {shell(run_dir)}")


def _nothing_to_retrain(run_dir) -> str | None:
    """Why ``hpsearch retrain`` would refuse this run too (no trial scored), said instead of sending you there."""
    from ..rundir.exports import unscored
    from ..rundir.store import load_results

    try:
        return unscored(run_dir, load_results(run_dir))
    except UsageError:  # no trials.db, or a damaged one: the retraining names that itself
        return None


def _read_bundle(run_dir) -> dict:
    path = Path(run_dir) / WINNER_FILE
    if not path.is_file():
        raise UsageError(_nothing_to_retrain(run_dir) or f"{run_dir} holds no {WINNER_FILE}; retrain the search's "
                         f"best configs first: hpsearch retrain {shell(run_dir)}")
    try:
        bundle = load_torch_data(path)
    except Exception as exc:  # noqa: BLE001 - truncated zip, overwritten file, foreign pickle: all say the same
        raise UsageError(f"{path} is damaged ({unreadable(exc, path)}); retrain to write it again: "
                         f"hpsearch retrain {shell(run_dir)}") from None
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        found = bundle.get("format") if isinstance(bundle, dict) else type(bundle).__name__
        raise UsageError(f"{path} has bundle format {found!r}; this hpsearch reads "
                         f"format {BUNDLE_FORMAT}; retrain the run again to rewrite it")
    why = _malformed(bundle)
    if why:  # data, but not what a retraining writes: a traceback, or gigabytes for a crafted image size
        raise UsageError(f"{path} is damaged ({why}); retrain to write it again: hpsearch retrain {shell(run_dir)}")
    return _with_defaults(bundle)


_MAX_CLASSES = 10 ** 6


def _image_shape_fault(shape) -> str | None:
    if not isinstance(shape, list | tuple) or len(shape) != 3 or not all(whole(v, 1, MAX_VALUES) for v in shape) \
            or math.prod(shape) > MAX_VALUES:
        return f"image_shape {shape!r} is not [channels, height, width] of at most {MAX_VALUES:,} values"
    return None


def _malformed(bundle: dict) -> str | None:
    """What in a bundle read as data is not of the kind or size a retraining writes, or None."""
    for key, kind in (("state_dict", dict), ("config", dict), ("history", list)):
        if not isinstance(bundle.get(key), kind):
            return f"its {key} is {type(bundle.get(key)).__name__}, not a {kind.__name__}"
    for key, low, high in (("n_classes", 1, _MAX_CLASSES), ("n_features", 1, MAX_VALUES),
                           ("batch_size", 1, 10 ** 9), ("epochs", 0, 10 ** 6)):
        if not whole(bundle.get(key), low, high):
            return f"its {key} {bundle.get(key)!r} is not a whole number in {low}..{high:,}"
    if not whole(bundle.get("positions", 0), 0, MAX_VALUES):
        return f"its positions {bundle.get('positions')!r} is not a whole number of labels per image"
    fault = _image_shape_fault(bundle.get("image_shape"))
    if fault:
        return fault
    names = bundle.get("class_names")
    if names is not None and (not isinstance(names, list) or len(names) != bundle["n_classes"]
                              or not all(isinstance(n, str) for n in names)):
        return f"its class_names are not {bundle['n_classes']} names, one per class"
    preprocess = bundle.get("preprocess")
    if preprocess is not None and (not isinstance(preprocess, dict)
                                   or _image_shape_fault(preprocess.get("image_shape"))):
        return (f"its preprocess is not the settings a retraining writes (an image_shape of at most {MAX_VALUES:,} "
                "values)")
    return None


def _with_defaults(bundle: dict) -> dict:
    """Keys added to the bundle since format 1 began, filled in for older bundles."""
    bundle.setdefault("class_names", [str(i) for i in range(int(bundle.get("n_classes", 10)))])
    bundle.setdefault("preprocess", preprocessing_for(bundle.get("dataset", ""), bundle["image_shape"]))
    bundle.setdefault("positions", 0)
    return bundle


def read_winner_info(run_dir) -> dict:
    """The winner's bundle without its weights: config, dataset, image_shape, class_names,
    test_accuracy, epochs, history, trial ..."""
    bundle = _read_bundle(run_dir)
    bundle.pop("state_dict")
    bundle.pop("optimizer_state", None)
    return bundle


def load_winner(run_dir, device: str = "cpu"):
    """Load the winner saved in ``run_dir`` as a fitted skorch net.

    Parameters
    ----------
    run_dir : path
        A run folder holding ``winner.pt`` (written by ``retrain_top`` / ``hpsearch retrain``).
    device : str
        Where the net lives: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when present).

    Returns
    -------
    SeededNet
        The fitted net: ``predict``/``predict_proba`` give exactly what the net gave before it was
        saved, ``net.history`` holds its training history, and its optimizer holds the saved state
        (``partial_fit`` continues it). ``net.winner_`` is the bundle's metadata (config, dataset,
        image_shape, class_names, test_accuracy, ...).

    Examples
    --------
    >>> net = hpsearch.load_winner("results/digits_mlp_mnist_seed0")  # doctest: +SKIP
    >>> net.predict(load_dataset("digits").X_test[:5])                  # doctest: +SKIP
    """
    if str(device).startswith("cuda") and not torch.cuda.is_available():  # torch would only assert
        raise UsageError(f"device={device!r} asks for CUDA, but no CUDA GPU is visible on this machine; "
                         "load with device='cpu' (or 'auto', which picks CUDA when there is one)")
    device = resolve_device(device)
    bundle = _read_bundle(run_dir)
    code_changed = _import_module_of(bundle, run_dir)
    state = bundle.pop("state_dict")
    optimizer_state = bundle.pop("optimizer_state", None)  # absent in bundles written before it was saved
    kind = str(bundle["config"].get("model", "mlp"))
    _check_module_takes_config(bundle["config"], kind, run_dir)
    net = make_net(bundle["config"], bundle["n_features"], bundle["n_classes"],
                   image_shape=tuple(bundle["image_shape"]), device=device,
                   max_epochs=bundle["epochs"] or 1, batch_size=bundle["batch_size"], patience=0,
                   task=task_for(bundle["positions"]))
    try:
        net.initialize()
        net.module_.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError) as exc:  # torch: missing or unexpected keys, other shapes
        why = brief(exc, width=240, joined=True).rstrip(".")
        raise UsageError(f"{Path(run_dir) / WINNER_FILE} no longer fits {kind}: {type(exc).__name__}: {why}; "
                         f"{_changed(kind)}, or retrain: hpsearch retrain {shell(run_dir)}") from None
    if code_changed:  # the weights fit, so the edit is silent: another forward, or another layer of one shape
        raise UsageError(f"{Path(run_dir) / WINNER_FILE}: the winner's network {_changed(kind)} (its code: the "
                         "module and the modules beside it that it imports, comments and layout aside)")
    bad = next((name for name, value in net.module_.named_parameters()  # (a buffer may be a -inf mask)
                if not torch.isfinite(value).all()), None)
    if bad is not None:  # every prediction would be the argmax of NaN: pictures of nothing, exit 0
        raise UsageError(f"{Path(run_dir) / WINNER_FILE} is damaged: its weights {bad} are not finite (NaN or inf); "
                         f"retrain to write it again: hpsearch retrain {shell(run_dir)}")
    if optimizer_state is not None:
        net.optimizer_.load_state_dict(optimizer_state)  # moves the moments to the parameters' device
    net.module_.eval()
    net.history = History(bundle["history"])
    net.winner_ = bundle
    return net
