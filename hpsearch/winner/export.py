"""Take the winner home: ``hpsearch export RUN`` writes it as ONNX (``model.onnx``) and TorchScript
(``model.ts``), each with ``model.json``, a card that says everything needed to feed it: class names,
input shape, dtype and value range, the preprocessing an image file needs (as ``winner.pt`` keeps
it), the output, the config and its scores, the data, the versions and the run's fingerprint.

The exported network returns **probabilities** (the winner's own output activation applied:
softmax, or the head's), shape ``(n, K)``, or ``(n, positions, K)`` for labels per position. The
batch dimension is dynamic, and each file is run on batches of 1 and 3 besides the traced 2, always
(a forward reading ``len(x)`` is traced as a constant). ``check`` runs each file in its own runtime
(onnxruntime, ``torch.jit``; ``hpsearch.winner.exported``) on the run's test images and compares with
the winner: the same argmax on every image and the largest difference of a probability, printed and
held under ``TOLERANCE``. The files are staged and put in place only once they pass, so a failed
export leaves the folder as it was. The card keeps a digest of ``winner.pt`` and of each file, and
exporting again is a no-op until the winner changes, a file is damaged or replaced, or a check is
asked that was not run. The tracer's warnings are not hidden: a Python branch on a tensor value is
exported as the example input took it, and one line per format and place says so on stderr (the
export goes on).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.preprocess import with_defaults
from ..errors import UsageError, brief, param, plural, shell
from ..jobs.workers import pid_alive
from ..rundir.atomic import atomic_write, atomic_write_text
from ..rundir.lock import refuse_links_out
from ..rundir.names import WINNER_FILE
from ..training.models.trust import trust, trusted_torchscript
from .exported import (
    BATCH_ADVICE,
    CARD_FILE,
    FAMILIAR_FILE,
    FORMATS,
    card_digest,
    exported_answers,
    run_batch,
    runner,
    script_digest,
)

__all__ = ["export_winner", "exported_answers", "FORMATS", "TOLERANCE", "CARD_FILE", "FAMILIAR_FILE"]

OPSET = 17
TOLERANCE = 1e-4
PROBE_BATCHES = (1, 3)  # batch sizes each file is run on besides the traced example's 2
TRACE_ADVICE = ("the export follows only the path taken on the example input; check it, or avoid Python branches "
                "on tensor values")
# every step of hpsearch.data.preprocess.preprocess, for a deployment that has only the card
HOW = ("decode with Pillow: EXIF orientation applied, the first frame, transparency (modes RGBA, LA, PA, or P with "
       "a transparent colour) composited over white, then grey ('L') or 'RGB' as 'image_shape' (C, H, W) says; "
       "as float32 (C, h, w), scale to [0, 1] by /255 (a 16-bit grey image by /65535; 'max_value' is only how the "
       "training loader scaled its own files); invert (x = 1 - x) when 'invert' is true, or 'auto' and the mean of "
       "the border pixels (first and last rows and columns, all channels) is above 0.5; an image already H x W "
       "stays as it is, else it is resized: each channel alone, as float32 (Pillow mode 'F'), with Pillow's LANCZOS "
       "filter, then clipped to [0, 1]; with 'center' true, the ink's box (where the channels' maximum is above "
       "0.2 of its brightest) is cut out (a box longer than 4096 pixels first resized, as below, to 4096 on its "
       "longer side and the other in proportion, rounded, at least 1), padded with zeros to a square (the box in "
       "its middle), resized to round('fit' * min(H, W)) pixels a side and pasted in the middle of a zero H x W "
       "frame (no ink: the whole "
       "picture is resized); after resizing, with 'stretch' true, divide by the maximum (when above 0); last, "
       "with 'levels' set, x = round(x * (levels - 1)) / (levels - 1). hpsearch.data.preprocess.preprocess is "
       "the reference")


class Probabilities(nn.Module):
    """The winner's module with its output activation: what a user of the file wants, probabilities."""

    def __init__(self, module: nn.Module, activation):
        super().__init__()
        self.module = module
        self.activation = activation

    def forward(self, x):
        return self.activation(self.module(x)).float()  # float32, as the card says (a float64 module's too)


