"""What each ``hpsearch`` command does once its flags are parsed (``hpsearch.cli`` builds the
parser): search, retrain (``hpsearch.commands.retrain``), plot, report, serve, predict, make-triple, compare.
Each ``cmd_*`` takes the parsed arguments and returns the exit code."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

from ..errors import UsageError, plural, shell
from ..rundir.names import COMPARE_FILE, SETTINGS_FILE, WINNER_FILE
from ..search_flags import read_json, read_stored_settings, search_settings
from ..settings import retrain_defaults
from .retrain import cmd_retrain, per_position, retrain_and_say

# Light imports only: ``hpsearch.cli`` imports this module to build the parser, and ``--help`` must not
# import torch, scikit-learn or skorch; each command imports what it needs.

__all__ = ["cmd_search", "cmd_retrain", "cmd_plot", "cmd_report", "cmd_serve", "cmd_predict", "cmd_export",
           "cmd_make_triple", "cmd_trust",
           "cmd_compare"]


def cmd_search(args) -> int:
    from ..jobs.backends import backend_session

    settings = search_settings(args)
    if args.resume and read_stored_settings(args.resume).get("extra", {}).get("no_retrain") \
            and not args.no_retrain:
        args.no_retrain = True  # the run was searched without retraining: resuming it does not start one
        print(f"{args.resume} was searched with --no-retrain: resuming it does not retrain either; retrain with "
              f"hpsearch retrain {shell(args.resume)}")
    settings.extra = {**settings.extra, "no_retrain": bool(args.no_retrain)}
    if settings.backend != "dask":  # on Dask the workers have the device, not this machine (checked there)
        _device_here(settings.device, args)
    from ..winner.pictures import check_panels

    check_panels(args.images, args.units)  # now, not after the search (a typo must not cost the night), also
    # with --no-retrain: a bad value is said, not kept unsaid
    _check_plan(settings, resuming=args.resume is not None)
    with backend_session(settings.backend, settings.scheduler) as backend:
        backend.check_device(settings.device)
        return _search_then_retrain(args, settings, backend)


def _device_here(device: str, args) -> None:
    """Refuses ``device`` when this machine lacks it, naming a resumed run's stored device as the run's; says
    when auto finds no GPU. run_search resolves it again, keeping ``auto`` in settings.json for a resume."""
    from ..training.net import resolve_device

    try:
        resolved = resolve_device(device)
    except UsageError as exc:
        if args.resume and args.device is None:  # not typed: the run's settings.json holds it
            raise UsageError(f"{exc} (--resume {args.resume} was searched with --device {device}, kept in its "
                             f"settings.json; pass --device cpu to resume it on this machine)") from None
        raise
    if device == "auto" and resolved == "cpu":
        print("--device auto: no CUDA GPU is visible, so the configs train on the CPU", file=sys.stderr)


def _search_then_retrain(args, settings, backend) -> int:
    from ..search.run import run_search

    with contextlib.ExitStack() as held:  # the run's lock, from the search through its retraining and pictures
        start = time.perf_counter()
        run_dir = run_search(settings, backend=backend, hold=held)
        return _after_search(args, settings, backend, run_dir, time.perf_counter() - start)


def _after_search(args, settings, backend, run_dir, elapsed: float) -> int:
    from ..rundir.chance import chance_summary
    from ..rundir.store import load_results
    from ..training.net import resolve_device

    frame = load_results(run_dir)
    print(f"\n{plural(len(frame), 'config')} in {run_dir} ({elapsed:.1f} s this session)")
    finished = frame[frame["mean_test_score"].notna()]
    if finished.empty:
        print(f"hpsearch: every one of the {len(frame)} configs failed; their reasons are in "
              f"{run_dir / 'trials.csv'}, column 'error' (first: {frame['error'].iloc[0]})", file=sys.stderr)
        return 1
    best = finished.iloc[0]
    params = {c[len("param_"):]: best[c] for c in frame if c.startswith("param_")}
    accuracy = "" if settings.scoring == "accuracy" else f"  accuracy {best['mean_test_accuracy']:.4f}"  # once
    print(f"best: trial {best['trial']}  {settings.scoring} {best['mean_test_score']:.4f} "
          f"± {best['std_test_score']:.4f}{accuracy}" + per_position(best, "mean_test_"))
    print("      " + "  ".join(f"{k}={v}" for k, v in params.items()))
    said = chance_summary(frame, read_stored_settings(run_dir).get("chance"))
    if said:
        print(said)
    if args.no_retrain:
        report = _report(run_dir)
        first = f"{report} (the run on one page)" if report else f"{run_dir / 'sorted_scores.dat'} (the ranking)"
        winner = _retrained_winner(run_dir)
        if winner is None:
            print(f"\nopen first: {first}; retrain later with: hpsearch retrain {shell(run_dir)}")
        else:  # retrained before this resume: its configs may have moved the top
            print(f"\nopen first: {first}; the winner retrained earlier is trial {winner} (summary.json); hpsearch "
                  f"retrain {shell(run_dir)} brings it up to date with this session's configs (a config retrained "
                  "already is reused, not trained again)")
        return 0
    options = {key: getattr(settings, key) for key in retrain_defaults()}
    result = retrain_and_say(run_dir, options, settings.device, settings.progress, backend, lock=False,  # held already
                             n_jobs=settings.n_jobs)
    here = "auto" if settings.backend == "dask" else settings.device  # the pictures are drawn on this machine
    code = _plot(run_dir, "all", args, resolve_device(here), redraw=result.trained > 0)
    report = _report(run_dir)
    print(f"\nresults in {run_dir}/; open first: {report.name + ' (the whole run on one page), ' if report else ''}"
          "summary.json (the winner), sorted_scores.dat (the ranking), confusion_matrix.png")
    return code


def _retrained_winner(run_dir) -> int | None:
    """The trial summary.json names as the run's retrained winner, or None (never retrained, or damaged)."""
    from ..rundir.names import SUMMARY_FILE

    try:
        trial = read_json(Path(run_dir) / SUMMARY_FILE).get("winner", {}).get("trial")
    except (UsageError, AttributeError):
        return None
    return trial if isinstance(trial, int) else None


