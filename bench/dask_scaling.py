"""The same search on loky and on Dask LocalClusters of 1, 2, ... workers: wall time and ratios,
plus Dask's scheduling overhead per task.

One process runs every side in turn (loky, dask x1, dask x2, ...; ``--repeats`` rounds), each a
fresh ``run_search`` into a temporary folder on the same data, space, seed and folds, and reports
the median of each side. The clusters are started before their rounds (not timed) and reused, as a
user's long-lived cluster would be. The scores of every run are checked identical to loky's.

The overhead: ``--tasks`` no-op tasks through joblib on each backend, ``(wall - 0) / tasks`` per
task, with as many jobs as the side has workers.

    python bench/dask_scaling.py                      # digits, n=12, cv 4, 10 epochs; 1 and 2 workers
    python bench/dask_scaling.py --workers 1,2,4 --images 6000 --dataset fashion-mnist
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _common import machine_line

from hpsearch.jobs.backends import DaskBackend, LokyBackend
from hpsearch.jobs.resources import cpu_count
from hpsearch.rundir.store import load_results
from hpsearch.search.run import run_search
from hpsearch.settings import SearchSettings


def _noop(i):
    return i


def overhead_ms(backend, jobs: int, tasks: int) -> float:
    from joblib import delayed

    with backend.parallel(jobs, None) as (parallel, _):
        list(parallel(delayed(_noop)(i) for i in range(min(20, tasks))))  # warm
        start = time.perf_counter()
        list(parallel(delayed(_noop)(i) for i in range(tasks)))
        return (time.perf_counter() - start) / tasks * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="digits")
    p.add_argument("--images", type=int, default=None, help="--max-train slice")
    p.add_argument("--n", type=int, default=12)
    p.add_argument("--max-epochs", type=int, default=10)
    p.add_argument("--workers", default="1,2", help="comma list of LocalCluster sizes")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--tasks", type=int, default=300)
    args = p.parse_args()
    sizes = [int(w) for w in args.workers.split(",")]
    print(machine_line())
    print(f"search: {args.dataset}{f' ({args.images} images)' if args.images else ''}, n={args.n}, cv 4, "
          f"{args.max_epochs} epochs, patience 0; loky with {cpu_count()} jobs; Dask LocalClusters of "
          f"{', '.join(map(str, sizes))} one-thread workers")
    sides = {"loky": LokyBackend()}
    sides.update({f"dask x{w}": DaskBackend(f"local:{w}") for w in sizes})
    times: dict[str, list[float]] = {name: [] for name in sides}
    reference = None
    try:
        for _ in range(args.repeats):
            for name, backend in sides.items():
                with tempfile.TemporaryDirectory() as tmp:
                    settings = SearchSettings(n=args.n, dataset=args.dataset, max_train=args.images, cv=4,
                                              max_epochs=args.max_epochs, patience=0, progress=False,
                                              out=str(Path(tmp) / "run"), backend=backend.name)
                    start = time.perf_counter()
                    run = run_search(settings, backend=backend)
                    times[name].append(time.perf_counter() - start)
                    scores = load_results(run).sort_values("trial")["mean_test_score"].tolist()
                reference = reference or scores
                assert scores == reference, f"{name}: scores differ from loky's"
        base = statistics.median(times["loky"])
        print("\n| backend | wall (median s) | vs loky | per-task overhead (ms) |\n|---|---|---|---|")
        for name, backend in sides.items():
            jobs = sum(backend.slots().values()) if name != "loky" else cpu_count()
            wall = statistics.median(times[name])
            print(f"| {name} | {wall:.1f} | {base / wall:.2f}x | {overhead_ms(backend, jobs, args.tasks):.2f} |")
        print("\nscores identical to loky's in every run")
    finally:
        for backend in sides.values():
            backend.close()


if __name__ == "__main__":
    main()
