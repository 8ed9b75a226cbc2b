"""GAP-CNN on full Fashion-MNIST in plain PyTorch (no skorch/optuna/captum needed), for a GPU box.

A small search over ``searches/gapcnn_mnist.toml`` (configs from hpsearch's own ParamGenerator,
scored on a 50k/10k hold-out split of the training set), then the winner retrained on all 60k
training images and scored once on the 10k test images. The models are hpsearch's ``GAPCNN``.

    python bench/gapcnn_fashion.py --data-dir bench/data --device cuda --out results.json

Prints one line per config and epoch; writes a JSON summary to ``--out``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent


def _import_hpsearch(name: str):
    """Import ``hpsearch.<name>`` without ``hpsearch/__init__`` (which needs skorch)."""
    if "hpsearch" not in sys.modules:
        pkg = types.ModuleType("hpsearch")
        pkg.__path__ = [str(ROOT / "hpsearch")]
        sys.modules["hpsearch"] = pkg
    return importlib.import_module(f"hpsearch.{name}")


def load(data_dir: Path, device):
    read_idx = _import_hpsearch("data.idx").read_idx  # checks magic, shape and size

    def images(stem):
        return torch.tensor(read_idx(data_dir / f"{stem}-images-idx3-ubyte.gz"), dtype=torch.float32,
                            device=device)[:, None] / 255.0

    def labels(stem):
        return torch.tensor(read_idx(data_dir / f"{stem}-labels-idx1-ubyte.gz").astype(np.int64), device=device)

    return images("train"), labels("train"), images("t10k"), labels("t10k")


OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "rmsprop": torch.optim.RMSprop,
              "sgd": torch.optim.SGD}
MODULE_KEYS = ("filters", "pool_after", "batch_norm", "dropout", "kernel_size")


def build(config, device, seed):
    models = _import_hpsearch("training.models")
    torch.manual_seed(seed)
    kwargs = {k: config[k] for k in MODULE_KEYS if k in config}
    model = models.GAPCNN(in_channels=1, image_size=28, n_classes=10, **kwargs).to(device)
    opt = OPTIMIZERS[config.get("optimizer", "adam")](model.parameters(), lr=config.get("lr", 1e-3),
                                                       weight_decay=config.get("weight_decay", 0.0))
    return model, opt


@torch.no_grad()
def accuracy(model, X, y, batch=2048):
    model.eval()
    correct = sum((model(X[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item() for i in range(0, len(X), batch))
    return correct / len(X)


def train(config, Xtr, ytr, epochs, device, seed, batch_size=128, Xev=None, yev=None, log="", deadline=None,
          cosine=False):
    model, opt = build(config, device, seed)
    # Cosine annealing to 0 over the epochs: the usual cure for the epoch-to-epoch swings of a
    # constant learning rate with batch norm.
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs) if cosine else None
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator(device=device).manual_seed(seed)
    curve = []
    for epoch in range(1, epochs + 1):
        if deadline is not None and time.perf_counter() > deadline:
            print(f"{log}: time budget reached, stopping after {epoch - 1} epochs", flush=True)
            break
        model.train()
        order = torch.randperm(len(Xtr), device=device, generator=g)
        for i in range(0, len(Xtr), batch_size):
            idx = order[i:i + batch_size]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(Xtr[idx]), ytr[idx]).backward()
            opt.step()
        if sched is not None:
            sched.step()
        if Xev is not None:
            acc = accuracy(model, Xev, yev)
            curve.append(acc)
            print(f"{log} epoch {epoch:2d}  acc {acc:.4f}", flush=True)
    return model, curve


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--device", default="cpu")
    p.add_argument("--n-configs", type=int, default=8)
    p.add_argument("--search-epochs", type=int, default=10)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--n-train", type=int, default=None, help="use only the first N training images")
    p.add_argument("--budget-s", type=float, default=400,
                   help="search configs during the first half of this; stop the winner's epochs at it")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cosine", action="store_true", help="cosine-anneal the learning rate to 0 over the epochs")
    p.add_argument("--winner", default=None, help="a config as JSON: skip the search and train this one")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    space = _import_hpsearch("space.search_space")
    t0 = time.perf_counter()
    Xtr, ytr, Xte, yte = load(Path(args.data_dir), device)
    if args.n_train:
        Xtr, ytr = Xtr[:args.n_train], ytr[:args.n_train]
    n_val = len(Xtr) // 6
    configs = space.ParamGenerator(space.load_space(ROOT / "searches/gapcnn_mnist.toml"), args.seed).gen_values(
        args.n_configs)
    trials = [{"index": "given", "config": json.loads(args.winner), "val_acc": float("nan")}] if args.winner else []
    for i, config in enumerate([] if args.winner else configs):
        if time.perf_counter() - t0 > args.budget_s * 0.5:
            print(f"budget: stopping the search after {i} configs", flush=True)
            break
        t = time.perf_counter()
        _, curve = train(config, Xtr[:-n_val], ytr[:-n_val], args.search_epochs, device, args.seed,
                         Xev=Xtr[-n_val:], yev=ytr[-n_val:], log=f"config {i}", cosine=args.cosine)
        trials.append({"index": i, "config": config, "val_acc": max(curve), "val_curve": curve,
                       "seconds": time.perf_counter() - t})
        print(f"config {i}: best val {max(curve):.4f} in {trials[-1]['seconds']:.1f}s  {config}", flush=True)
    best = max(trials, key=lambda r: r["val_acc"])
    print(f"winner: config {best['index']} {best['config']}", flush=True)
    t = time.perf_counter()
    model, curve = train(best["config"], Xtr, ytr, args.epochs, device, args.seed, Xev=Xte, yev=yte,
                         log="winner (test)", deadline=t0 + args.budget_s, cosine=args.cosine)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t
    epochs = len(curve)
    summary = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "cosine": args.cosine, "n_train": len(Xtr), "n_test": len(Xte),
        "search": trials, "winner": best["config"], "epochs": epochs,
        "test_acc_final": curve[-1], "test_curve": curve, "train_seconds": seconds,
        "seconds_per_epoch": seconds / epochs, "total_seconds": time.perf_counter() - t0,
        "note": "test accuracy after each epoch is printed for the curve; the reported figure is the last epoch's",
    }
    print(f"winner test accuracy {curve[-1]:.4f} after {epochs} epochs, {seconds:.1f}s "
          f"({seconds / epochs:.2f}s/epoch) on {summary['device']}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2, default=list) + "\n")
    return summary


if __name__ == "__main__":
    main()