def _report(run_dir) -> Path | None:
    """Write the run's report.html at the end of a search; a failure to write it costs the search
    nothing (every result is saved), so it is said, not raised."""
    from ..report import write_report

    try:
        path = write_report(run_dir)
    except Exception as exc:  # noqa: BLE001 - the search's results are safe; say why and how to retry
        print(f"hpsearch: warning: report.html not written ({type(exc).__name__}: {exc}); "
              f"write it with: hpsearch report {shell(run_dir)}", file=sys.stderr)
        return None
    print(f"wrote {path}")
    return path


def check_run_folder(run_dir) -> None:
    """RUN_DIR names a folder: said before anything else, instead of a missing file inside it."""
    path = Path(run_dir)
    if not path.exists():
        raise UsageError(f"RUN_DIR {run_dir}: no such folder; give the folder hpsearch search wrote (its --out, by "
                         "default results/<dataset>_<space>[_<strategy>]_seed<seed>; ls results/)")
    if not path.is_dir():
        raise UsageError(f"RUN_DIR {run_dir} is a file, not a run folder: give the folder hpsearch search wrote")
    if not (path / SETTINGS_FILE).is_file() and not (path / WINNER_FILE).is_file():
        raise UsageError(f"RUN_DIR {run_dir} is not a run folder (no {SETTINGS_FILE}, no {WINNER_FILE}): give the "
                         "folder hpsearch search wrote (its --out)")


def cmd_trust(args) -> int:
    """Trust the module folder and module names run folder ``RUN_DIR`` names (see ``trust``)."""
    import tomllib

    from ..rundir.names import SPACE_FILE
    from ..space.search_space import module_tops
    from ..training.models import trust

    run = Path(args.run_dir)
    check_run_folder(run)
    folder = read_stored_settings(run).get("module_path")
    try:
        tops = module_tops(tomllib.loads((run / SPACE_FILE).read_text())) if (run / SPACE_FILE).is_file() else []
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as exc:
        raise UsageError(f"{run / SPACE_FILE} cannot be read ({exc}); put back a copy of it") from None
    if not folder and not tops:
        print(f"{run} names no network module of its own (its model is built into hpsearch): nothing to trust")
        return 0
    if folder and not (isinstance(folder, str) and Path(folder).is_absolute() and Path(folder).is_dir()):
        raise UsageError(f"{run / SETTINGS_FILE} names the module folder {folder!r}, which is no absolute path of a "
                         "folder here; hpsearch trusts only such a folder: put the module there")
    if folder:
        files = sorted(p.name for p in Path(folder).iterdir() if p.suffix == ".py" or (p / "__init__.py").is_file())
        print(f"trusting {folder} (the modules there: {', '.join(files) or 'none'})")
    if tops:
        print(f"trusting the module name{'s' * (len(tops) > 1)} {', '.join(sorted(set(tops)))} (installed, where "
              f"not in that folder)")
    trust.trust([folder] if folder else [], tops)
    print(f"kept in {trust.state_file()}; hpsearch imports them for any run from now on")
    return 0


