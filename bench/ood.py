"""How well the "unlike the training images" flag separates the test set from what is not a digit:
uniform noise, colour-free gradients, and Fashion-MNIST images (through the digits winner's own
preprocessing), for an MLP trained on digits.

    python bench/ood.py [--epochs 30] [--n 1000]

Prints, per kind of input, the share flagged at the winner's threshold (the 99th percentile of
held-out training images) and the detection rate at 5% false alarms on the test set (the threshold
set at the test scores' 95th percentile).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import whole  # noqa: E402,I001

from hpsearch import load_dataset, make_net  # noqa: E402
from hpsearch.data.preprocess import preprocess, preprocessing_for  # noqa: E402
from hpsearch.winner.familiar import Familiarity, familiarity_reference  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=whole(1), default=30)
    p.add_argument("--n", type=whole(1), default=1000)
    args = p.parse_args(argv)
    digits = load_dataset("digits")
    net = make_net({"hidden": [128], "optimizer": "adam", "lr": 3e-3}, digits, max_epochs=args.epochs, patience=0)
    net.fit(digits.X_train, digits.y_train)
    accuracy = float((net.predict(digits.X_test) == digits.y_test).mean())
    familiar = Familiarity(familiarity_reference(digits.X_train))
    rng = np.random.default_rng(0)
    settings = preprocessing_for("digits", digits.image_shape)
    fashion = load_dataset("fashion-mnist").X_test[:args.n]
    ramps = []
    for _ in range(args.n):  # a linear ramp in a random direction, random contrast
        angle, low = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.5)
        yy, xx = np.mgrid[0:8, 0:8] / 7.0
        ramp = np.cos(angle) * xx + np.sin(angle) * yy
        ramps.append((low + (1 - low) * (ramp - ramp.min()) / max(np.ptp(ramp), 1e-6))[None].astype(np.float32))
    kinds = {"test set (digits)": digits.X_test,
             "uniform noise": rng.uniform(0, 1, (args.n, 1, 8, 8)).astype(np.float32),
             "gradients": np.stack(ramps),
             "Fashion-MNIST": np.stack([preprocess(x, settings) for x in fashion])}
    scores = {name: familiar.score(X) for name, X in kinds.items()}
    at_5 = float(np.quantile(scores["test set (digits)"], 0.95))
    print(f"digits MLP test accuracy {accuracy:.4f}; threshold at 5% test false alarms: score {at_5:.3f}")
    for name, s in scores.items():
        confident = float(np.mean(net.predict_proba(kinds[name]).max(axis=1) > 0.9))
        print(f"input={name!r} n={len(s)} flagged={np.mean(s > 1):.3f} detected_at_5pct_fa={np.mean(s > at_5):.3f} "
              f"softmax_over_0.9={confident:.3f}")


if __name__ == "__main__":
    main()
