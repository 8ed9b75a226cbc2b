"""hpsearch's HalvingRandomSearchCV against scikit-learn's, side by side on the same skorch net, the same
distributions, candidates and folds, the nets seeded alike (so both compute the same scores and pick
the same best): the wall time and fold-epochs each pays.

    python bench/sklearn_door.py [--data digits|fashion] [--n 27] [--max-epochs 27] [--repeat 2]

Both run with n_jobs=2 and one torch thread per job (OMP_NUM_THREADS=1 for scikit-learn's workers
too), in A B B A order over ``--repeat`` rounds (a drifting machine cancels out); the median wall
time is reported. Prints one line per contender and the ratio.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import time
from pathlib import Path

os.environ["OMP_NUM_THREADS"] = "1"
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import machine_line  # noqa: E402,I001
from scipy.stats import loguniform, uniform  # noqa: E402
from sklearn.experimental import enable_halving_search_cv  # noqa: E402, F401
from sklearn.model_selection import HalvingRandomSearchCV as SkHalving  # noqa: E402
from skorch import NeuralNetClassifier  # noqa: E402
from torch import nn  # noqa: E402

from hpsearch import HalvingRandomSearchCV, load_dataset  # noqa: E402
from hpsearch.sklearn.continuing import fit_key  # noqa: E402


class MLP(nn.Module):
    def __init__(self, n_inputs=784, width=128, dropout=0.0):
        super().__init__()
        self.layers = nn.Sequential(nn.Flatten(), nn.Linear(n_inputs, width), nn.ReLU(), nn.Dropout(dropout),
                                    nn.Linear(width, 10))

    def forward(self, x):
        return self.layers(x)


class Seeded(NeuralNetClassifier):
    """scikit-learn's side, seeded as hpsearch seeds a candidate (random_state 0)."""

    def initialize(self):
        torch.manual_seed(int(hashlib.sha256(f"0:{fit_key(self)}".encode()).hexdigest()[:8], 16))
        return super().initialize()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", choices=("digits", "fashion"), default="digits")
    p.add_argument("--images", type=int, default=12000, help="fashion: the stratified slice's size")
    p.add_argument("--n", type=int, default=27)
    p.add_argument("--max-epochs", type=int, default=27)
    p.add_argument("--repeat", type=int, default=2)
    args = p.parse_args(argv)
    print(machine_line(), flush=True)
    data = load_dataset("digits" if args.data == "digits" else "fashion-mnist")
    data = data.training_slice(args.images, 0)
    X, y = data.X_train.reshape(len(data.y_train), -1), data.y_train
    distributions = {"lr": loguniform(1e-3, 3e-2), "module__width": [64, 128, 256], "module__dropout": uniform(0, 0.5)}

    def net(cls):
        return cls(MLP, module__n_inputs=X.shape[1], max_epochs=args.max_epochs, optimizer=torch.optim.Adam,
                   criterion=nn.CrossEntropyLoss, train_split=None, verbose=0, batch_size=128)

    kw = dict(n_candidates=args.n, factor=3, min_resources=1, cv=4, random_state=0, n_jobs=2, refit=False,
              return_train_score=False)
    makers = {"scikit-learn": lambda: SkHalving(net(Seeded), distributions, resource="max_epochs",
                                               max_resources=args.max_epochs, **kw),
              "hpsearch": lambda: HalvingRandomSearchCV(net(NeuralNetClassifier), distributions, **kw)}
    times, results = {name: [] for name in makers}, {}
    for r in range(args.repeat):
        for name in (list(makers) if r % 2 == 0 else list(makers)[::-1]):
            start = time.perf_counter()
            results[name] = makers[name]().fit(X, y)
            times[name].append(time.perf_counter() - start)
    sk, hp = results["scikit-learn"], results["hpsearch"]
    same = np.array_equal(sk.cv_results_["mean_test_score"], hp.cv_results_["mean_test_score"])
    scratch = sum(c * r for c, r in zip(sk.n_candidates_, sk.n_resources_, strict=True)) * 4
    print(f"data={args.data} images={len(y)} n={args.n} rungs={hp.n_resources_} candidates={hp.n_candidates_} "
          f"same_scores={same} same_best={sk.best_params_ == hp.best_params_} cv_accuracy={hp.best_score_:.4f}")
    for name in makers:
        epochs = scratch if name == "scikit-learn" else hp.n_fold_epochs_
        print(f"contender={name} wall_s={statistics.median(times[name]):.1f} fold_epochs={epochs} "
              f"rounds={[round(t, 1) for t in times[name]]}")
    ratio = statistics.median(times["scikit-learn"]) / statistics.median(times["hpsearch"])
    print(f"wall_ratio={ratio:.2f} fold_epoch_ratio={scratch / hp.n_fold_epochs_:.2f}")


if __name__ == "__main__":
    main()
