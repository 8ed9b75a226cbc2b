"""Samples per second of one training epoch: our skorch path vs a plain PyTorch loop.

Both sides train the same MLP (784-100-50-10 and 784-600-300-10) with Adam, batch size 128,
shuffled batches, on the same real Fashion-MNIST images, with the same torch threads; the sides
run alternately in this one process and the medians give ``ratio_vs_raw`` (ours / raw, 1.0 =
as fast as the raw loop). ``plain`` is skorch as configured before the lean path (``lean=False``),
``lean`` is the default path of ``make_net``.

    python bench/training_throughput.py --quick          # ~20 s on 2 cores
    python bench/training_throughput.py                  # 45,000 images (one CV fold's training set)
    python bench/training_throughput.py --device cuda
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import alternate, env_note, fashion_slice, machine_line, median, mlp_macs, set_threads, whole  # noqa: E402

from hpsearch.training.models.mlp import MLP  # noqa: E402
from hpsearch.training.net import make_net  # noqa: E402

SIZES = {"small": (100, 50), "large": (600, 300)}
BATCH = 128


def raw_epoch(X, y, hidden, n_features, n_classes, device, seed=0):
    """The floor we compare with: tensors on the device once, randperm batches, no framework."""
    torch.manual_seed(seed)
    module = MLP(n_features, hidden, n_classes, dropout=0.1).to(device)
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
    criterion = torch.nn.CrossEntropyLoss()
    module.train()
    perm = torch.randperm(len(X), device=device)
    for start in range(0, len(X), BATCH):
        idx = perm[start:start + BATCH]
        optimizer.zero_grad()
        # index_select, not X[idx]: on the CPU several times faster, and what the lean path does
        loss = criterion(module(X.index_select(0, idx)), y.index_select(0, idx))
        loss.backward()
        optimizer.step()


def net_epoch(X, y, hidden, n_features, n_classes, device, lean):
    config = {"model": "mlp", "hidden": list(hidden), "dropout": 0.1, "lr": 1e-3, "optimizer": "adam"}
    extra = {} if lean is None else {"lean": lean}
    net = make_net(config, n_features, n_classes, device=device, max_epochs=1, batch_size=BATCH,
                   patience=0, random_state=0, **extra)
    net.fit(X, y)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 images, 3 rounds")
    parser.add_argument("--n", type=whole(1), default=None, help="training images (default 45,000)")
    parser.add_argument("--repeats", type=whole(1), default=None)
    parser.add_argument("--threads", type=whole(1), default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    n = args.n or (10_000 if args.quick else 45_000)
    repeats = args.repeats or (3 if args.quick else 5)
    threads = set_threads(args.threads)
    has_lean = "lean" in inspect.signature(make_net).parameters

    X, y, n_features, n_classes = fashion_slice(n, data_dir=args.data_dir)
    Xt, yt = torch.as_tensor(X, device=args.device), torch.as_tensor(y, device=args.device)
    print(machine_line(args.device))
    print(f"command: python {' '.join(sys.argv)}  ({env_note()}, threads={threads}, n={n}, "
          f"batch={BATCH}, repeats={repeats}, device={args.device})")
    for size, hidden in SIZES.items():
        sides = {"raw": lambda h=hidden: raw_epoch(Xt, yt, h, n_features, n_classes, args.device)}
        if has_lean:
            sides["plain"] = lambda h=hidden: net_epoch(X, y, h, n_features, n_classes, args.device, False)
            sides["lean"] = lambda h=hidden: net_epoch(X, y, h, n_features, n_classes, args.device, True)
        else:
            sides["plain"] = lambda h=hidden: net_epoch(X, y, h, n_features, n_classes, args.device, None)
        times = alternate(sides, repeats, args.device)
        raw = n / median(times["raw"])
        arch = "-".join(str(w) for w in (n_features, *hidden, n_classes))
        line = [f"{size} {arch}: raw {raw:,.0f} samples/s"]
        for name in sides:
            if name == "raw":
                continue
            rate = n / median(times[name])
            line.append(f"{name} {rate:,.0f} samples/s ratio_vs_raw={rate / raw:.2f}")
        flop = 6 * mlp_macs((n_features, *hidden, n_classes))
        line.append(f"raw {raw * flop / 1e9:.1f} GFLOP/s ({flop / 1e6:.2f} MFLOP/sample)")
        print(" | ".join(line), flush=True)
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
