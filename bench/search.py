"""A whole small search, configs per hour: ``run_search`` (ours) vs the seed-faithful loop.

ours: ``run_search`` end to end (lean nets, one warm ``Parallel``, threads = cores // jobs,
      the SQLite trial store and the ranking exports after every trial).
seed: the Lab 3 loop over the same configs: for each, a skorch net with ``verbose=1`` and the
      plain DataLoader path, scored by ``cross_val_score(net, X, y, cv=folds, n_jobs=-1)``.

Both draw the same configs (``ParamGenerator(space, seed)``), folds, per-trial seeds, epochs and
early stopping, and the script checks that the mean CV scores agree. Whole runs alternate
(ours, seed, ours, seed, ...) in this one process; ``speedup_vs_seed`` = ours' configs per hour
over the seed's.

    python bench/search.py --quick                     # 4 configs, ~1 min on 2 cores
    python bench/search.py                             # --n 20 on 12,000 Fashion-MNIST images
    python bench/search.py --device cuda --images 60000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from sklearn.model_selection import cross_val_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import env_note, machine_line, median, report_stream, sync, whole  # noqa: E402,I001

import time  # noqa: E402

from hpsearch.data import load_dataset  # noqa: E402
from hpsearch.training.net import make_net, resolve_device  # noqa: E402
from hpsearch.engines.cv import make_folds  # noqa: E402
from hpsearch.settings import SearchSettings  # noqa: E402
from hpsearch.search.run import run_search  # noqa: E402
from hpsearch.training.seeds import trial_seed  # noqa: E402
from hpsearch.space.search_space import ParamGenerator, load_space  # noqa: E402
from hpsearch.rundir.store import load_results  # noqa: E402


def _warm_worker(X, y, n_features, n_classes):
    """A worker's one-off costs (imports, torch's first fit: ~1.5 s here) paid before any timing."""
    make_net({"hidden": [32]}, n_features, n_classes, max_epochs=1, patience=0).fit(X, y)
    return True


def seed_search(settings: SearchSettings, dataset) -> list[float]:
    """The seed's loop: one ``cross_val_score(n_jobs=-1)`` per config; returns the mean scores."""
    space = load_space(settings.space)
    configs = ParamGenerator(space, settings.seed).gen_values(settings.n)
    folds = make_folds(dataset.y_train, settings.cv, settings.seed)
    means = []
    for index, config in enumerate(configs):
        net = make_net(config, dataset.n_features, dataset.n_classes, device=settings.device,
                       max_epochs=settings.max_epochs, batch_size=settings.batch_size,
                       patience=settings.patience, random_state=trial_seed(settings.seed, index),
                       image_shape=dataset.image_shape, lean=False, verbose=1)
        scores = cross_val_score(net, dataset.X_train, dataset.y_train, cv=folds, n_jobs=settings.n_jobs,
                                 scoring=settings.scoring, error_score=np.nan)
        means.append(float(np.mean(scores)))
    return means


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 configs, 2,000 images, 6 epochs max")
    parser.add_argument("--n", type=whole(1), default=None, help="configs (default 20)")
    parser.add_argument("--images", type=whole(1), default=None, help="training images (default 12,000)")
    parser.add_argument("--max-epochs", type=whole(1), default=None, help="default 20 (--quick: 6)")
    parser.add_argument("--patience", type=whole(0), default=5)
    parser.add_argument("--repeats", type=whole(1), default=1)
    parser.add_argument("--space", default="mlp_mnist")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sides", default="ours,seed", help="comma list of ours, seed")
    args = parser.parse_args(argv)
    n = args.n or (4 if args.quick else 20)
    images = args.images or (2_000 if args.quick else 12_000)
    max_epochs = args.max_epochs or (6 if args.quick else 20)
    device = resolve_device(args.device)
    out = report_stream()

    full = load_dataset(args.dataset, args.data_dir)
    dataset = full.subset(images, 0)
    sides = [s.strip() for s in args.sides.split(",")]
    times = {side: [] for side in sides}
    means = {}
    # start and warm joblib's workers (imports, a first fit) before any timing: both sides then
    # reuse loky's executor; without this the side that runs first pays the warm-up
    warm = (dataset.X_train[:256], dataset.y_train[:256], dataset.n_features, dataset.n_classes)
    Parallel(n_jobs=-1)(delayed(_warm_worker)(*warm) for _ in range(8))
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for side in sides:
                settings = SearchSettings(n=n, dataset=args.dataset, space=args.space, cv=4, n_jobs=-1,
                                          max_epochs=max_epochs, patience=args.patience, seed=0,
                                          out=str(Path(tmp) / f"{side}{repeat}"), device=device,
                                          progress=False)
                sync(device)
                start = time.perf_counter()
                if side == "ours":
                    frame = load_results(run_search(settings, dataset))
                    means[side] = frame.sort_values("trial")["mean_test_score"].tolist() \
                        if "trial" in frame else None
                else:
                    means[side] = seed_search(settings, dataset)
                sync(device)
                times[side].append(time.perf_counter() - start)

    print(machine_line(device), file=out)
    print(f"command: python {' '.join(sys.argv)}  ({env_note()}, dataset={args.dataset}, images={images}, "
          f"n={n}, cv=4, n_jobs=-1, max_epochs={max_epochs}, patience={args.patience}, space={args.space}, "
          f"device={device}, repeats={args.repeats})", file=out)
    rates = {}
    for side in sides:
        seconds = median(times[side])
        rates[side] = n / seconds * 3600
        print(f"{side}: {seconds:.1f} s for {n} configs = {rates[side]:,.0f} configs/hour "
              f"(all {[round(t, 1) for t in times[side]]})", file=out)
    if "ours" in rates and "seed" in rates:
        same = means.get("ours") is not None and np.allclose(means["ours"], means["seed"], rtol=0,
                                                              atol=1e-9, equal_nan=True)
        print(f"mean CV scores identical={same}; speedup_vs_seed={rates['ours'] / rates['seed']:.2f}", file=out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
