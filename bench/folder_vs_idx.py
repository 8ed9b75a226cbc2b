"""Fashion-MNIST written out as an image-folder tree (PNG files, class folders by name), searched with
your own module (examples/own_network) through ``--dataset folder``, and checked against the idx
loader: the same pixels, and the same config and seed give the same test accuracy.

    python bench/folder_vs_idx.py [--tree /tmp/fashion_tree] [--max-train 12000] [--epochs 10]

Prints the time to write and to read the tree (the first read decodes, the second reads the cache),
whether every image equals its idx image, the search's winner, and one line per loader with the
test accuracy of the winner's config retrained on the same slice with the same seed:

- ``folder``: the tree, read by ``--dataset folder``;
- ``idx``: the idx files, as ``--dataset fashion-mnist`` reads them (rows in the files' order);
- ``idx, folder order``: the idx images in the tree's row order (class by class, then file name).

The tree's rows come class by class, so ``folder`` and ``idx`` draw other folds, batches and slices
(their accuracies differ by run-to-run noise); ``idx, folder order`` must equal ``folder`` exactly.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from _common import machine_line, whole  # noqa: E402,I001
from hpsearch.data import FASHION_CLASSES, load_dataset  # noqa: E402
from hpsearch.data.dataset import Dataset  # noqa: E402
from hpsearch.retrain.top import retrain_top  # noqa: E402
from hpsearch.search.run import run_search  # noqa: E402
from hpsearch.settings import SearchSettings  # noqa: E402
from hpsearch.training.net import make_net  # noqa: E402

FOLDERS = [f"{i}-{name.lower().replace('/', '-').replace(' ', '-')}" for i, name in enumerate(FASHION_CLASSES)]


def write_tree(data: Dataset, tree: Path) -> float:
    start = time.perf_counter()
    for split, X, y in (("train", data.X_train, data.y_train), ("test", data.X_test, data.y_test)):
        for folder in FOLDERS:
            (tree / split / folder).mkdir(parents=True, exist_ok=True)
        for i, (x, label) in enumerate(zip(X, y, strict=True)):
            pixels = np.rint(x[0] * 255).astype(np.uint8)
            Image.fromarray(pixels).save(tree / split / FOLDERS[label] / f"{i:05d}.png")
    return time.perf_counter() - start


def in_folder_order(data: Dataset) -> Dataset:
    """The idx rows in the tree's order: class by class, then by file name (the row's index)."""
    train, test = (np.argsort(y, kind="stable") for y in (data.y_train, data.y_test))
    return Dataset("fashion-mnist", data.X_train[train], data.y_train[train], data.X_test[test], data.y_test[test],
                   data.class_names)


def test_accuracy(config: dict, data: Dataset, max_train: int, seed: int, epochs: int) -> float:
    part = data.training_slice(max_train, seed)
    net = make_net(config, part, max_epochs=epochs, patience=0, random_state=seed)
    net.fit(part.X_train, part.y_train)
    return float((net.predict(part.X_test) == part.y_test).mean())


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tree", default="/tmp/fashion_tree")
    p.add_argument("--max-train", type=whole(1), default=12000)
    p.add_argument("--epochs", type=whole(1), default=10, help="epochs of the retraining and of each comparison fit")
    p.add_argument("--n", type=whole(1), default=9)
    p.add_argument("--seed", type=whole(0), default=0)
    p.add_argument("--out", default=None, help="the run folder (default: a new one under the temp folder, said at "
                                                "the start; a folder of an earlier run with other settings is refused)")
    args = p.parse_args(argv)
    print(machine_line(), flush=True)
    tree = Path(args.tree)
    idx = load_dataset("fashion-mnist")
    if not (tree / "train").is_dir():
        print(f"wrote {len(idx.y_train) + len(idx.y_test):,} PNG files in {write_tree(idx, tree):.1f} s", flush=True)
    for which in ("first (decode)", "second (cache)"):
        start = time.perf_counter()
        folder = load_dataset("folder", tree, seed=args.seed)
        print(f"read the tree, {which}: {time.perf_counter() - start:.1f} s", flush=True)
    ordered = in_folder_order(idx)
    same = all(np.array_equal(a, b) for a, b in ((folder.X_train, ordered.X_train), (folder.y_train, ordered.y_train),
                                                 (folder.X_test, ordered.X_test), (folder.y_test, ordered.y_test)))
    print(f"every image and label equals the idx loader's: {same}", flush=True)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-folder-"))  # never the repository
    print(f"run folder: {out}", flush=True)
    settings = SearchSettings(dataset="folder", data_dir=str(tree), space=str(ROOT / "examples/own_network/space.toml"),
                              strategy="halving", n=args.n, cv=2, min_epochs=1, max_epochs=9, patience=0,
                              max_train=args.max_train, seed=args.seed, out=str(out), progress=False)
    start = time.perf_counter()
    run_search(settings)
    result = retrain_top(out, top=1, retrain_epochs=args.epochs, progress=False)
    summary = json.loads((out / "summary.json").read_text())["winner"]
    print(f"search + retraining: {time.perf_counter() - start:.0f} s; winner trial {summary['trial']}: "
          f"{summary['config']}, test accuracy {summary['test_accuracy']:.4f}", flush=True)
    del result
    config = summary["config"]
    for name, data in (("folder", folder), ("idx", idx), ("idx, folder order", ordered)):
        accuracy = test_accuracy(config, data, args.max_train, args.seed, args.epochs)
        print(f"loader={name!r} test_accuracy={accuracy:.4f}", flush=True)


if __name__ == "__main__":
    from hpsearch.errors import UsageError

    try:
        main()
    except UsageError as exc:  # e.g. an --out of an earlier run with other settings: one line, not a traceback
        print(f"folder_vs_idx.py: error: {exc}", file=sys.stderr)
        sys.exit(2)
