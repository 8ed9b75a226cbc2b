"""The command line: ``hpsearch <command> ...`` (``run_search.py`` is ``hpsearch search``).

Bad input exits with code 2 and one message naming the parameter, what is allowed, what was given
and the fix; Ctrl-C exits with code 130 after saving every finished trial.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

from .errors import UsageError

__all__ = ["main", "build_parser"]

EPILOG = """\
examples:
  run_search.py --n 150 --dataset digits                  # offline, bundled data
  run_search.py --n 150 --dataset mnist --data-dir ~/data/mnist
  run_search.py --n 150 --dataset fashion-mnist           # Debian's dataset-fashion-mnist
  run_search.py --resume results/digits_mlp_mnist_seed0   # continue an interrupted search

outputs (in --out): trials.db (every finished trial), trials.csv (cv_results_-shaped),
sorted_scores.dat and sorted_params.dat (best first, line i matches line i), space.toml,
settings.json. Running the same command again resumes the run where it stopped.
"""


def _add_search_args(p: argparse.ArgumentParser) -> None:
    from .data import DATASETS
    from .evaluate import SCORINGS

    # Defaults are None so that --resume can tell the flags given from the stored settings.
    p.add_argument("--n", type=int, help="number of configs to evaluate (default 150)")
    p.add_argument("--dataset", help=f"one of {', '.join(DATASETS)} (default digits)")
    p.add_argument("--data-dir", help="folder with the dataset's idx files (raw or .gz); default: "
                   "the cache, Debian's /usr/share/datasets, or a checksummed download")
    p.add_argument("--space", help="search space: a TOML file or a name in searches/ "
                   "(default mlp_mnist, the Lab 3 space)")
    p.add_argument("--cv", type=int, help="cross-validation folds, stratified and seeded (default 4)")
    p.add_argument("--n-jobs", type=int, help="parallel jobs over folds; -1 = one per core "
                   "(default); torch threads per job = cores // jobs")
    p.add_argument("--max-epochs", type=int, help="epochs per fit unless the space sets "
                   "max_epochs (default 100)")
    p.add_argument("--patience", type=int, help="early stopping: epochs without improvement of "
                   "the loss on an internal 20%% validation split; 0 = off (default 15)")
    p.add_argument("--batch-size", type=int, help="mini-batch size unless the space sets "
                   "batch_size (default 128)")
    p.add_argument("--scoring", choices=SCORINGS, help="what ranks configs (default "
                   "neg_log_loss, the held-out fold's log-loss; accuracy is recorded either way)")
    p.add_argument("--seed", type=int, help="seeds the configs, folds and weights (default 0)")
    p.add_argument("--out", help="run folder (default results/<dataset>_<space>_seed<seed>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the search stored in RUN_DIR "
                   "with its stored settings (--n may raise its target)")
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (default cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpsearch",
        description="Hyperparameter search and visual explanation of small PyTorch image "
                    "classifiers.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    search = sub.add_parser(
        "search", help="sample configs, cross-validate each, rank them",
        description="Random search as in the Lab 3 seed: sample configs from a space, score "
                    "each by k-fold cross-validation, save the ranking.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_search_args(search)
    search.set_defaults(func=_cmd_search)
    return parser


SEARCH_FLAGS = ("n", "dataset", "data_dir", "space", "cv", "n_jobs", "max_epochs", "patience",
                "batch_size", "scoring", "seed", "out", "device")


def _search_settings(args):
    from .search import SearchSettings

    given = {k: getattr(args, k) for k in SEARCH_FLAGS if getattr(args, k) is not None}
    if args.resume:
        stored_path = Path(args.resume) / "settings.json"
        if not stored_path.is_file():
            raise UsageError(f"--resume {args.resume}: no settings.json there; is it a run folder "
                             "made by hpsearch search?")
        stored = json.loads(stored_path.read_text())
        base = {k: stored[k] for k in SEARCH_FLAGS if k in stored}
        base["out"] = str(args.resume)
        base["space"] = str(Path(args.resume) / "space.toml")  # the space exactly as stored
        base.update(given)
        given = base
    return SearchSettings(**given, progress=not args.no_progress)


def _cmd_search(args) -> int:
    from .estimator import resolve_device
    from .search import run_search
    from .store import load_results

    settings = _search_settings(args)
    settings.device = resolve_device(settings.device)
    start = time.perf_counter()
    run_dir = run_search(settings)
    elapsed = time.perf_counter() - start
    frame = load_results(run_dir)
    best = frame.iloc[0]
    params = {c[len("param_"):]: best[c] for c in frame if c.startswith("param_")}
    print(f"\n{len(frame)} configs in {run_dir} ({elapsed:.1f} s this session)")
    print(f"best: trial {best['trial']}  {settings.scoring} {best['mean_test_score']:.4f} "
          f"± {best['std_test_score']:.4f}  accuracy {best['mean_test_accuracy']:.4f}")
    print("      " + "  ".join(f"{k}={v}" for k, v in params.items()))
    return 0


def main(argv: list[str] | None = None) -> int:
    from .search import SearchInterrupted

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.formatwarning = lambda msg, cat, *a, **k: f"{cat.__name__}: {msg}\n"
            return args.func(args)
    except UsageError as exc:
        print(f"hpsearch: error: {exc}", file=sys.stderr)
        return 2
    except SearchInterrupted as exc:
        print(f"\n{exc}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
