"""Many configs' CV: one stream of fold tasks vs one ``evaluate_config`` (a barrier) per config.

barrier: what the search did before: for each config, its k folds run on the jobs and the next
         config starts only when the slowest fold is back; early stopping makes folds uneven,
         so a job idles meanwhile.
stream:  ``evaluate_configs`` through a ``Parallel(return_as="generator_unordered")``: a job that
         finishes a fold takes the next fold task, of this config or the next.

Both sides fit exactly the same seeded nets on the same folds (the script checks the scores are
identical) with the same jobs and threads, alternating in this one process; the medians give
``speedup_stream`` (barrier time / stream time).

    python bench/fold_stream.py --quick        # ~1 min on 2 cores
    python bench/fold_stream.py                # 12 configs, 12,000 Fashion-MNIST images
    python bench/fold_stream.py --dataset digits --images 0 --max-epochs 100 --patience 15
                                               # the default digits search's settings
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

from joblib import Parallel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import alternate, env_note, machine_line, median, whole  # noqa: E402,I001

from hpsearch.data import load_dataset  # noqa: E402
from hpsearch.training.net import make_net  # noqa: E402
from hpsearch.jobs.resources import effective_jobs, threads_per_job  # noqa: E402
from hpsearch.engines.cv import evaluate_config, evaluate_configs, make_folds  # noqa: E402
from hpsearch.training.seeds import trial_seed  # noqa: E402
from hpsearch.space.search_space import ParamGenerator, load_space  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 configs, 2,000 images, 10 epochs max")
    parser.add_argument("--n", type=whole(1), default=None, help="configs (default 12; --quick 4)")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--images", type=whole(1), default=None,
                        help="training images (default 12,000, --quick 2,000; 0: all)")
    parser.add_argument("--max-epochs", type=whole(1), default=None, help="default 30 (--quick 10)")
    parser.add_argument("--patience", type=whole(0), default=3)
    parser.add_argument("--repeats", type=whole(1), default=None, help="default 3 (--quick 2)")
    parser.add_argument("--space", default="mlp_mnist")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    n = args.n or (4 if args.quick else 12)
    images = args.images if args.images is not None else (2_000 if args.quick else 12_000)
    max_epochs = args.max_epochs or (10 if args.quick else 30)
    repeats = args.repeats or (2 if args.quick else 3)

    dataset = load_dataset(args.dataset, args.data_dir)
    dataset = dataset.subset(images, 0) if images else dataset
    X, y = dataset.X_train, dataset.y_train
    folds = make_folds(y, 4, seed=0)
    configs = ParamGenerator(load_space(args.space), 0).gen_values(n)
    makers = {i: partial(make_net, c, dataset.n_features, dataset.n_classes, max_epochs=max_epochs,
                         patience=args.patience, random_state=trial_seed(0, i)) for i, c in enumerate(configs)}
    jobs = effective_jobs(-1, len(folds))
    threads = threads_per_job(jobs)
    scores = {}

    with Parallel(n_jobs=jobs) as barrier_parallel, \
            Parallel(n_jobs=jobs, return_as="generator_unordered") as stream_parallel:
        def barrier():
            scores["barrier"] = {i: evaluate_config(make, X, y, folds, n_jobs=jobs, parallel=barrier_parallel)
                                 for i, make in makers.items()}

        def stream():
            scores["stream"] = dict(evaluate_configs(makers, X, y, folds, parallel=stream_parallel,
                                                     threads=threads))

        times = alternate({"barrier": barrier, "stream": stream}, repeats)
    same = all(scores["barrier"][i].test_scores == scores["stream"][i].test_scores for i in makers)
    epochs = [e for r in scores["stream"].values() for e in (r.epochs or [])]
    b, s = median(times["barrier"]), median(times["stream"])
    print(machine_line())
    print(f"command: python {' '.join(sys.argv)}  ({env_note()}, {args.dataset} images={len(y)}, n={n}, cv=4, "
          f"max_epochs={max_epochs}, patience={args.patience}, jobs={jobs}, threads per job={threads}, "
          f"repeats={repeats}; fold epochs {min(epochs)}-{max(epochs)})")
    print(f"{n} configs' 4-fold CV: barrier {b:.1f} s, stream {s:.1f} s, speedup_stream={b / s:.2f}; "
          f"scores identical={same}  (all barrier {[round(t, 1) for t in times['barrier']]}, "
          f"all stream {[round(t, 1) for t in times['stream']]})")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
