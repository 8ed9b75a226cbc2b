"""Shared bits of the benchmarks: the machine line, data slices, and side-by-side timing.

The machine is shared and noisy, so every benchmark runs its sides alternately in one process
(A, B, A, B, ...) and reports the median of each side and their ratio: drift hits both sides.
"""

from __future__ import annotations

import datetime
import itertools
import os
import platform
import statistics
import time

import numpy as np
import torch


def whole(low: int, high: int | None = None):
    """An argparse type: a whole number from ``low`` (to ``high``), else argparse's one line saying so
    (0 and negatives used to fall back to defaults or end in a traceback)."""
    import argparse

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < low or (high is not None and value > high):
            span = f"from {low:,} to {high:,}" if high is not None else f">= {low:,}"
            raise argparse.ArgumentTypeError(f"must be a whole number {span}, got {value:,}")
        return value
    return parse


def mlp_macs(widths) -> int:
    """Multiply-adds of one image's forward pass through an MLP of these layer widths (input first);
    a training step costs about 3x this (6x in FLOP)."""
    return sum(a * b for a, b in itertools.pairwise(widths))


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_line(device: str = "cpu") -> str:
    """One line naming the date, cores, CPU model, torch version and (when used) the GPU."""
    from hpsearch.jobs.resources import cpu_count

    parts = [datetime.date.today().isoformat(), f"{cpu_count()} cores", cpu_model(),
             f"torch {torch.__version__}", f"threads {torch.get_num_threads()}",
             "load avg {:.1f} {:.1f} {:.1f} (other processes share the cores)".format(*os.getloadavg())]
    if device.startswith("cuda") and torch.cuda.is_available():
        parts.append(f"GPU {torch.cuda.get_device_name(device)}")
    return "machine: " + " | ".join(parts)


def fashion_slice(n: int, seed: int = 0, data_dir: str | None = None):
    """``n`` stratified-at-random training images of real Fashion-MNIST (falls back to MNIST)."""
    from hpsearch.data import load_dataset

    dataset = load_dataset("fashion-mnist", data_dir)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(dataset.y_train))[:n]
    return (np.ascontiguousarray(dataset.X_train[idx]), dataset.y_train[idx].copy(),
            dataset.n_features, dataset.n_classes)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def alternate(sides: dict, repeats: int, device: str = "cpu", warmup: int = 1) -> dict:
    """Run each side ``warmup`` times, then ``repeats`` rounds of every side in turn.

    Returns ``{name: [seconds, ...]}``; each side is a callable taking no arguments.
    """
    for _ in range(warmup):
        for fn in sides.values():
            fn()
            sync(device)
    times = {name: [] for name in sides}
    for _ in range(repeats):
        for name, fn in sides.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def median(values) -> float:
    return float(statistics.median(values))


def set_threads(threads: int | None) -> int:
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def env_note() -> str:
    keys = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
    return " ".join(f"{k}={os.environ[k]}" for k in keys if k in os.environ) or "no thread env vars"


def report_stream():
    """A stream to the real stdout; fd 1 itself (and so every joblib worker started later) goes to
    /dev/null, since the seed-faithful side prints a table line per epoch, as the seed did."""
    report = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    return report