def cmd_report(args) -> int:
    from ..report import write_report

    path = write_report(args.run_dir)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, every image inlined); open it in a browser")
    return 0


def _check_plan(settings, resuming: bool = False) -> None:
    """The strategy's settings checked before the backend opens (its plan is said by the search, once the
    run folder accepts it), and TPE that would only draw at random said (a resume keeps its n_startup)."""
    from ..strategies import make_strategy

    settings.validate()
    make_strategy(settings)
    if settings.strategy in ("tpe", "tpe-halving") and settings.n <= settings.n_startup:
        print(f"{settings.strategy}: --n {settings.n} is no more than --n-startup {settings.n_startup}, so every "
              "config is drawn at random and TPE proposes none: this is random search; "
              + ("raise --n" if resuming else "raise --n or lower --n-startup"), file=sys.stderr)


def _plot(run_dir, method: str, args, device: str, redraw: bool = True) -> int:
    from ..winner.pictures import draw_pictures

    draw_pictures(run_dir, method, images=args.images, units=args.units, device=device, redraw=redraw,
                  layer=getattr(args, "layer", None))
    return 0


def cmd_plot(args) -> int:
    from ..training.net import resolve_device
    from ..viz.plots import REGISTRY

    if args.run_dir is None:  # one word given: a run folder without its METHOD, or a METHOD without its folder
        methods = ", ".join([*REGISTRY, "all", "search"])
        if Path(args.method).is_dir():
            raise UsageError(f"METHOD is missing before {args.method}: hpsearch plot all {shell(args.method)} draws "
                             f"every picture that applies (methods: {methods})")
        holding = "trials.db" if args.method == "search" else "winner.pt"
        raise UsageError(f"RUN_DIR is missing: hpsearch plot {args.method} RUN_DIR (a run folder holding {holding})")
    device = resolve_device(args.device)
    if args.method == "search" or not Path(args.run_dir).is_dir():  # the search's own plots: drawn while it runs
        return _plot(args.run_dir, args.method, args, device)
    from ..retrain.top import LOCK_FIX
    from ..rundir.lock import RunLock

    # the winner's pictures and summary.json's list of them: never beside a retraining that replaces the winner
    with RunLock(args.run_dir, fix=LOCK_FIX):
        return _plot(args.run_dir, args.method, args, device)


def cmd_serve(args) -> int:
    from ..training.net import resolve_device
    from ..web import serve

    serve(args.run_dir, host=args.host, port=args.port, device=resolve_device(args.device))
    return 0


def cmd_export(args) -> int:
    from ..winner.export import export_winner

    formats = ("onnx", "torchscript") if args.format == "both" else (args.format,)
    if args.out is None and Path(args.run_dir).is_dir():  # the run's own export/: one writer at a time
        from ..retrain.top import LOCK_FIX
        from ..rundir.lock import RunLock

        with RunLock(args.run_dir, fix=LOCK_FIX):
            done = export_winner(args.run_dir, formats, out=args.out, check=not args.no_check)
    else:
        done = export_winner(args.run_dir, formats, out=args.out, check=not args.no_check)
    if done["skipped"]:
        print(f"already exported for this winner: {done['card']} ({', '.join(p.name for p in done['files'])})")
        return 0
    for fmt, c in done["checks"].items():
        print(f"{fmt}: same class as the winner on all {c['images']} test images; largest probability difference "
              f"{c['max_abs_diff']:.1e}")
    print(f"wrote {', '.join(str(p) for p in done['files'])} and {done['card']}")
    return 0


