"""An exported winner at work, without the run folder: ``model.onnx`` or ``model.ts`` loaded in its own
runtime (onnxruntime, ``torch.jit``) and run on a batch, and ``hpsearch predict --model``'s answers from
the file and its card alone (the card checked first, field by field and against the file). The export
(``hpsearch.winner.export``) checks its files through the same runner, so what it checks is what a user
of the file runs."""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..errors import UsageError, brief, param, plural
from ..jobs.resources import threads_per_job
from ..training.models.trust import trusted_torchscript
from .limits import MAX_VALUES, whole

__all__ = ["runner", "run_batch", "exported_answers", "FORMATS", "CARD_FILE", "FAMILIAR_FILE", "BATCH_ADVICE"]

FORMATS = {"onnx": "model.onnx", "torchscript": "model.ts"}
CARD_FILE = "model.json"
FAMILIAR_FILE = "familiarity.npz"  # the winner's reference images and threshold: "unlike the training images"
# The tracer records a Python number as a constant: len(x) in a forward fixes the batch at the example's 2.
BATCH_ADVICE = ("a forward that takes the batch size as a Python number (len(x), or x.shape[0] passed through int()) "
                "is traced as a fixed batch of 2: write x.flatten(1) or x.view(x.size(0), -1) in your module, and "
                "export again")
AGAIN = "export the run again: hpsearch export RUN_DIR"


def onnx_session(path):
    """ONNX Runtime's session of ``path`` on the CPU, its threads as a job's: its own pool ignores
    ``$OMP_NUM_THREADS`` and ``taskset``, so it is told the count (jobs x threads <= cores)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads_per_job(1), 1
    options.log_severity_level = 3  # its errors are said in hpsearch's one line, not also in its coloured log
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def script_digest(path: Path) -> str:
    """A file's sha256 (the trust state keeps a TorchScript file's whole; the card the first 20 digits)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def card_digest(path: Path) -> str:
    """A file's digest as the card keeps it (``file_digests``, ``winner_digest``): its sha256's first 20 digits."""
    return script_digest(path)[:20]


