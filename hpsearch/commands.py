"""What each ``hpsearch`` command does once its flags are parsed (``hpsearch.cli`` builds the
parser): search, retrain, plot, report, serve, predict, make-triple, compare. Each ``cmd_*`` takes the parsed arguments
and returns the exit code."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path

from .errors import UsageError, check_whole, plural
from .rundir.names import COMPARE_FILE, RETRAIN_FILE, SETTINGS_FILE, SUMMARY_FILE, WINNER_FILE
from .search_flags import read_json, search_settings
from .settings import retrain_defaults, setting_specs

# Light imports only: ``hpsearch.cli`` imports this module to build the parser, and ``--help`` must not
# import torch, scikit-learn or skorch; each command imports what it needs.

__all__ = ["cmd_search", "cmd_retrain", "cmd_plot", "cmd_report", "cmd_serve", "cmd_predict", "cmd_export",
           "cmd_make_triple",
           "cmd_compare"]


def cmd_search(args) -> int:
    from .training.net import resolve_device

    settings = search_settings(args)
    if args.resume and read_json(Path(args.resume) / SETTINGS_FILE).get("extra", {}).get("no_retrain") \
            and not args.no_retrain:
        args.no_retrain = True  # the run was searched without retraining: resuming it does not start one
        print(f"{args.resume} was searched with --no-retrain: resuming it does not retrain either; retrain with "
              f"hpsearch retrain {args.resume}")
    settings.extra = {**settings.extra, "no_retrain": bool(args.no_retrain)}
    if not (settings.backend == "dask" and settings.device == "auto"):  # on Dask each worker resolves auto
        settings.device = resolve_device(settings.device)
    if not args.no_retrain:  # checked now, not after the search: a typo must not cost the night
        check_whole("images", args.images, 1)
        check_whole("units", args.units, 1)
    _check_plan(settings)
    with _backend(settings.backend, settings.scheduler) as backend:
        return _search_then_retrain(args, settings, backend)


@contextlib.contextmanager
def _backend(name: str, scheduler: str | None):
    """The backend the search and its retraining share (one Dask cluster for both), closed after."""
    from .jobs.backends import open_backend

    backend = open_backend(name, scheduler)
    if name == "dask":
        slots = backend.slots()
        print(f"dask: {len(slots)} workers, {sum(slots.values())} task slots at {backend.scheduler}")
    try:
        yield backend
    finally:
        backend.close()


def _search_then_retrain(args, settings, backend) -> int:
    from .search.run import run_search

    with contextlib.ExitStack() as held:  # the run's lock, from the search through its retraining and pictures
        start = time.perf_counter()
        run_dir = run_search(settings, backend=backend, hold=held)
        return _after_search(args, settings, backend, run_dir, time.perf_counter() - start)


def _after_search(args, settings, backend, run_dir, elapsed: float) -> int:
    from .rundir.chance import chance_summary
    from .rundir.store import load_results
    from .training.net import resolve_device

    frame = load_results(run_dir)
    print(f"\n{plural(len(frame), 'config')} in {run_dir} ({elapsed:.1f} s this session)")
    finished = frame[frame["mean_test_score"].notna()]
    if finished.empty:
        print(f"hpsearch: every one of the {len(frame)} configs failed; their reasons are in "
              f"{run_dir / 'trials.csv'}, column 'error' (first: {frame['error'].iloc[0]})", file=sys.stderr)
        return 1
    best = finished.iloc[0]
    params = {c[len("param_"):]: best[c] for c in frame if c.startswith("param_")}
    print(f"best: trial {best['trial']}  {settings.scoring} {best['mean_test_score']:.4f} "
          f"± {best['std_test_score']:.4f}  accuracy {best['mean_test_accuracy']:.4f}"
          + _per_position(best, "mean_test_"))
    print("      " + "  ".join(f"{k}={v}" for k, v in params.items()))
    said = chance_summary(frame, read_json(run_dir / SETTINGS_FILE).get("chance"))
    if said:
        print(said)
    if args.no_retrain:
        report = _report(run_dir)
        first = f"{report} (the run on one page)" if report else f"{run_dir / 'sorted_scores.dat'} (the ranking)"
        print(f"\nopen first: {first}; retrain later with: hpsearch retrain {run_dir}")
        return 0
    options = {key: getattr(settings, key) for key in retrain_defaults()}
    result = _retrain(run_dir, options, settings.device, settings.progress, backend, lock=False)  # held already
    code = _plot(run_dir, "all", args, resolve_device(settings.device), redraw=result.trained > 0)
    report = _report(run_dir)
    print(f"\nresults in {run_dir}/; open first: {report.name + ' (the whole run on one page), ' if report else ''}"
          "summary.json (the winner), sorted_scores.dat (the ranking), confusion_matrix.png")
    return code


def _report(run_dir) -> Path | None:
    """Write the run's report.html at the end of a search; a failure to write it costs the search
    nothing (every result is saved), so it is said, not raised."""
    from .report import write_report

    try:
        path = write_report(run_dir)
    except Exception as exc:  # noqa: BLE001 - the search's results are safe; say why and how to retry
        print(f"hpsearch: warning: report.html not written ({type(exc).__name__}: {exc}); "
              f"write it with: hpsearch report {run_dir}", file=sys.stderr)
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


def cmd_report(args) -> int:
    from .report import write_report

    path = write_report(args.run_dir)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, every image inlined); open it in a browser")
    return 0


def _check_plan(settings) -> None:
    """The strategy's settings checked before the backend opens (its plan is said by the search, once the
    run folder accepts it), and TPE that would only draw at random said."""
    from .strategies import make_strategy

    settings.validate()
    make_strategy(settings)
    if settings.strategy in ("tpe", "tpe-halving") and settings.n <= settings.n_startup:
        print(f"{settings.strategy}: --n {settings.n} is no more than --n-startup {settings.n_startup}, so every "
              "config is drawn at random and TPE proposes none: this is random search; raise --n or lower "
              "--n-startup", file=sys.stderr)


def _retrain(run_dir, options: dict, device: str, progress: bool, backend=None, lock: bool = True):
    """Retrain and say so; ``lock=False`` where the caller holds the run's lock already (``cmd_retrain``)."""
    from .retrain.top import retrain_top, scored_counts
    from .rundir.exports import param_text

    top, epochs = options["top"], options["retrain_epochs"]
    check_whole("top", top, 1)
    scored, failed = scored_counts(run_dir)  # a run with no scored trial is refused before anything is said
    fewer = (f" (the run has {plural(scored, 'scored config')}{f'; {failed} failed' if failed else ''})"
             if top > scored else "")
    seed_budget = retrain_defaults()
    lighter = (f" (the Lab 3 seed's full budget is --top {seed_budget['top']} --retrain-epochs "
               f"{seed_budget['retrain_epochs']})" if epochs < seed_budget["retrain_epochs"] else "")
    # always said before it starts
    print(f"retraining the best {min(top, scored)}{fewer} for {plural(epochs, 'epoch')} each{lighter}")
    start = time.perf_counter()
    result = retrain_top(run_dir, top, epochs, device=device, progress=progress, backend=backend,
                         schedule=options["schedule"], checkpoint_every=options["checkpoint_every"],
                         winner_by=options["winner_by"], lock=lock)
    elapsed = time.perf_counter() - start
    w = result.winner
    if result.trained == 0:
        print(f"\nretraining already done ({RETRAIN_FILE}: {plural(len(result.table), 'config')}, "
              f"{plural(epochs, 'epoch')}); nothing to train")
    else:
        print(f"\nretrained {plural(result.trained, 'config')} for {plural(epochs, 'epoch')} on the whole training set "
              f"({elapsed:.1f} s)")
    how = ("chosen by search rank; test set read after the choice" if options["winner_by"] == "cv"
           else "SELECTED ON THE TEST SET: optimistic")
    print(f"winner: trial {w['trial']} (search rank {w['search_rank']}, {how})  test accuracy "
          f"{w['test_accuracy']:.4f}{_per_position(w, 'test_')}  test loss {w['test_loss']:.4f}  "
          f"{plural(w['epochs'], 'epoch')}")
    others = result.table[~result.table["winner"]]["test_accuracy"].dropna()
    if len(others) and options["winner_by"] == "cv":
        spread = f"{others.min():.4f}" + (f" to {others.max():.4f}" if len(others) > 1 else "")
        print(f"        the other {plural(len(others), 'retrained config')}: test accuracy {spread} (reported, not "
              "used for the choice)")
    print("        " + "  ".join(f"{k}={param_text(v)}" for k, v in w["config"].items()))  # as the best line
    print(f"wrote {Path(run_dir) / RETRAIN_FILE}, {WINNER_FILE}, {SUMMARY_FILE}")
    return result


