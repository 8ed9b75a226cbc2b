"""Wall time of one config's 4-fold CV: our evaluation path vs the seed-faithful procedure.

seed: what the Lab 3 report ran: ``cross_val_score(net, X, y, cv=folds, n_jobs=-1)`` on a skorch
      net with numpy input, per-sample DataLoader collation, ``verbose=1`` (a table line per
      epoch), the per-epoch PrintLog, a fresh ``Parallel`` per config and torch's default threads
      in each job (joblib's loky limits them to cores // jobs).
ours: ``evaluate_config`` with the lean net (tensors prepared once, a batch per indexing op,
      verbose 0), one ``Parallel`` kept warm across configs, torch threads = cores // jobs.

Both sides compute the same thing: the same folds, epochs, EarlyStopping(patience) on the same
internal validation split, batch size and seeds; the script checks that the fold scores agree.
The seed's per-epoch tables go to /dev/null. Sides alternate in this one process; the medians
give ``speedup_vs_seed`` (seed time / ours).

    python bench/cv_per_config.py --quick       # ~1 min on 2 cores
    python bench/cv_per_config.py --quick --hidden 100,50
    python bench/cv_per_config.py               # 12,000 Fashion-MNIST images, 30 epochs max
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from sklearn.model_selection import cross_val_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import alternate, env_note, fashion_slice, machine_line, median, report_stream, set_threads, whole  # noqa: E402,I001

from hpsearch.training.net import make_net  # noqa: E402
from hpsearch.jobs.resources import effective_jobs  # noqa: E402
from hpsearch.engines.cv import evaluate_config, make_folds  # noqa: E402

CONFIG = {"model": "mlp", "hidden": [300, 100], "dropout": 0.2, "lr": 1e-3, "optimizer": "adam",
          "weight_decay": 1e-5}


def _worker_threads():
    import torch

    return torch.get_num_threads()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 images, 8 epochs max, 2 rounds")
    parser.add_argument("--hidden", default="300,100", help="hidden widths of the MLP (default 300,100)")
    parser.add_argument("--n", type=whole(1), default=None, help="images (default 12,000)")
    parser.add_argument("--max-epochs", type=whole(1), default=None)
    parser.add_argument("--patience", type=whole(0), default=5)
    parser.add_argument("--repeats", type=whole(1), default=None)
    parser.add_argument("--cv", type=whole(2), default=4)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    n = args.n or (2_000 if args.quick else 12_000)
    max_epochs = args.max_epochs or (8 if args.quick else 30)
    repeats = args.repeats or (2 if args.quick else 3)
    set_threads(None)
    out = report_stream()
    config = {**CONFIG, "hidden": [int(w) for w in args.hidden.split(",")]}

    X, y, n_features, n_classes = fashion_slice(n, data_dir=args.data_dir)
    folds = make_folds(y, args.cv, seed=0)
    make = partial(make_net, config, n_features, n_classes, max_epochs=max_epochs,
                   patience=args.patience, random_state=0)
    jobs = effective_jobs(-1, len(folds))
    scores = {}

    def seed_side():
        net = make(lean=False, verbose=1)
        scores["seed"] = cross_val_score(net, X, y, cv=folds, n_jobs=-1, scoring="neg_log_loss")

    with Parallel(n_jobs=jobs) as parallel:
        seed_threads = Parallel(n_jobs=jobs)(delayed(_worker_threads)() for _ in range(jobs))

        def ours_side():
            result = evaluate_config(partial(make, lean=True), X, y, folds, n_jobs=-1,
                                     scoring="neg_log_loss", parallel=parallel)
            scores["ours"] = np.array(result.test_scores)

        times = alternate({"seed": seed_side, "ours": ours_side}, repeats)
    seed, ours = median(times["seed"]), median(times["ours"])
    print(machine_line(), file=out)
    print(f"command: python {' '.join(sys.argv)}  ({env_note()}, n={n}, cv={args.cv}, "
          f"max_epochs={max_epochs}, patience={args.patience}, jobs={jobs}, seed-side threads per "
          f"job={seed_threads[0]}, repeats={repeats}, config={config})", file=out)
    same = np.allclose(scores["seed"], scores["ours"], rtol=0, atol=1e-12)
    print(f"fold scores seed {np.round(scores['seed'], 5).tolist()} ours {np.round(scores['ours'], 5).tolist()}"
          f" identical={same}", file=out)
    print(f"one config's {args.cv}-fold CV: seed {seed:.2f} s, ours {ours:.2f} s, "
          f"speedup_vs_seed={seed / ours:.2f}  (all seed {[round(t, 2) for t in times['seed']]}, "
          f"all ours {[round(t, 2) for t in times['ours']]})", file=out)
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