def _card(net, info: dict, run_dir: Path, formats: list[str], digest: str) -> dict:
    from .. import __version__
    from ..rundir.states import run_digest
    from ..rundir.store import run_fingerprint

    shape = [int(v) for v in info["image_shape"]]
    positions = int(info.get("positions", 0))
    fingerprint = run_fingerprint(run_dir) if (run_dir / "trials.db").is_file() else {}
    return {
        "files": {f: FORMATS[f] for f in formats},
        "input": {"name": "images", "shape": ["n", *shape], "dtype": "float32", "range": [0.0, 1.0],
                  "layout": "NCHW: batch, channels (1 grey, 3 RGB), height, width"},
        "output": {"name": "probabilities", "kind": "probabilities (the winner's own output activation)",
                   "shape": ["n", positions, len(info["class_names"])] if positions else
                   ["n", len(info["class_names"])], "positions": positions},
        "class_names": list(info["class_names"]),
        "preprocess": {**with_defaults(info["preprocess"]), "how": HOW},  # every flag preprocess reads
        "config": info.get("config"), "cv_score": info.get("cv_score"), "test_accuracy": info.get("test_accuracy"),
        "chosen_by": info.get("winner_by", "test"), "dataset": info.get("dataset"), "trial": info.get("trial"),
        "epochs": info.get("epochs"), "module": info.get("module"),
        "versions": {"hpsearch": __version__, "torch": torch.__version__, "onnx_opset": OPSET},
        "fingerprint": run_digest(fingerprint),
        "winner_digest": digest,
    }


def _write_familiarity(info: dict, out: Path) -> dict | None:
    """The winner's reference images (8 bits) and calibrated threshold as plain arrays beside the model
    (``FAMILIAR_FILE``, read back with ``allow_pickle=False``), so ``predict --model`` flags an input
    unlike the training images as ``predict RUN`` does; None for a winner that keeps none."""
    from .familiar import QUANTILE

    entry = info.get("familiarity")
    if not isinstance(entry, dict) or "reference" not in entry:
        return None
    reference = entry["reference"].numpy() if hasattr(entry["reference"], "numpy") else np.asarray(entry["reference"])
    atomic_write(out / FAMILIAR_FILE, lambda f: np.savez_compressed(
        f, reference=reference.astype(np.uint8), threshold=np.float64(entry["threshold"]),
        quantile=np.float64(entry.get("quantile", QUANTILE))), binary=True)
    return {"file": FAMILIAR_FILE, "threshold": float(entry["threshold"]), "images": int(len(reference)),
            "measure": "RMS pixel distance to the nearest reference image, over the threshold; above 1: unlike"}


