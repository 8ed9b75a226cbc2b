"""One Fashion-MNIST CNN retrained with and without a cosine schedule and with and without
augmentation (flip-crop): test accuracy side by side (issue 13).

Every variant is the same ``make_net`` config and seed (``random_state=0``, ``patience=0``, no early
stopping), trained for ``--epochs`` on a stratified ``--images`` slice of the training set (default
12,000) and scored once on the whole 10,000-image test set; only ``schedule`` and ``augment``
differ. One run per variant, in this process, one after the other.

    python bench/schedules_augment.py                       # 12,000 images, 12 epochs: ~10 min on 2 cores
    python bench/schedules_augment.py --images 60000 --epochs 30 --device cuda
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import machine_line

from hpsearch import make_net
from hpsearch.data import load_dataset

CONFIG = {"model": "cnn", "filters": [16, 16, 32, 32], "block_size": 2, "dense": [128], "dropout": 0.3,
          "conv_dropout": 0.1, "batch_norm": True, "lr": 1e-3, "optimizer": "adam"}
VARIANTS = [("none", "none"), ("cosine", "none"), ("none", "flip-crop"), ("cosine", "flip-crop")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=12_000)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--device", default="cpu")
    p.add_argument("--data-dir")
    args = p.parse_args()
    dataset = load_dataset("fashion-mnist", args.data_dir).training_slice(args.images, 0)
    print(machine_line(args.device))
    print(f"Fashion-MNIST: {len(dataset.y_train):,} training images, {len(dataset.y_test):,} test images; "
          f"{args.epochs} epochs; config {CONFIG}")
    print("\n| schedule | augment | test accuracy | test log-loss | wall (s) |\n|---|---|---|---|---|")
    for schedule, augment in VARIANTS:
        net = make_net({**CONFIG, "schedule": schedule, "augment": augment}, dataset, device=args.device,
                       max_epochs=args.epochs, patience=0, random_state=0)
        start = time.perf_counter()
        net.fit(dataset.X_train, dataset.y_train)
        wall = time.perf_counter() - start
        proba = net.predict_proba(dataset.X_test)
        accuracy = float(np.mean(proba.argmax(1) == dataset.y_test))
        loss = float(-np.mean(np.log(np.clip(proba[np.arange(len(proba)), dataset.y_test], 1e-12, 1))))
        print(f"| {schedule} | {augment} | {accuracy:.4f} | {loss:.4f} | {wall:.0f} |", flush=True)


if __name__ == "__main__":
    torch.set_num_threads(max(1, torch.get_num_threads()))
    main()
