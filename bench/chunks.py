"""How the batched engine should cut a narrow halving rung into chunks on the CPU.

A late halving rung has few configs: with whole-config chunks (a config's 4 folds in one stack) a
1-config rung is one chunk, so one of 2 jobs idles (or the job takes both cores as threads), and a
3-config rung leaves one job idle for its last chunk. This trains one wide config (576-502, the
Fashion-MNIST winner, dropout 0.3) on 4 folds of a 12,000-image slice for ``--epochs`` epochs, in
2 loky jobs, laid out four ways, alternately (``_common.alternate``, median of ``--repeats``):

- one chunk of 4 folds, 2 threads (what ``threads_per_job`` gave a lone chunk);
- one chunk of 4 folds, 1 thread (the per-model cost of a 4-model stack on one core);
- two chunks of 2 folds, 1 thread each;
- four chunks of 1 fold, 1 thread each (the engine's CPU default since this measurement).

    python bench/chunks.py                 # ~2 min on 2 cores
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import alternate, env_note, fashion_slice, machine_line, median  # noqa: E402,I001

from hpsearch.engines.stack_fit import FitSpec, initial_module, train_stack  # noqa: E402
from hpsearch.engines.cv import make_folds  # noqa: E402
from hpsearch.jobs.resources import torch_threads  # noqa: E402

CONFIG = {"hidden": (576, 502), "optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-5, "dropout": 0.3}
LAYOUTS = {  # name: (chunks of fold numbers, torch threads per chunk)
    "1 chunk x 4 folds, 2 threads": ([[0, 1, 2, 3]], 2),
    "1 chunk x 4 folds, 1 thread": ([[0, 1, 2, 3]], 1),
    "2 chunks x 2 folds, 1 thread each": ([[0, 1], [2, 3]], 1),
    "4 chunks x 1 fold, 1 thread each": ([[0], [1], [2], [3]], 1),
}


def _train(X, y, folds, fold_ids, threads, epochs):
    """One chunk: the config's folds ``fold_ids`` as one stack; returns its own seconds."""
    with torch_threads(threads):
        start = time.perf_counter()
        module = initial_module(CONFIG, 1, X.shape[1], 10)
        specs = [FitSpec(CONFIG, 1, (1, k), folds[k][0], None, folds[k][1], module) for k in fold_ids]
        train_stack(specs, X, y, 10, max_epochs=epochs, batch_size=128, patience=0, eval_batch=1024,
                    dropout_seed=1 + fold_ids[0])
        return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=12_000, help="Fashion-MNIST training images (12,000)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per fold (3)")
    parser.add_argument("--repeats", type=int, default=3, help="alternated rounds (3)")
    args = parser.parse_args(argv)
    X, y, _, _ = fashion_slice(args.images)
    X = np.ascontiguousarray(X.reshape(len(X), -1), dtype=np.float32)
    folds = make_folds(y, 4, 0)
    print(machine_line())
    print(f"command: python bench/chunks.py --images {args.images} --epochs {args.epochs} --repeats "
          f"{args.repeats}  ({env_note()}; 2 loky jobs; config {CONFIG})\n")
    with Parallel(n_jobs=2) as parallel:
        def layout(chunks, threads):
            return lambda: parallel(delayed(_train)(X, y, folds, c, threads, args.epochs) for c in chunks)

        times = alternate({name: layout(*spec) for name, spec in LAYOUTS.items()}, args.repeats)
    reference = median(times["1 chunk x 4 folds, 2 threads"])
    print("| layout (2 jobs) | wall, median (s) | speed-up vs 1 chunk, 2 threads |")
    print("| --- | ---: | ---: |")
    for name, seconds in times.items():
        print(f"| {name} | {median(seconds):.2f} | {reference / median(seconds):.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