def runner(fmt: str, path: Path, made_here: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    """The exported file ``path`` loaded once in its runtime, as a function of a float32 batch (NCHW) that
    returns the probabilities; a file that does not load (damaged, replaced) is a ``UsageError`` naming it.
    TorchScript is a program (loading it runs what it holds): only a file this machine's export wrote is
    loaded (``made_here``: the export's own staged file)."""
    if fmt == "torchscript" and not made_here and not trusted_torchscript(script_digest(path)):
        raise UsageError(f"{path} is TorchScript, a program: loading it runs the code it holds, and it is not a file "
                         "hpsearch export wrote on this machine; predict with the model.onnx beside it (data, not "
                         "code), or export the run here (hpsearch export RUN)")
    try:
        if fmt == "onnx":
            session = onnx_session(path)

            def run_onnx(X: np.ndarray) -> np.ndarray:
                return session.run(None, {"images": np.asarray(X, np.float32)})[0]
            # the shape the file declares (a name where a dimension is free): a card is checked against it
            run_onnx.declared = list(session.get_inputs()[0].shape)
            return run_onnx
        with warnings.catch_warnings():  # torch 2.13 says jit is deprecated; it reads these files all the same
            warnings.simplefilter("ignore", DeprecationWarning)
            loaded = torch.jit.load(str(path), map_location="cpu")
    except ImportError as exc:
        raise UsageError(f"{fmt} needs {exc.name}: pip install -e '.[export]'") from None
    except Exception as exc:  # noqa: BLE001 - the runtimes raise their own types for a file they cannot read
        article = "an" if fmt == "onnx" else "a"
        raise UsageError(f"{path} cannot be read as {article} {fmt} model ({type(exc).__name__}: {brief(exc)}); "
                         "export it again: hpsearch export RUN_DIR") from None

    def run(X: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return loaded(torch.as_tensor(np.asarray(X, np.float32))).numpy()
    return run


def run_batch(run: Callable[[np.ndarray], np.ndarray], X: np.ndarray, fmt: str, path: Path,
              left: Path | None = None) -> np.ndarray:
    """``run(X)``, a runtime's failure on this batch (a shape fixed at the traced batch) said in one line;
    ``left``: the export's folder, which a failure during the export leaves as it was."""
    try:
        return run(X)
    except Exception as exc:  # noqa: BLE001 - onnxruntime and torch.jit raise their own types
        what = f"the winner exported as {fmt}" if left is not None else f"{path}: the exported {fmt} model"
        after = f"; nothing written, {left} is as it was" if left is not None else ""
        raise UsageError(f"{what} fails on a batch of {plural(len(X), 'image')} ({type(exc).__name__}: "
                         f"{brief(exc)}); {BATCH_ADVICE}{after}") from None


def _read_familiarity(card: dict, folder: Path):
    """The export's reference as ``Familiarity``, or None (an export without one, or its file gone)."""
    from .familiar import Familiarity

    entry = card.get("familiarity")
    path = folder / (entry or {}).get("file", FAMILIAR_FILE)
    if not entry or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:  # a file is data: no pickle
            familiarity = Familiarity({"reference": data["reference"], "threshold": float(data["threshold"]),
                                       "quantile": float(data["quantile"])})
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(f"{path}: cannot be read ({brief(exc)}); export again (hpsearch export)") from None
    shape, wanted = list(familiarity.reference.shape[1:]), card["preprocess"]["image_shape"]
    if shape != wanted:  # another export's reference: distances between images of other shapes
        raise UsageError(f"{path}: its reference images are {shape}, not the {wanted} of {CARD_FILE}'s "
                         f"preprocess.image_shape; {AGAIN}")
    if not 0 < familiarity.threshold < math.inf:  # every score would be inf or nan
        raise UsageError(f"{path}: its threshold must be a number above 0, got {familiarity.threshold}; {AGAIN}")
    return familiarity


def _shown(value) -> str:
    """A card's value as its JSON spells it (null, true, "abc"), cut past 60 characters."""
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _fault(card_path: Path, field: str, allowed: str, got) -> UsageError:
    return UsageError(f"{card_path}: {field} must be {allowed}, got {_shown(got)}; {AGAIN}")


def _check_card(card: dict, card_path: Path) -> None:
    """Each field ``exported_answers`` reads, of the kind ``hpsearch export`` writes: a hand-edited card or
    another one's is a ``UsageError`` naming the field, not a traceback inside the preprocessing."""
    settings = card["preprocess"]
    shape = settings.get("image_shape")
    if not isinstance(shape, list) or len(shape) != 3 or not all(whole(v, 1) for v in shape) \
            or shape[0] not in (1, 3) or math.prod(shape) > MAX_VALUES:
        raise _fault(card_path, "preprocess.image_shape", "[channels, height, width]: channels 1 (grey) or 3 (RGB), "
                     f"height and width whole numbers >= 1, at most {MAX_VALUES:,} values", shape)
    # the flags preprocess reads, as the export writes them (hpsearch.data.preprocess.with_defaults)
    invert = settings.get("invert", "auto")
    if not isinstance(invert, bool) and invert != "auto":  # 1 or 0.0 would pass as true or false
        raise _fault(card_path, "preprocess.invert", 'true, false or "auto"', invert)
    for flag in ("center", "stretch"):
        if flag in settings and not isinstance(settings[flag], bool):
            raise _fault(card_path, f"preprocess.{flag}", "true or false", settings[flag])
    fit = settings.get("fit", 1.0)  # above 1 the centred ink is larger than the frame it is pasted in
    if isinstance(fit, bool) or not isinstance(fit, int | float) or not 0 < fit <= 1:
        raise _fault(card_path, "preprocess.fit", "a number above 0 and at most 1", fit)
    levels = settings.get("levels")  # 17 (digits), 256 (an image folder) or none; 1 would divide by 0
    if levels is not None and not whole(levels, 2):
        raise _fault(card_path, "preprocess.levels", "a whole number >= 2, or null (no quantizing)", levels)
    names = card["class_names"]
    if not names or not all(isinstance(n, str) for n in names):
        raise _fault(card_path, "class_names", "a list of strings, one per class", names)
    entry = card.get("familiarity")
    if entry is not None and not isinstance(entry, dict):
        raise _fault(card_path, "familiarity", f'an object ({{"file": "{FAMILIAR_FILE}", ...}}) or null', entry)
    file = (entry or {}).get("file", FAMILIAR_FILE)
    if not isinstance(file, str) or file in ("", ".", "..") or Path(file).name != file:  # beside the card only
        raise _fault(card_path, "familiarity.file", f"a file name beside {CARD_FILE} ({FAMILIAR_FILE})", file)


def _runtime_said(exc: BaseException) -> str:
    """A runtime's error in one line: TorchScript's is its last (the first only says the interpreter failed)."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    if len(lines) > 1 and "TorchScript interpreter" in lines[0]:
        return brief(RuntimeError(lines[-1]))
    return f"{type(exc).__name__}: {brief(exc)}"


def _check_against_model(card: dict, card_path: Path, run, fmt: str, path: Path) -> None:
    """The card fits the file beside it (not another export's): its image_shape is the input the file
    declares (ONNX; TorchScript declares none) and that a batch of 2 (the traced one) runs on, and its
    class_names one per output. A file that fails only on another batch size is then its batch's fault."""
    shape = card["preprocess"]["image_shape"]
    declared = getattr(run, "declared", None)
    if declared is not None and (len(declared) != 4 or any(
            isinstance(d, int) and d != s for d, s in zip(declared[1:], shape, strict=True))):
        raise _fault(card_path, "preprocess.image_shape", f"the input shape {path.name} declares, {declared[1:]}",
                     shape)
    try:
        out = np.asarray(run(np.zeros((2, *shape), np.float32)))
    except Exception as exc:  # noqa: BLE001 - onnxruntime and torch.jit raise their own types
        raise UsageError(f"{card_path}: preprocess.image_shape must be an input shape {path.name} reads, got "
                         f"{_shown(shape)} (a batch of 2 such images fails: {_runtime_said(exc)}); {AGAIN}") from None
    names = card["class_names"]
    if out.ndim not in (2, 3) or len(out) != 2:
        raise UsageError(f"{path}: the exported {fmt} model gives shape {list(out.shape)} for a batch of 2 images, "
                         f"not (2, classes) or (2, positions, classes); {AGAIN}")
    if len(names) != out.shape[-1]:
        raise UsageError(f"{card_path}: class_names must hold one name per output of {path.name} "
                         f"({out.shape[-1]}), got {plural(len(names), 'name')} ({_shown(names)}); {AGAIN}")


def exported_answers(model, files):
    """``hpsearch predict --model``: each image file through the card's preprocessing and the exported
    file alone (no run folder, no winner.pt): ``{path, class_name, probability, error}`` per file."""
    from ..data.preprocess import preprocess
    from .familiar import unlike
    from .predict_files import read_image_file

    path = Path(model)
    if path.is_dir():
        found = [path / name for name in FORMATS.values() if (path / name).is_file()]
        if not found:
            raise UsageError(f"{param('model')} {path}: no model.onnx or model.ts there; make them with hpsearch "
                             "export")
        path = found[0]
    if path.suffix not in (".onnx", ".ts") or not path.is_file():
        missing = "no such file; " if not path.exists() else ""
        raise UsageError(f"{param('model')} {path}: {missing}give a model.onnx or model.ts that hpsearch export wrote "
                         "(or their folder)")
    card_path = path.parent / CARD_FILE
    try:
        card = json.loads(card_path.read_text())
        if not isinstance(card, dict) or not isinstance(card.get("preprocess"), dict) \
                or not isinstance(card.get("class_names"), list):
            raise ValueError("not the card hpsearch export writes (an object with its preprocess and class names)")
    except (OSError, ValueError, RecursionError) as exc:
        why = "nested too deeply" if isinstance(exc, RecursionError) else exc
        raise UsageError(f"{card_path}: the card beside {path.name} cannot be read ({why}); export again") from None
    _check_card(card, card_path)  # once: every image reads the same fields
    fmt = "onnx" if path.suffix == ".onnx" else "torchscript"
    run = runner(fmt, path)  # once, not per image (a TorchScript file not made here: refused, never loaded)
    digests = card.get("file_digests")
    if isinstance(digests, dict) and isinstance(digests.get(fmt), str) and card_digest(path) != digests[fmt]:
        # another export's file of the same shape ran with this card's classes and preprocessing, unsaid
        raise UsageError(f"{param('model')} {path} is not the file {card_path} describes (another export's, or "
                         "changed since): export again, or keep each model file beside its own card")
    _check_against_model(card, card_path, run, fmt, path)
    familiarity = _read_familiarity(card, path.parent)
    for file in map(Path, files):
        answer = {"path": str(file), "class_name": None, "probability": None, "error": None}
        try:
            x = preprocess(read_image_file(file), card["preprocess"])
        except (OSError, UsageError) as exc:
            answer["error"] = f"cannot read it: {brief(exc)}" if isinstance(exc, OSError) else str(exc)
            yield answer
            continue
        proba = run_batch(run, x[None], fmt, path)[0]
        if proba.ndim == 2:  # one label per position: the digits, the product of their probabilities
            from ..viz.positions import label_text

            answer.update(class_name=label_text(proba.argmax(-1), card["class_names"]),
                          probability=float(np.prod(proba.max(-1))))
        else:
            best = int(proba.argmax())
            answer.update(class_name=card["class_names"][best], probability=float(proba[best]))
        answer.update(unlike(familiarity, x))
        yield answer
