"""The winner's pictures, drawn into the run folder (``hpsearch plot``), and the record in
``summary.json`` that keeps a finished run from drawing them again."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import UsageError, brief, damage_named, did_you_mean, shell
from ..jobs.resources import threads_per_job, torch_threads
from ..rundir.atomic import atomic_write, atomic_write_text
from ..rundir.exports import rewrite_trials_csv
from ..rundir.names import SETTINGS_FILE, SUMMARY_FILE, TRIALS_CSV, TRIALS_DB
from ..rundir.run_info import read_json, run_dataset
from ..search.interrupt import raise_if_interrupted
from ..setting_checks import whole
from ..viz.fonts import glyph_note
from .bundle import load_winner

__all__ = ["draw_pictures"]


def _pictures_done(run_dir: Path, options: dict) -> bool:
    """Whether ``plot all`` already drew these pictures of this winner (summary.json says so and
    every file it wrote is there)."""
    path = run_dir / SUMMARY_FILE
    done = read_json(path, replace_damaged=True).get("pictures")
    return bool(done) and {k: done.get(k) for k in options} == options and all(
        (run_dir / name).is_file() for name in done.get("files", []))


def _record_pictures(run_dir: Path, options: dict, files: list[str]) -> None:
    path = run_dir / SUMMARY_FILE
    summary = read_json(path, replace_damaged=True)
    summary["pictures"] = {**options, "files": files}
    atomic_write_text(path, json.dumps(summary, indent=2) + "\n")


def _record_figures(run_dir: Path, winner: dict, method: str, files: list[str], skipped: str | None = None) -> None:
    """Note in summary.json which files ``method`` drew for this winner (the report's captions
    come from it), or why it was skipped; a record of an earlier winner is dropped."""
    path = run_dir / SUMMARY_FILE
    summary = read_json(path, replace_damaged=True)
    record = summary.get("figures") or {}
    if {k: record.get(k) for k in winner} != winner:
        record = {**winner, "methods": {}}
    if skipped is None:
        record["methods"][method] = files
        record.get("skipped", {}).pop(method, None)
    else:
        record.setdefault("skipped", {})[method] = skipped
    summary["figures"] = record
    atomic_write_text(path, json.dumps(summary, indent=2) + "\n")


def _save_png(fig, path: Path) -> None:
    """A figure written atomically: a full or read-only disk is one line naming the file (StorageError)."""
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=120), binary=True)


def _draw_search(run_dir: Path) -> list[str]:
    """``plot search``: the search's own pictures (no winner needed) as ``search_*.png``."""
    from ..viz.search_plots import draw_search_plots

    if not (run_dir / TRIALS_CSV).is_file() and not (run_dir / TRIALS_DB).is_file():
        raise UsageError(f"{run_dir} holds no trials.csv or trials.db; is it a run folder made by hpsearch search?")
    skipped: dict[str, str] = {}
    files = []
    with damage_named(run_dir / TRIALS_CSV, rewrite_trials_csv(run_dir)):
        drawn = draw_search_plots(run_dir, skipped)
    for stem, fig in drawn.items():
        _save_png(fig, run_dir / f"{stem}.png")
        files.append(f"{stem}.png")
    if not files:  # every config failed: an empty "wrote" and exit 0 said it had worked
        raise UsageError(f"{run_dir}: no search picture could be drawn: {next(iter(skipped.values()))}")
    for stem, reason in skipped.items():
        print(f"skipped {stem}: {reason}")
    print(f"search: wrote {', '.join(files)}")
    return files


LAYER_METHODS = ("grad-cam", "hires-cam", "all")  # the pictures --layer steers
MAX_PANELS = 1000  # --images and --units at most