def _per_position(row, prefix: str) -> str:
    """`` (per digit 0.91 0.88 0.90, exact match 0.74)`` for labels per position, else ``""``."""
    digits = [row[k] for k in sorted(k for k in row.keys() if k.startswith(f"{prefix}digit_"))]
    if not digits or f"{prefix}exact_match" not in row.keys():
        return ""
    return f" (per digit {' '.join(f'{v:.4f}' for v in digits)}, exact match {row[f'{prefix}exact_match']:.4f})"


def _stored_retrain_settings(run_dir, args) -> dict:
    """The retraining's options: the flags given, else the run's stored choice, else the defaults."""
    path = Path(run_dir) / SETTINGS_FILE
    stored = read_json(path)
    options = {}
    for key, default in retrain_defaults().items():
        given = getattr(args, key, None)
        options[key] = given if given is not None else stored.get(key, default)
    return options


def _check_retrain_settings(options: dict) -> None:
    """A bad flag is refused before it is kept (and before the run is locked)."""
    specs = setting_specs("retrain")
    for key, value in options.items():
        if specs[key].check is not None:
            specs[key].check(key, value)


def _remember_retrain_settings(run_dir, options: dict) -> None:
    """The flags of this retraining kept in settings.json, so that the next plain ``hpsearch retrain RUN``
    (or ``--resume``) goes on with them instead of retraining every config with the older ones. Only the
    retraining's settings change: what a resume must match lives in trials.db."""
    from .rundir.atomic import atomic_write_text

    _check_retrain_settings(options)
    path = Path(run_dir) / SETTINGS_FILE
    stored = read_json(path)
    if stored and any(stored.get(key) != value for key, value in options.items()):
        atomic_write_text(path, json.dumps({**stored, **options}, indent=2) + "\n")