def _traced(fmt: str, trace) -> list[str]:
    """``trace()`` with the exporters' noise (deprecations) ignored but not their TracerWarnings, which
    say the file may hold only the path the example input took: one line each, by file and line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("ignore")
        warnings.simplefilter("always", torch.jit.TracerWarning)  # "always": even one seen before
        trace()
    lines, seen = [], set()
    for w in caught:
        if (w.filename, w.lineno) not in seen:
            seen.add((w.filename, w.lineno))
            first = str(w.message).strip().splitlines()[0].split(". ")[0].rstrip(".")
            lines.append(f"{fmt}: {Path(w.filename).name}:{w.lineno}: {first}: {TRACE_ADVICE}")
    return lines


def _export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> list[str]:
    buffer = io.BytesIO()
    lines = _traced("onnx", lambda: torch.onnx.export(
        model, example, buffer, input_names=["images"], output_names=["probabilities"],
        dynamic_axes={"images": {0: "n"}, "probabilities": {0: "n"}}, opset_version=OPSET, dynamo=False))
    atomic_write(path, lambda fh: fh.write(buffer.getvalue()), binary=True)
    return lines


def _export_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> list[str]:
    traced = []
    lines = _traced("torchscript", lambda: traced.append(torch.jit.trace(model, example, check_trace=False)))
    buffer = io.BytesIO()  # saved before the file is written: a module jit cannot save is the module's fault
    with warnings.catch_warnings():  # torch 2.13 says jit is deprecated; libtorch reads these files all the same
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(traced[0], buffer)
    atomic_write(path, lambda fh: fh.write(buffer.getvalue()), binary=True)
    return lines


def export_winner(run_dir, formats=("onnx", "torchscript"), out=None, check: bool = True, dataset=None) -> dict:
    """Export the run's winner (see the module's text); returns ``{"card": path, "files": [...],
    "checks": {format: {"same_argmax": bool, "max_abs_diff": float, "images": n}}, "skipped": bool,
    "warnings": [line, ...]}``: the tracer's warnings, also printed to stderr, one line each (a Python
    branch on a tensor value: the file holds only the path the example input took). The files are put
    in place only once they run at other batch sizes than the traced one and (``check``) agree with
    the winner on the test images: a failed export leaves ``out`` as it was."""
    from ..rundir.run_info import run_dataset
    from .bundle import load_winner

    run_dir = Path(run_dir)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise UsageError(f"{param('format')} must be onnx, torchscript or both, got {', '.join(unknown) or 'none'}")
    if not (run_dir / WINNER_FILE).is_file():
        raise UsageError(f"{run_dir} holds no {WINNER_FILE}; retrain first: hpsearch retrain {shell(run_dir)}")
    if out is None:  # the run's own folder: never written through a link a shared run holds there
        refuse_links_out(run_dir, ("export",))
    out = Path(out) if out is not None else run_dir / "export"
    if out.is_file():
        raise UsageError(f"{param('out')} {out} is a file; give a folder (the export writes "
                         f"{', '.join(FORMATS.values())} and {CARD_FILE} in it)")
    digest = card_digest(run_dir / WINNER_FILE)
    card_path = out / CARD_FILE
    old = _old_card(card_path)
    if _up_to_date(old, out, formats, digest, check):
        return {"card": card_path, "files": [out / FORMATS[f] for f in formats], "checks": {}, "skipped": True,
                "warnings": []}
    net = load_winner(run_dir)
    info = net.winner_
    if old.get("winner_digest") not in (None, digest):  # another run's, or an earlier winner's: said, not silent
        print(f"{out} holds the export of another winner (trial {old.get('trial')} on {old.get('dataset')}); "
              "it is replaced", file=sys.stderr, flush=True)
    # the winner's own predict nonlinearity: skorch's softmax for cross-entropy, the head's otherwise
    model = Probabilities(net.module_.eval(), net._get_predict_nonlinearity()).eval()
    shape = tuple(int(v) for v in info["image_shape"])
    made = [folder for folder in (out, *out.parents) if not folder.exists()]  # removed again if the export fails
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{param('out')} {out}: cannot make the folder ({exc.strerror}); give a writable "
                         "one") from None
    _remove_killed_exports(out)
    # hidden until checked, and this process's own: two exports at once unlinked each other's files
    staged = {fmt: out / f".{FORMATS[fmt]}.{os.getpid()}.staged" for fmt in formats}
    try:
        traced = _write_staged(net, model, shape, staged)
        runs = {fmt: runner(fmt, path, made_here=True) for fmt, path in staged.items()}
        _check_other_batches(model, shape, runs, out)
        checks = {}
        if check:
            data = dataset if dataset is not None else run_dataset(run_dir)
            checks = _check_test_images(net, data.X_test.astype(np.float32), runs, out)
        if "torchscript" in staged:  # a program this export made: predict --model may load it here
            trust(torchscript=[script_digest(staged["torchscript"])])
        for fmt, path in staged.items():
            os.replace(path, out / FORMATS[fmt])
        made = []
    finally:
        for path in staged.values():
            with contextlib.suppress(OSError):  # (a read-only mount answers EROFS even for a missing file)
                path.unlink(missing_ok=True)
        for folder in made:  # a failed export leaves --out as it was: folders it made are gone again
            with contextlib.suppress(OSError):
                folder.rmdir()
    files = [out / FORMATS[f] for f in formats]
    # a format exported earlier for this same winner, its file still as written, stays on the card
    kept = [f for f in FORMATS if f not in formats and _intact(old, out, f)] if old.get("winner_digest") == digest \
        else []
    card = _card(net, info, run_dir, [f for f in FORMATS if f in formats or f in kept], digest)
    card["familiarity"] = _write_familiarity(info, out)
    card["checks"] = {**{f: old["checks"][f] for f in kept if f in (old.get("checks") or {})}, **checks}
    card["file_digests"] = {f: card_digest(out / FORMATS[f]) for f in card["files"]}
    atomic_write_text(card_path, json.dumps(card, indent=2, default=str) + "\n")
    return {"card": card_path, "files": files, "checks": checks, "skipped": False, "warnings": traced}


def _old_card(card_path: Path) -> dict:
    try:
        old = json.loads(card_path.read_text()) if card_path.is_file() else {}
    except (OSError, ValueError):
        return {}
    return old if isinstance(old, dict) else {}


def _intact(card: dict, out: Path, fmt: str) -> bool:
    """The card names ``fmt``'s file, and the file there is the one it wrote (not damaged, not replaced)."""
    digests = card.get("file_digests")
    path = out / FORMATS[fmt]
    return (fmt in card.get("files", {}) and isinstance(digests, dict) and path.is_file()
            and digests.get(fmt) == card_digest(path))


def _up_to_date(old: dict, out: Path, formats, digest: str, check: bool) -> bool:
    """Exporting again would write the same files: this winner's, intact, checked if a check is asked, and a
    TorchScript file this machine trusts (a received run's model.ts is written anew here, so it loads)."""
    script = out / FORMATS["torchscript"]
    trusted_here = "torchscript" not in formats or (script.is_file() and trusted_torchscript(script_digest(script)))
    return (old.get("winner_digest") == digest and "familiarity" in old and all(_intact(old, out, f) for f in formats)
            and (not check or all(f in (old.get("checks") or {}) for f in formats)) and trusted_here)


