"""Build a tabulated benchmark: every config of the Lab 3 space scored on every fold after every epoch
(see ``_tables``), for ``bench/replay.py`` to replay strategies on.

    python bench/table.py --table digits                  # N=1000 configs x 4 folds x 100 epochs
    python bench/table.py --table fashion                 # N=450 x 4 x 27 epochs, 12,000-image slice
    python bench/table.py --table fashion --images 60000 --device cuda   # the whole training set, on a GPU
    python bench/table.py --table digits --n 300 --epochs 27             # a smaller table

The file lands in ``bench/tables/<table>.npz`` (``--out``), with its provenance (commit, seed, engine,
data, machine, date, the command). An interrupted build resumes from ``<out>.partial.npz`` (written every
``--checkpoint-every`` fits, 200): run the same command again. Rows of an earlier table at ``--out`` are
kept only when its engine, data, folds, seed and device are this build's (it says which it kept).
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_line, whole  # noqa: E402,I001
from _tables import build_table  # noqa: E402

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from hpsearch.data import load_dataset  # noqa: E402

TABLES = {  # name: (dataset, training images, configs, epochs, test-set epochs: None = every epoch)
    "digits": ("digits", None, 1000, 100, None),
    # the 10,000 test images cost a fifth of a fit's time per epoch: scored at the powers-of-3 budgets only
    "fashion": ("fashion-mnist", 12_000, 450, 27, (1, 3, 9, 27)),
}
HERE = Path(__file__).resolve().parent


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--table", choices=sorted(TABLES), required=True)
    parser.add_argument("--n", type=whole(1, 1_000_000), default=None, help="configs (digits 1000, fashion 450)")
    parser.add_argument("--epochs", type=whole(1, 10_000), default=None, help="epochs per fit (digits 100, fashion 27)")
    parser.add_argument("--images", type=whole(40), default=None, help="training images (fashion: 12,000 stratified)")
    parser.add_argument("--test-epochs", default=None,
                        help="epochs after which the test set is scored, comma-separated, or 'all' "
                             "(digits: all; fashion: 1,3,9,27)")
    parser.add_argument("--cv", type=whole(2, 100), default=4)
    parser.add_argument("--seed", type=whole(0, 2**32 - 1), default=0)
    parser.add_argument("--jobs", type=whole(1, 1024), default=2, help="parallel fits, one torch thread each")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--engine", choices=("batched", "skorch"), default="batched",
                        help="whose fits the table holds (a replay matches a real run on that engine)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=None, help="default: bench/tables/<table>.npz")
    parser.add_argument("--checkpoint-every", type=whole(1), default=200,
                        help="write <out>.partial.npz after every N fits, so a stopped build resumes (default 200)")
    args = parser.parse_args(argv)
    name, default_images, default_n, default_epochs, test_epochs = TABLES[args.table]
    n = default_n if args.n is None else args.n
    epochs = default_epochs if args.epochs is None else args.epochs
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA GPU is visible here; use --device cpu")
    if args.test_epochs is not None:
        words = args.test_epochs.split(",")
        if args.test_epochs != "all" and not all(w.strip().isdigit() and int(w) >= 1 for w in words):
            parser.error(f"--test-epochs must be 'all' or epochs >= 1, comma-separated (1,3,9,27), got "
                         f"{args.test_epochs!r}")
        test_epochs = None if args.test_epochs == "all" else [int(e) for e in words]
    if test_epochs is not None:
        test_epochs = [e for e in test_epochs if e <= epochs] + ([] if epochs in test_epochs else [epochs])
    images = args.images if args.images is not None else default_images
    from strategies import stratified_slice

    dataset = stratified_slice(load_dataset(name, args.data_dir), images, args.seed)
    out = Path(args.out) if args.out else HERE / "tables" / f"{args.table}.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    provenance = {"commit": _commit(), "seed": args.seed, "engine": args.engine,
                  "dataset": name, "train_images": len(dataset.y_train), "test_images": len(dataset.y_test),
                  "configs": n, "epochs": epochs, "cv": args.cv, "space": "mlp_mnist", "device": args.device,
                  "jobs": args.jobs, "machine": machine_line(args.device), "test_epochs": test_epochs or "all",
                  "date": datetime.date.today().isoformat()}
    start = time.perf_counter()
    bar = tqdm(total=None, unit="fit", desc=f"{args.table} table", mininterval=5)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    provenance["command"] = "python bench/table.py " + " ".join(argv if argv is not None else sys.argv[1:])
    build_table(dataset, n, epochs, cv=args.cv, seed=args.seed, jobs=args.jobs, device=args.device,
                engine=args.engine, out=out, provenance=provenance, progress=progress, test_epochs=test_epochs,
                checkpoint_every=args.checkpoint_every)
    bar.close()
    print(f"{out}: {n} configs x {args.cv} folds x {epochs} epochs in {time.perf_counter() - start:.0f} s "
          f"({out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
