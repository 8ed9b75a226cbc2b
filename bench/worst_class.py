"""The CAM seed's worst-class loss against plain cross-entropy on Fashion-MNIST (issue 14).

The same MLP, data, seed and budget, trained twice through ``make_net``: with ``loss = "ce"`` for
``rounds x round_epochs`` epochs in one go, and with ``loss = "worst_class"`` in ``rounds`` rounds
of ``round_epochs`` epochs (after each round the classes misclassified more often than the mean on
the 20% validation split get ``worst_weight`` x their cross-entropy added). The default is the
seed's comparison: 6 x 15 epochs against 90 epochs. Reported per side: best and last validation
accuracy (the seed's figure is the best), test accuracy, and the test accuracy of the three classes
plain CE gets worst (on Fashion-MNIST shirt, pullover and coat), with the worst sets the rounds
picked.

    python bench/worst_class.py --quick            # 6,000-image slice, 3 x 2 vs 6 epochs (~1 min CPU)
    python bench/worst_class.py --device cuda      # the seed's comparison on all 60,000 images
    python bench/worst_class.py --quick --record   # also append the table to BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from skorch.dataset import ValidSplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _common import machine_line, whole  # noqa: E402

from hpsearch import load_dataset, make_net  # noqa: E402
from hpsearch.training.losses import WorstClassRounds  # noqa: E402
from hpsearch.training.net import resolve_device  # noqa: E402

NET = {"model": "mlp", "hidden": [512, 256], "dropout": 0.2, "lr": 1e-3, "optimizer": "adam"}


def train(side: str, data, args, seed: int) -> dict:
    X, y, X_test, y_test = data
    config = dict(NET)
    callbacks = None
    if side == "worst_class":
        config.update(loss="worst_class", rounds=args.rounds, round_epochs=args.round_epochs,
                      worst_weight=args.worst_weight)
        callbacks = [("worst_class", WorstClassRounds(args.round_epochs, use_valid=True))]
    else:
        config.update(loss="ce", max_epochs=args.rounds * args.round_epochs)
    # no early stopping (the same budget for both), but the seed's validation split
    net = make_net(config, X.shape[1], 10, device=args.device, patience=0, random_state=seed,
                   train_split=ValidSplit(5, stratified=True), callbacks=callbacks)
    start = time.perf_counter()
    net.fit(X, y)
    seconds = time.perf_counter() - start
    predicted = net.predict(X_test)
    per_class = np.array([np.mean(predicted[y_test == c] == c) for c in range(10)])
    valid = net.history[:, "valid_acc"]
    return {"side": side, "seed": seed, "epochs": len(net.history), "best_valid": max(valid), "last_valid": valid[-1],
            "test": float(np.mean(predicted == y_test)), "per_class": per_class, "seconds": seconds,
            "picks": [row["worst_classes"] for row in net.history if "worst_classes" in row]}


def table(results, names, args) -> list[str]:
    ce = [r for r in results if r["side"] == "ce"]
    worst3 = np.argsort(np.mean([r["per_class"] for r in ce], axis=0))[:3]
    label = {"ce": f"cross-entropy, {args.rounds * args.round_epochs} epochs",
             "worst_class": f"worst-class (w={args.worst_weight:g}), {args.rounds} x {args.round_epochs} epochs"}
    head = " | ".join(f"test acc. {names[c]}" for c in worst3)
    lines = [f"| loss | seed | best valid acc. | last valid acc. | test acc. | {head} | time (s) |",
             "|---" * (6 + len(worst3)) + "|"]
    for r in results:
        cells = " | ".join(f"{r['per_class'][c]:.4f}" for c in worst3)
        lines.append(f"| {label[r['side']]} | {r['seed']} | {r['best_valid']:.4f} | {r['last_valid']:.4f} | "
                     f"{r['test']:.4f} | {cells} | {r['seconds']:.0f} |")
    for r in results:
        if r["picks"]:
            picks = "; ".join(",".join(names[c] for c in p) or "none" for p in r["picks"])
            lines.append(f"\nworst sets picked after each round (seed {r['seed']}): {picks}")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6,000 training / 2,000 test images, 3 x 2 epochs")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--seeds", type=whole(1), default=1, help="seeds per side")
    parser.add_argument("--rounds", type=whole(1))
    parser.add_argument("--round-epochs", type=whole(1))
    parser.add_argument("--worst-weight", type=float, default=1.0)
    parser.add_argument("--n-train", type=whole(1), help="training images (default: all, 6,000 with --quick)")
    parser.add_argument("--record", action="store_true", help="append the table to BENCHMARKS.md")
    args = parser.parse_args(argv)
    args.device = resolve_device(args.device)
    args.rounds = args.rounds or (3 if args.quick else 6)
    args.round_epochs = args.round_epochs or (2 if args.quick else 15)
    n_train = args.n_train or (6000 if args.quick else None)
    dataset = load_dataset("fashion-mnist")
    rng = np.random.default_rng(0)
    train_idx = rng.permutation(len(dataset.y_train))[:n_train]
    test_idx = rng.permutation(len(dataset.y_test))[:2000] if args.quick else np.arange(len(dataset.y_test))
    X_train, X_test = (a.reshape(len(a), -1) for a in (dataset.X_train[train_idx], dataset.X_test[test_idx]))
    data = (X_train, dataset.y_train[train_idx], X_test, dataset.y_test[test_idx])
    results = []
    for seed in range(args.seeds):
        for side in ("ce", "worst_class"):  # alternately, so drift of the shared machine hits both
            results.append(train(side, data, args, seed))
            r = results[-1]
            print(f"{side:12s} seed {seed}: test {r['test']:.4f}, best valid {r['best_valid']:.4f} "
                  f"({r['seconds']:.0f} s)", flush=True)
    setup = (f"Fashion-MNIST, {len(train_idx):,} training images (20% of them the validation split), "
             f"{len(test_idx):,} test images; MLP {NET['hidden']}, dropout {NET['dropout']}, Adam lr {NET['lr']}, "
             f"batch 128, no early stopping; `python bench/worst_class.py {' '.join(argv or sys.argv[1:])}`")
    lines = [machine_line(args.device), "", setup, "", *table(results, dataset.class_names, args)]
    print("\n".join(lines))
    if args.record:
        with open(ROOT / "BENCHMARKS.md", "a") as f:
            f.write(f"\n### {'Quick run' if args.quick else 'Full run'} — {machine_line(args.device)[9:]}\n\n")
            f.write("\n".join(lines[2:]) + "\n")


if __name__ == "__main__":
    main()