def named_layer(module, name: str):
    """The submodule ``name`` (as ``module.named_modules()`` names it), or a ``UsageError`` listing the
    convolutions (the layers Grad-CAM explains) and what else there is."""
    from torch import nn

    layers = {k: m for k, m in module.named_modules() if k}  # the net itself ("") is no layer
    if name in layers:
        return layers[name]
    convs = [k for k, m in layers.items() if isinstance(m, nn.Conv2d)]
    others = [k for k in layers if k not in convs]
    what = "an empty name names no layer" if not name.strip() else "has no such layer"
    hint = did_you_mean(name, list(layers)) if name.strip() else ""
    raise UsageError(f"--layer {name!r}: {type(module).__name__} {what}; its convolutions: "
                     f"{', '.join(convs) or 'none'} (other layers: {', '.join(others[:12]) or 'none'}"
                     f"{', ...' if len(others) > 12 else ''}){hint}")


def _check_spatial(net, module, name: str, X) -> None:
    """Refuse a layer whose output has no height and width (a Linear): Grad-CAM maps a layer's cells."""
    import torch
    from torch import nn

    seen = {}
    def record(m, i, out) -> None:  # returns None: a hook's value would replace the output
        seen.setdefault("shape", tuple(out.shape))

    handle = module.register_forward_hook(record)
    try:
        with torch.no_grad():
            net.module_(torch.as_tensor(X, device=net.device))
    finally:
        handle.remove()
    if len(seen.get("shape", ())) != 4:
        convs = [k for k, m in net.module_.named_modules() if isinstance(m, nn.Conv2d)]
        raise UsageError(f"--layer {name!r} is a {type(module).__name__} with output {seen.get('shape')}; Grad-CAM "
                         f"maps a layer's height x width cells: name a convolution ({', '.join(convs) or 'none'})")


def _check_labels(run_dir, positions: int, dataset) -> None:
    """The winner and the test data give as many labels per image, else a ``UsageError``."""
    def say(k):
        return f"{k} labels per image (one per position)" if k else "one label per image"

    if dataset.task.positions != positions:
        raise UsageError(f"the winner of {run_dir} gives {say(positions)}, but the test data ({dataset.name}) "
                         f"have {say(dataset.task.positions)}; draw it on the data it was trained on")


def check_panels(images: int, units: int) -> None:
    """``images`` and ``units`` as the pictures take them: each image (unit) is a panel, and beyond
    ``MAX_PANELS`` a picture is too large to draw in minutes or to open."""
    for name, value in (("images", images), ("units", units)):
        whole(1, MAX_PANELS, " (one panel each)")(name, value)