def cmd_predict(args) -> int:
    from ..training.net import resolve_device
    from ..winner.predict import Predictor
    from ..winner.predict_files import answer_line, predict_files

    if args.out_dir is not None and not args.explain:
        raise UsageError(f"--out-dir {args.out_dir} only says where --explain writes the heat maps; add --explain, "
                         "or leave --out-dir out")
    if args.model is not None:  # the exported file and its card alone: RUN_DIR is the first file
        from ..winner.export import exported_answers

        if args.explain:
            raise UsageError("--explain needs the run's winner (its layers); leave out --model, or --explain")
        args.files = [f for f in (args.run_dir, *args.files) if f is not None]
        if not args.files:
            raise UsageError("FILE is missing: hpsearch predict --model model.onnx FILE...")
        answers = exported_answers(args.model, args.files)
    else:
        if args.run_dir is None or not args.files:
            missing = "FILE is" if args.run_dir else "RUN_DIR and FILE are"
            raise UsageError(f"{missing} missing: hpsearch predict RUN_DIR FILE... (or hpsearch predict --model "
                             "model.onnx FILE...)")
        predictor = Predictor.from_run(args.run_dir, device=resolve_device(args.device))
        answers = predict_files(predictor, args.files, explain=args.explain, out_dir=args.out_dir)
    failed = 0
    for a in answers:
        if a["probability"] is not None:
            print(answer_line(a))
        if a["error"]:
            failed += 1
            print(f"hpsearch: error: {a['path']}: {a['error']}", file=sys.stderr)
    if failed:
        print(f"hpsearch: {failed} of {len(args.files)} files failed (see the errors above)", file=sys.stderr)
    return 1 if failed else 0


def cmd_make_triple(args) -> int:
    from ..data.make_triple import make_triple

    build = make_triple(args.source, args.out, data_dir=args.data_dir, n_train=args.n_train, n_val=args.n_val,
                        n_test=args.n_test, seed=args.seed, overwrite=args.overwrite, progress=not args.no_progress)
    counts = ", ".join(f"{len(files)} {split}" for split, files in build.files.items())
    print(f"wrote {counts} images to {build.out}/ (meta.json, sources.csv); "
          f"use it with: run_search.py --dataset triple-mnist --data-dir {build.out}")
    return 0


def _say_at_chance(table, chance, same_config: bool) -> None:
    """The groups whose config learned nothing: by the search's own rule (``at_chance``: its CV accuracy, or its
    log-loss no better than the class shares'), or with --same-config (one config's CV scores for every group)
    by each variant's own test accuracy."""
    from ..rundir.chance import at_chance

    if not isinstance(chance, dict) or not isinstance(chance.get("accuracy"), float) or table.empty:
        return
    if same_config:
        low, said = table["test_accuracy"] <= chance["accuracy"] + 1e-9, "test accuracy"
        meaning, log_loss = "the variant learned nothing in these epochs", ""
    else:
        low = at_chance(table.rename(columns={"cv_accuracy": "mean_test_accuracy", "cv_score": "mean_test_score"}),
                        chance)
        said, meaning = "CV accuracy", "its test accuracy says nothing of the group"
        by_loss = chance.get("scoring") == "neg_log_loss"
        log_loss = ", or CV log-loss no better than the class shares'" if by_loss else ""
    if low.any():
        print(f"\nat chance ({said} <= {chance['accuracy']:.2%}, the majority class's share{log_loss}): "
              f"{', '.join(table['group'][low])}; {meaning}")


def cmd_compare(args) -> int:
    from ..retrain.compare import compare_groups, markdown_table
    from ..retrain.files import train_set_words
    from ..training.net import resolve_device

    by = [name.strip() for name in args.by.split(",") if name.strip()]
    table = compare_groups(args.run_dir, by, args.retrain_epochs, device=resolve_device(args.device),
                           n_jobs=args.n_jobs, progress=not args.no_progress, same_config=args.same_config)
    settings = read_stored_settings(args.run_dir)
    print(markdown_table(table, by))
    for row in table.to_dict("records"):  # a group whose every config diverged, or whose retraining did
        if isinstance(row.get("error"), str) and row["error"].strip():
            print(f"failed: {row['group']}: {row['error']}")
    _say_at_chance(table, settings.get("chance"), args.same_config)
    print(f"\n({plural(len(table), 'group')}, {plural(args.retrain_epochs, 'epoch')} each on "
          f"{train_set_words(settings)}; {Path(args.run_dir) / COMPARE_FILE})")
    return 0