def cmd_retrain(args) -> int:
    from .jobs.backends import check_backend_flags
    from .retrain.top import LOCK_FIX
    from .rundir.store import RunLock
    from .training.net import resolve_device

    options = _stored_retrain_settings(args.run_dir, args)
    _check_retrain_settings(options)
    backend_name = args.backend or "loky"
    check_backend_flags(backend_name, args.scheduler)
    device = args.device if backend_name == "dask" and args.device == "auto" else resolve_device(args.device)
    # one lock over the flags kept and the retraining: a refused retraining changes nothing in the run
    with RunLock(args.run_dir, fix=LOCK_FIX):
        _remember_retrain_settings(args.run_dir, options)
        with _backend(backend_name, args.scheduler) as backend:
            _retrain(args.run_dir, options, device, not args.no_progress, backend, lock=False)
    return 0


def _plot(run_dir, method: str, args, device: str, redraw: bool = True) -> int:
    from .winner.pictures import draw_pictures

    draw_pictures(run_dir, method, images=args.images, units=args.units, device=device, redraw=redraw,
                  layer=getattr(args, "layer", None))
    return 0


def cmd_plot(args) -> int:
    from .training.net import resolve_device
    from .viz.plots import REGISTRY

    if args.run_dir is None:  # one word given: a run folder without its METHOD, or a METHOD without its folder
        methods = ", ".join([*REGISTRY, "all", "search"])
        if Path(args.method).is_dir():
            raise UsageError(f"METHOD is missing before {args.method}: hpsearch plot all {args.method} draws every "
                             f"picture that applies (methods: {methods})")
        raise UsageError(f"RUN_DIR is missing: hpsearch plot {args.method} RUN_DIR (a run folder holding winner.pt)")
    return _plot(args.run_dir, args.method, args, resolve_device(args.device))


def cmd_serve(args) -> int:
    from .training.net import resolve_device
    from .web import serve

    serve(args.run_dir, host=args.host, port=args.port, device=resolve_device(args.device))
    return 0


def cmd_export(args) -> int:
    from .winner.export import export_winner

    formats = ("onnx", "torchscript") if args.format == "both" else (args.format,)
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
    from .training.net import resolve_device
    from .winner.predict import Predictor, answer_line, predict_files

    if args.out_dir is not None and not args.explain:
        raise UsageError(f"--out-dir {args.out_dir} only says where --explain writes the heat maps; add --explain, "
                         "or leave --out-dir out")
    if args.model is not None:  # the exported file and its card alone: RUN_DIR is the first file
        from .winner.export import exported_answers

        if args.explain:
            raise UsageError("--explain needs the run's winner (its layers); leave out --model, or --explain")
        args.files = [args.run_dir, *args.files]
        answers = exported_answers(args.model, args.files)
    else:
        if not args.files:
            raise UsageError("FILE is missing: hpsearch predict RUN_DIR FILE... (or hpsearch predict --model "
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
    from .data.make_triple import make_triple

    build = make_triple(args.source, args.out, data_dir=args.data_dir, n_train=args.n_train, n_val=args.n_val,
                        n_test=args.n_test, seed=args.seed, overwrite=args.overwrite, progress=not args.no_progress)
    counts = ", ".join(f"{len(files)} {split}" for split, files in build.files.items())
    print(f"wrote {counts} images to {build.out}/ (meta.json, sources.csv); "
          f"use it with: run_search.py --dataset triple-mnist --data-dir {build.out}")
    return 0


def cmd_compare(args) -> int:
    from .retrain.compare import compare_groups, markdown_table
    from .training.net import resolve_device

    by = [name.strip() for name in args.by.split(",") if name.strip()]
    table = compare_groups(args.run_dir, by, args.retrain_epochs, device=resolve_device(args.device),
                           n_jobs=args.n_jobs, progress=not args.no_progress, same_config=args.same_config)
    print(markdown_table(table, by))
    print(f"\n({plural(len(table), 'group')}, {plural(args.retrain_epochs, 'epoch')} each; "
          f"{Path(args.run_dir) / COMPARE_FILE})")
    return 0