def draw_pictures(run_dir, method: str = "all", *, images: int = 25, units: int = 25, device: str = "cpu",
                  redraw: bool = True, dataset=None, layer: str | None = None) -> list[str]:
    """Draw ``method`` (or ``"all"`` that apply) for the run's winner into the run folder; the
    files written. With ``redraw=False``, ``all`` is skipped when this winner's pictures with
    these options are already there. ``"search"`` draws the search's own plots instead (no
    winner needed). ``dataset`` is the test data to draw on (default: the run's, loaded again).
    A winner with one label per position gets the per-position pictures (``hpsearch.viz.positions``);
    a method that does not apply to it is skipped by ``all`` and refused by name, saying why.
    ``layer``: the module name Grad-CAM and HiResCAM explain (``"features.2"``; default the last convolution's ReLU
    for the built-in CNNs, the last ``Conv2d`` for your own network), refused with the choices when the net has no
    such layer. The figures are drawn without pyplot: the caller's matplotlib backend is left as it is."""
    from ..viz.plots import REGISTRY, PlotOptions

    run_dir = Path(run_dir)
    if method not in ("all", "search") and method not in REGISTRY:
        methods = [*REGISTRY, "all", "search"]
        raise UsageError(f"METHOD must be one of {', '.join(methods)}, got {method!r}{did_you_mean(method, methods)}")
    check_panels(images, units)  # (search draws no panels, but a bad value is refused as for every method)
    if layer is not None and method not in LAYER_METHODS:
        raise UsageError(f"--layer applies only to {' and '.join(LAYER_METHODS[:2])} (and all, for those two); "
                         f"{method} would ignore it: leave it out")
    if method == "search":
        return _draw_search(run_dir)
    net = load_winner(run_dir, device=device)
    record = {"trial": int(net.winner_.get("trial", -1)), "epochs": int(net.winner_["epochs"]),
              "images": images, "units": units}
    if method == "all" and not redraw and _pictures_done(run_dir, record):
        print(f"pictures of this winner already drawn (summary.json); redraw with: hpsearch plot all {shell(run_dir)}")
        return []
    if method != "all":  # refused before the data are loaded
        reason = REGISTRY[method].applies(net.module_)
        if reason is not None:
            raise UsageError(f"{method} does not apply to this winner: {reason}")
    if layer is not None and method == "all":  # the methods it is for, refused by name before the layer is looked up
        reason = REGISTRY[LAYER_METHODS[0]].applies(net.module_)
        if reason is not None:
            raise UsageError(f"--layer applies to {' and '.join(LAYER_METHODS[:2])}, which do not apply to this "
                             f"winner ({reason}); leave --layer out")
    cam_layer = {"layer": named_layer(net.module_, layer)} if layer is not None else {}
    # as the search places them: never more than the cores; the caller's count comes back after
    with torch_threads(threads_per_job(1)):
        if dataset is None and (run_dir / SETTINGS_FILE).is_file():
            dataset = run_dataset(run_dir)
        if dataset is None:
            from ..data import load_dataset

            dataset = load_dataset(net.winner_["dataset"])
        _check_labels(run_dir, int(net.winner_.get("positions", 0)), dataset)
        note = glyph_note(dataset.class_names)
        if note is not None:
            print(note.replace("RUN_DIR", str(run_dir)), file=sys.stderr, flush=True)
        if layer is not None:
            _check_spatial(net, cam_layer["layer"], layer, dataset.X_test[:1])
        options = PlotOptions(n_images=images, units=units, extra={"gradcam": cam_layer, "hirescam": cam_layer})
        chosen = list(REGISTRY) if method == "all" else [method]
        files, skipped = [], {}
        for name in chosen:
            raise_if_interrupted()  # a Ctrl-C lost in a callback stops here, not after every picture
            entry = REGISTRY[name]
            reason = entry.applies(net.module_)
            if reason is not None:
                if method != "all":
                    raise UsageError(f"{name} does not apply to this winner: {reason}")
                skipped.setdefault(reason, []).append(name)
                _record_figures(run_dir, {k: record[k] for k in ("trial", "epochs")}, name, [], skipped=reason)
                continue
            try:
                figures = entry.draw(net, dataset, options)
            except UsageError:
                raise
            except Exception as exc:  # noqa: BLE001 - a net of the user's that a picture cannot read: said, not fatal
                reason = f"it could not be drawn for this net ({type(exc).__name__}: {brief(exc)})"
                if method != "all":
                    raise UsageError(f"{name}: {reason}") from None
                skipped.setdefault(reason, []).append(name)
                _record_figures(run_dir, {k: record[k] for k in ("trial", "epochs")}, name, [], skipped=reason)
                continue
            written = []
            for stem, item in figures.items():
                if isinstance(item, str):
                    path = run_dir / stem
                    atomic_write_text(path, item)
                else:
                    path = run_dir / f"{stem}.png"
                    _save_png(item, path)
                written.append(path.name)
            files += written
            _record_figures(run_dir, {k: record[k] for k in ("trial", "epochs")}, name, written)
            print(f"{name}: wrote {', '.join(written)}")
        for reason, names in skipped.items():  # one line per reason, not one per method
            print(f"skipped {', '.join(names)}: {reason}")
        if method == "all":
            _record_pictures(run_dir, record, files)
    return files