def _remove_killed_exports(out: Path) -> None:
    """The staged files of exports killed before they put their files in place (``.model.onnx.PID.staged``
    of a process gone): a folder of your own (``--out``) is not swept as a run's is (``RunLock``), only
    of these names."""
    for name in FORMATS.values():
        for path in out.glob(f".{name}.*.staged"):
            pid = path.name[len(name) + 2:-len(".staged")]
            if pid.isdigit() and not pid_alive(int(pid)) and not path.is_symlink():
                path.unlink(missing_ok=True)


def _write_staged(net, model: nn.Module, shape: tuple, staged: dict) -> list[str]:
    """Trace ``model`` on a batch of 2 into each staged file; the tracer's warnings, printed and returned."""
    example = torch.zeros((2, *shape))
    traced = []
    for fmt, path in staged.items():
        try:
            traced += (_export_onnx if fmt == "onnx" else _export_torchscript)(model, example, path)
        except UsageError:
            raise  # the folder's fault (StorageError: full, read-only), not the model's
        except ImportError as exc:
            raise UsageError(f"{fmt} export needs {exc.name}: pip install -e '.[export]'") from None
        except Exception as exc:  # noqa: BLE001 - a module the exporter cannot trace: one line, the reason
            raise UsageError(f"the winner ({type(net.module_).__name__}) cannot be exported as {fmt}: "
                             f"{type(exc).__name__}: {brief(exc, 200)}") from None
    for line in traced:  # before the checks, which only try some inputs
        print(line, file=sys.stderr, flush=True)
    return traced


def _check_other_batches(model: nn.Module, shape: tuple, runs: dict, out: Path) -> None:
    """Each file run on batches of 1 and 3 random images gives the module's own answers: a shape traced
    as a constant (``len(x)``) passes the batch of 2 it was traced on and nothing else. Runs even with
    ``check`` off: it costs a few milliseconds, and a file fixed at 2 images is no use to anyone."""
    generator = torch.Generator().manual_seed(0)
    for n in PROBE_BATCHES:
        probe = torch.rand((n, *shape), generator=generator)
        with torch.no_grad():
            expected = model(probe.clone()).numpy()  # (a forward that changes its input in place: not the probe)
        _check_finite_output(expected, out)
        for fmt, run in runs.items():
            got = run_batch(run, probe.numpy(), fmt, out / FORMATS[fmt], left=out)
            if got.shape != expected.shape or not np.abs(got - expected).max() < TOLERANCE:
                said = (f"gives shape {got.shape}, not {expected.shape}" if got.shape != expected.shape
                        else f"differs by up to {np.abs(got - expected).max():.2e}")
                raise UsageError(f"the winner exported as {fmt} {said} on a batch of {plural(n, 'image')} (traced on "
                                 f"2); {BATCH_ADVICE}; or a Python branch on a tensor value took another way on "
                                 f"these random images than on the example: {TRACE_ADVICE}; nothing written, {out} "
                                 "is as it was")


def _check_finite_output(probabilities: np.ndarray, out: Path) -> None:
    """The winner's own output NaN or infinite: said as the winner's fault, not as a difference of the files."""
    if not np.isfinite(probabilities).all():
        raise UsageError(f"the winner's own output is not finite (NaN or inf): its weights diverged; retrain it "
                         f"(another config, or a lower lr) before exporting; nothing written, {out} is as it was")


def _check_test_images(net, X: np.ndarray, runs: dict, out: Path) -> dict:
    """Each file against the winner on the run's test images: the same argmax, probabilities within TOLERANCE."""
    expected = net.predict_proba(X)
    _check_finite_output(expected, out)
    checks = {}
    for fmt, run in runs.items():
        got = run_batch(run, X, fmt, out / FORMATS[fmt], left=out)
        checks[fmt] = {"same_argmax": bool(np.array_equal(got.argmax(-1), expected.argmax(-1))),
                       "max_abs_diff": float(np.abs(got - expected).max()), "images": int(len(X))}
        if not checks[fmt]["same_argmax"] or checks[fmt]["max_abs_diff"] >= TOLERANCE:
            raise UsageError(f"the winner exported as {fmt} disagrees with the winner on the test images (same "
                             f"argmax: {checks[fmt]['same_argmax']}, largest probability difference "
                             f"{checks[fmt]['max_abs_diff']:.2e}); {TRACE_ADVICE}; nothing written, {out} is as it was")
    return checks
