"""``hpsearch retrain`` and the retraining a search runs after it: the top configs retrained on the
whole training set, said as they go, with the flags given kept in settings.json for the next time."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..errors import check_whole, plural, shell
from ..rundir.names import RETRAIN_FILE, SETTINGS_FILE, SUMMARY_FILE, WINNER_FILE
from ..search_flags import read_json, read_stored_settings
from ..settings import retrain_defaults, setting_specs

# Light imports only, as in the package: ``--help`` must not import torch.

__all__ = ["cmd_retrain", "retrain_and_say", "per_position"]


def retrain_and_say(run_dir, options: dict, device: str, progress: bool, backend=None, lock: bool = True,
                    n_jobs: int = -1):
    """Retrain and say so; ``lock=False`` where the caller holds the run's lock already (``cmd_retrain``).
    ``n_jobs``: the search's (a machine shared with other work keeps its share in the retraining too)."""
    from ..retrain.top import retrain_top, scored_counts
    from ..rundir.exports import param_text

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
    result = retrain_top(run_dir, top, epochs, device=device, progress=progress, backend=backend, n_jobs=n_jobs,
                         schedule=options["schedule"], checkpoint_every=options["checkpoint_every"],
                         winner_by=options["winner_by"], lock=lock)
    elapsed = time.perf_counter() - start
    w = result.winner
    if result.trained == 0:
        print(f"\nretraining already done ({RETRAIN_FILE}: {plural(len(result.table), 'config')}, "
              f"{plural(epochs, 'epoch')}); nothing to train")
    else:
        from ..retrain.files import train_set_words

        on = train_set_words(read_stored_settings(run_dir))
        print(f"\nretrained {plural(result.trained, 'config')} for {plural(epochs, 'epoch')} on {on} ({elapsed:.1f} s)")
    how = ("chosen by search rank; test set read after the choice" if options["winner_by"] == "cv"
           else "SELECTED ON THE TEST SET: optimistic")
    print(f"winner: trial {w['trial']} (search rank {w['search_rank']}, {how})  test accuracy "
          f"{w['test_accuracy']:.4f}{per_position(w, 'test_')}  test loss {w['test_loss']:.4f}  "
          f"{plural(w['epochs'], 'epoch')}")
    others = result.table[~result.table["winner"]]["test_accuracy"].dropna()
    if len(others) and options["winner_by"] == "cv":
        spread = f"{others.min():.4f}" + (f" to {others.max():.4f}" if len(others) > 1 else "")
        print(f"        the other {plural(len(others), 'retrained config')}: test accuracy {spread} (reported, not "
              "used for the choice)")
    print("        " + "  ".join(f"{k}={param_text(v)}" for k, v in w["config"].items()))  # as the best line
    from ..rundir.chance import winner_at_chance
    from ..rundir.store import load_results

    note = winner_at_chance(load_results(run_dir), w["trial"])
    if note:
        print(f"        note: {note}")
    print(f"wrote {Path(run_dir) / RETRAIN_FILE}, {WINNER_FILE}, {SUMMARY_FILE}")
    return result


def per_position(row, prefix: str) -> str:
    """`` (per digit 0.91 0.88 0.90, exact match 0.74)`` for labels per position, else ``""``."""
    digits = [row[k] for k in sorted(k for k in row.keys() if k.startswith(f"{prefix}digit_"))]
    if not digits or f"{prefix}exact_match" not in row.keys():
        return ""
    return f" (per digit {' '.join(f'{v:.4f}' for v in digits)}, exact match {row[f'{prefix}exact_match']:.4f})"


def _stored_retrain_settings(run_dir, args) -> dict:
    """The retraining's options: the flags given, else the run's stored choice, else the defaults."""
    from ..rundir.run_info import check_code_of, check_settings_of, read_settings

    stored = read_settings(run_dir)  # (a run of your own network: where its module is)
    check_settings_of(run_dir, stored)  # before the retraining is announced
    check_code_of(run_dir)
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
    from ..rundir.atomic import atomic_write_text

    _check_retrain_settings(options)
    path = Path(run_dir) / SETTINGS_FILE
    stored = read_stored_settings(run_dir)
    if stored and any(stored.get(key) != value for key, value in options.items()):
        atomic_write_text(path, json.dumps({**stored, **options}, indent=2) + "\n")


def cmd_retrain(args) -> int:
    from ..jobs.backends import backend_session, check_backend_flags
    from ..retrain.top import LOCK_FIX
    from ..rundir.lock import RunLock
    from ..training.net import resolve_device

    options = _stored_retrain_settings(args.run_dir, args)
    _check_retrain_settings(options)
    n_jobs = args.n_jobs if args.n_jobs is not None else read_stored_settings(args.run_dir).get("n_jobs", -1)
    setting_specs()["n_jobs"].check("n_jobs", n_jobs)
    backend_name = args.backend or "loky"
    check_backend_flags(backend_name, args.scheduler)
    device = args.device if backend_name == "dask" else resolve_device(args.device)  # Dask: the workers', checked there
    # one lock over the flags kept and the retraining: a refused retraining changes nothing in the run
    with RunLock(args.run_dir, fix=LOCK_FIX):
        _remember_retrain_settings(args.run_dir, options)
        with backend_session(backend_name, args.scheduler) as backend:
            backend.check_device(device)
            retrain_and_say(args.run_dir, options, device, not args.no_progress, backend, lock=False, n_jobs=n_jobs)
            _redraw_an_earlier_winners_pictures(args.run_dir, resolve_device("auto") if backend_name == "dask"
                                                else device)  # drawn on this machine
    return 0


def _redraw_an_earlier_winners_pictures(run_dir, device: str) -> None:
    """Pictures in the run folder of a winner this retraining replaced (another --winner-by, --top) are
    drawn again for the new one: a confusion matrix titled with the old winner's accuracy must not
    stay beside the new winner.pt. A run never drawn is told how to draw them."""
    from ..winner.pictures import draw_pictures

    summary = read_json(Path(run_dir) / SUMMARY_FILE)
    record, winner = summary.get("figures") or {}, summary.get("winner") or {}
    if not record.get("methods"):
        print(f"draw the winner's pictures with: hpsearch plot all {shell(run_dir)}")
        return
    if {k: record.get(k) for k in ("trial", "epochs")} == {k: winner.get(k) for k in ("trial", "epochs")}:
        return
    print(f"the pictures in {run_dir} are of the earlier winner (trial {record.get('trial')}): drawing the new "
          f"winner's (trial {winner.get('trial')})")
    draw_pictures(run_dir, "all", device=device, redraw=True)
