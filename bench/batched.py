"""The same search with both engines: ``--engine batched`` vs ``--engine skorch`` (configs/hour).

Both sides are ``run_search`` end to end (same space, configs, folds, per-trial seeds, epochs,
early stopping, trial store and ranking files), on the same data, in this one process. The batched
engine runs the whole search (``--n`` configs); the skorch engine, far slower, runs the first
``--skorch-sample`` of those same configs and its time is scaled to ``--n`` (configs are drawn
i.i.d., so the first k are a random sample). ``ratio`` = batched configs/hour over skorch's.
Accuracy agreement on the sampled configs is printed too (mean |difference| of the mean CV
accuracy, Spearman of the mean CV scores).

    python bench/batched.py --quick                       # CPU: 8 configs, 4,000 images, 5 epochs
    python bench/batched.py --device cuda --data-dir bench/data   # 150 configs x 4 folds x 20 epochs, 60k
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from joblib import Parallel, delayed
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import env_note, machine_line, sync, whole  # noqa: E402,I001

import torch  # noqa: E402

from hpsearch.data import load_dataset  # noqa: E402
from hpsearch.engines.stack import update_path  # noqa: E402
from hpsearch.training.net import resolve_device  # noqa: E402
from hpsearch.settings import SearchSettings  # noqa: E402
from hpsearch.search.run import run_search  # noqa: E402
from hpsearch.rundir.store import load_results  # noqa: E402


def _warm_worker(device):
    import skorch  # noqa: F401


    if device.startswith("cuda"):
        torch.ones(1, device=device).sum().item()
    return True


def _search(dataset, engine, n, args, device, out_dir, max_models=None):
    settings = SearchSettings(n=n, dataset=args.dataset, space=args.space, cv=4, n_jobs=-1,
                              max_epochs=args.max_epochs, patience=args.patience, seed=args.seed,
                              out=str(out_dir), device=device, progress=False, engine=engine,
                              max_models_per_chunk=max_models)
    sync(device)
    start = time.perf_counter()
    frame = load_results(run_search(settings, dataset)).sort_values("trial")
    sync(device)
    return time.perf_counter() - start, frame.set_index("trial")


def _agreement(frame, skorch, ratio):
    both = frame.loc[skorch.index]
    ok = (both["error"] == "") & (skorch["error"] == "")
    diff = (both["mean_test_accuracy"] - skorch["mean_test_accuracy"]).abs()[ok]
    rho = spearmanr(both["mean_test_score"][ok], skorch["mean_test_score"][ok]).statistic
    pairs = zip(both["mean_test_accuracy"], skorch["mean_test_accuracy"], strict=True)
    print(f"  ratio (batched / skorch configs per hour) = {ratio:.1f}; agreement on the {int(ok.sum())} "
          f"sampled configs: mean |accuracy difference| = {100 * diff.mean():.2f} points "
          f"(max {100 * diff.max():.2f}), Spearman "
          f"of scores = {rho:.3f}; best mean accuracy {frame['mean_test_accuracy'].max():.4f}; sampled "
          "accuracies batched/skorch: " + ", ".join(
              f"{a:.4f}/{b:.4f}" for a, b in pairs))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="CPU-sized: 8 configs, 4,000 images, 5 epochs")
    parser.add_argument("--n", type=whole(1), default=None, help="configs (default 150; --quick 8)")
    parser.add_argument("--images", type=whole(1), default=None, help="training images (default 60,000; --quick 4,000)")
    parser.add_argument("--max-epochs", type=whole(1), default=None, help="default 20 (--quick 5)")
    parser.add_argument("--patience", type=whole(0), default=15, help="early stopping patience (default 15)")
    parser.add_argument("--skorch-sample", type=whole(1), default=8, help="configs the skorch engine runs (default 8)")
    parser.add_argument("--max-models-per-chunk", default="auto",
                        help="batched engine chunk size(s): auto or a comma list, each timed (default auto)")
    parser.add_argument("--space", default="mlp_mnist")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=whole(0), default=0)
    parser.add_argument("--tf32", default="off", help="TF32 matmuls on the GPU for the batched engine: "
                        "off, on, or off,on to time both (default off)")
    parser.add_argument("--no-skorch", action="store_true", help="time the batched engine only")
    args = parser.parse_args(argv)
    n = args.n or (8 if args.quick else 150)
    images = args.images or (4_000 if args.quick else 60_000)
    args.max_epochs = args.max_epochs or (5 if args.quick else 20)
    sample = min(args.skorch_sample, n)
    device = resolve_device(args.device)
    dataset = load_dataset(args.dataset, args.data_dir).subset(images, 0)
    print(machine_line(device), flush=True)
    print(f"command: python {' '.join(sys.argv)}  ({env_note()}, dataset={args.dataset}, images={images}, "
          f"n={n}, cv=4, max_epochs={args.max_epochs}, patience={args.patience}, space={args.space}, "
          f"device={device}, tf32={args.tf32}, skorch sample={sample})", flush=True)
    Parallel(n_jobs=-1)(delayed(_warm_worker)(device) for _ in range(4))
    chunk_sizes = [None if c == "auto" else int(c) for c in args.max_models_per_chunk.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        _search(dataset.subset(500), "batched", 2, argparse.Namespace(**{**vars(args), "max_epochs": 1}),
                device, Path(tmp) / "warm")  # CUDA/BLAS start-up, not timed
        skorch = None
        if not args.no_skorch:  # first: the slow side's timing is the one a time limit must not lose
            seconds, skorch = _search(dataset, "skorch", sample, args, device, Path(tmp) / "skorch")
            scaled = seconds / sample * n
            print(f"skorch: {seconds:.1f} s for {sample} configs -> {scaled:.0f} s for {n} (scaled) = "
                  f"{n / scaled * 3600:,.0f} configs/hour", flush=True)
        for tf32 in args.tf32.split(","):
            torch.backends.cuda.matmul.allow_tf32 = tf32 == "on"
            for size in chunk_sizes:
                b_seconds, frame = _search(dataset, "batched", n, args, device, Path(tmp) / f"b{size}{tf32}", size)
                print(f"batched (max_models_per_chunk={size or 'auto'}, tf32={tf32}): {b_seconds:.1f} s for {n} "
                      f"configs = {n / b_seconds * 3600:,.0f} configs/hour; failed "
                      f"{int((frame['error'] != '').sum())}; optimizer update {update_path(device)}", flush=True)
                if skorch is not None:
                    _agreement(frame, skorch, scaled / b_seconds)
        torch.backends.cuda.matmul.allow_tf32 = False
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
