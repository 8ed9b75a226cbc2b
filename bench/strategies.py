"""Search strategies head to head: hpsearch's random / halving / hyperband / tpe against two peers,
scikit-learn's ``HalvingRandomSearchCV`` and an Optuna study (TPE + successive-halving pruner).

Every contender runs in this one process, one after the other, on the same data, space, seed and
folds:

- data: a stratified slice of ``--images`` Fashion-MNIST training images (default 12,000), tested
  on the whole 10,000-image test set; ``--quick``: scikit-learn's bundled digits (1,437 / 360);
- space: ``searches/mlp_mnist.toml`` (Lab 3), the configs ``ParamGenerator(space, seed).gen_values(n)``;
- folds: ``make_folds(y, 4, seed)``; every net is ``make_net(config, patience=0, ...)`` seeded with
  ``trial_seed(seed, i)`` for config ``i``, trained in 2 jobs of 1 torch thread each.

Contenders (``--only`` takes a comma list of these names):

``random``, ``halving``, ``hyperband``, ``tpe``, ``tpe-halving``
    ``run_search`` with ``strategy=<name>``, ``n_jobs=2``, in a fresh temporary run folder.
    Fold-epochs trained = sum over the trials of ``mean_epochs * cv`` (survivors continue).
``halving-before``
    ``halving`` with ``factor=3``, ``trend="off"`` (fold racing at its default), whatever ``--factor``
    says: its defaults until the eighth session and again since the tenth.
``halving-f4-trend``
    ``halving`` with ``factor=4``, ``trend=0.5`` (fold racing at its default): its defaults from the
    eighth session to the tenth.
``sklearn-halving``
    ``HalvingRandomSearchCV`` over the same n configs, ``resource="max_epochs"``, rungs
    ``min_epochs * factor**k`` up to ``max_epochs``; every rung trains from scratch (a
    ``fit`` with the rung's ``max_epochs``), so a survivor's earlier epochs are trained again.
``sklearn-halving-samples``
    ``HalvingRandomSearchCV`` with its default resource, ``n_samples``: every fit trains ``max_epochs``
    epochs on a rung's share of the training fold (``1/factor**k`` of it, as many rungs as
    ``sklearn-halving`` has) and is scored on the same share of the held-out fold; the last rung uses
    whole folds. Fold-epochs are counted as epochs x the share of the fold, so they compare as compute.
    It measures the choice the issue left open: the number of training samples as the resource
    instead of (or beside) epochs.
``hpsearch-halving-cv``
    hpsearch's ``HalvingRandomSearchCV`` (the scikit-learn door) given the space itself:
    ``HalvingRandomSearchCV(make_net(...), load_space(SPACE), n_candidates=n, random_state=seed)``
    draws exactly the n configs above (checked) and runs ``sklearn-halving``'s rungs with survivors
    continuing. Its nets are seeded by the door (``random_state`` and the candidate), not by
    ``trial_seed``, so its scores are another draw of the same configs, not ``sklearn-halving``'s.
``optuna-tpe-sha``, ``optuna-tpe-hyperband``
    ``TPESampler(seed, n_startup_trials=n_startup)`` + ``SuccessiveHalvingPruner(min_epochs,
    factor)`` (or ``HyperbandPruner(min_epochs, max_epochs, factor)``); the first ``n_startup``
    trials are our configs 0.. (enqueued: the space's weighted optimizer draw, as hpsearch's tpe
    starts), then TPE proposes; each trial trains its 4 folds in lockstep, one ``partial_fit`` epoch
    at a time in 2 worker processes, reports the mean held-out neg-log-loss after every epoch and
    stops when the pruner says so (checked below max_epochs).
``dehb``
    DEHB (the ``dehb`` package: ``pip install --no-deps dehb ConfigSpace loguru``; its pins would
    downgrade numpy) over the Lab 3 space in ConfigSpace form (the second width as a share of the
    room below the first), fidelities ``min_epochs`` .. ``max_epochs`` with ``eta = factor``, asked
    and told until it has trained as many fold-epochs as ``halving`` did in this run (fold racing
    included; without ``halving`` among the contenders: what it trains with every fold), equal compute
    in fold-epochs; every evaluation trains from scratch, as DEHB's examples do. Optuna's notes say
    the same at equal compute for TPE: its best complete trial when it had trained that much;
    ``--equal-compute`` stops Optuna's studies there, so that trial is the one chosen and retrained.

All rank by the held-out neg-log-loss (hpsearch's default) and record accuracy. Each contender's
best config is then retrained on the whole (sliced) training set for ``--max-epochs`` epochs
(``make_net(patience=0)``, ``random_state=seed`` for all; ``--retrains R``: R times, seeded seed,
seed + 1, ..., and the mean reported) and scored on the test set. The wall time
is the search's alone (workers warmed first; retraining excluded). Work is counted twice: as
fold-epochs, and as compute (fold-epochs x the config's multiply-adds per image), since a wide
config's epoch costs many narrow ones'. The machine is shared and its
speed drifts by up to ~20% over an hour, so ``--repeat R`` runs every contender R times in
alternating order (round 1 forward, round 2 backward: A B B A cancels a steady drift) and reports
the median wall time, with every round's in the notes; the searches are reproducible, so the
rounds must agree on every score (checked), and the best config is retrained once.

    python bench/strategies.py --quick                                   # digits, n=18: ~6.5 min on 2 cores
    python bench/strategies.py --quick --only sklearn-halving,optuna-tpe-sha   # the peers: ~1.7 min
    python bench/strategies.py                                           # Fashion-MNIST 12,000, n=27
    python bench/strategies.py --engine batched --only random,halving --min-epochs 2 --repeat 2
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import env_note, machine_line, whole  # noqa: E402,I001
from _contest import CV, N_JOBS, SPACE, Bench, Outcome, compute_of, config_key  # noqa: E402
from _model_peers import dehb_search, optuna_tpe_sha  # noqa: E402
from _replay import trained  # noqa: E402
from _sklearn_peers import hpsearch_halving_cv, sklearn_halving  # noqa: E402

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from joblib import Parallel, delayed  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from hpsearch.data.dataset import Dataset  # noqa: E402
from hpsearch.data import load_dataset  # noqa: E402
from hpsearch.training.net import make_net  # noqa: E402
from hpsearch.settings import SearchSettings, setting_specs  # noqa: E402
from hpsearch.search.run import run_search  # noqa: E402
from hpsearch.space.search_space import ParamGenerator, load_space  # noqa: E402
from hpsearch.rundir.store import load_records, load_results  # noqa: E402

OURS = ("random", "halving", "halving-before", "halving-f4-trend", "hyperband", "tpe", "tpe-halving")
# contenders that are an hpsearch strategy with other settings: (strategy, the settings given); halving's
# defaults until the eighth session and since the tenth, and from the eighth to the tenth
VARIANTS = {"halving-before": ("halving", {"factor": 3, "trend": "off"}),
            "halving-f4-trend": ("halving", {"factor": 4, "trend": 0.5})}
PEERS = ("sklearn-halving", "sklearn-halving-samples", "hpsearch-halving-cv", "optuna-tpe-sha", "optuna-tpe-hyperband",
         "dehb")
CONTENDERS = OURS + PEERS

# ----------------------------------------------------------------------------- hpsearch


def _settings(bench: Bench, contender: str, out: Path) -> SearchSettings:
    strategy, given = VARIANTS.get(contender, (contender, {}))
    kwargs = dict(n=bench.n, dataset=bench.dataset.name, data_dir=None, space=SPACE, cv=CV, n_jobs=N_JOBS,
                  max_epochs=bench.max_epochs, patience=0, seed=bench.seed, out=str(out), progress=False,
                  strategy=strategy, factor=bench.factor, min_epochs=bench.min_epochs, n_startup=bench.n_startup,
                  engine=bench.engine, device=bench.device, trend=bench.trend) | given
    for name, spec in setting_specs().items():  # the strategy settings this strategy takes (others are refused)
        if name in kwargs and not spec.holds({"strategy": strategy}):
            kwargs.pop(name)
    return SearchSettings(**kwargs)


def hpsearch_strategy(bench: Bench, strategy: str) -> Outcome:
    """``run_search(strategy=...)`` in a fresh run folder; its best row is the chosen config."""
    from hpsearch.retrain.top import top_configs

    outcome = Outcome(strategy)
    settings = _settings(bench, strategy, bench.tmp / strategy)
    start = time.perf_counter()
    run_dir = run_search(settings, dataset=bench.dataset)
    outcome.wall_s = time.perf_counter() - start
    frame = load_results(run_dir)
    records = load_records(run_dir)  # what it trained: a config fold racing stopped ran fewer folds
    best = frame.iloc[0]
    outcome.cv_score, outcome.cv_accuracy = float(best["mean_test_score"]), float(best["mean_test_accuracy"])
    reached = frame["n_epochs"] if "n_epochs" in frame else pd.Series(float(bench.max_epochs), index=frame.index)
    outcome.budget = float(reached.iloc[0])
    configs = {c["trial"]: c["config"] for c in top_configs(run_dir, len(frame))}
    outcome.fold_epochs = trained(records)
    outcome.compute = trained(records, {r["index"]: compute_of(1, r["config"], bench.dataset) for r in records})
    outcome.config = configs[int(best["trial"])]
    full = frame[(reached == bench.max_epochs) & frame["mean_test_score"].notna()]
    outcome.full_budget = len(full)
    outcome.full_scores = {config_key(configs[int(t)]): float(s) for t, s in zip(full["trial"], full["mean_test_score"],
                                                                            strict=True) if int(t) in configs}
    if "rung" in frame:
        outcome.note = f"rungs {sorted(frame['rung'].unique().tolist())}"
    return outcome


# ----------------------------------------------------------------------------- retrain, report


def retrain(config: dict, dataset: Dataset, epochs: int, seed: int, device: str = "cpu",
            times: int = 1) -> tuple[list[float], float]:
    """The config trained on the whole training set (no early stopping) ``times`` times, seeded ``seed``,
    ``seed + 1``, ...: each one's test accuracy, and the time of all."""
    start = time.perf_counter()
    accuracies = []
    for k in range(times):
        net = make_net(config, dataset.n_features, dataset.n_classes, image_shape=dataset.image_shape,
                       max_epochs=epochs, patience=0, random_state=seed + k, device=device)
        net.fit(dataset.X_train, dataset.y_train)
        accuracies.append(float(np.mean(net.predict(dataset.X_test) == dataset.y_test)))
    return accuracies, time.perf_counter() - start


def stratified_slice(dataset: Dataset, images: int | None, seed: int) -> Dataset:
    """``images`` training images drawn stratified at random (all of them if None or more); the whole
    test set."""
    if images is None or images >= len(dataset.y_train):
        return dataset
    idx, _ = train_test_split(np.arange(len(dataset.y_train)), train_size=images, stratify=dataset.y_train,
                              random_state=seed)
    idx = np.sort(idx)
    return Dataset(dataset.name, np.ascontiguousarray(dataset.X_train[idx]), dataset.y_train[idx].copy(),
                   dataset.X_test, dataset.y_test, dataset.class_names)


def combine_rounds(rounds: list[Outcome]) -> Outcome:
    """One contender's rounds as one outcome: the first round's results, the median wall time.
    The searches are reproducible, so rounds that disagree on a score are a finding, not noise."""
    first = rounds[0]
    if first.error or len(rounds) == 1:
        return first
    walls = [o.wall_s for o in rounds]
    scores = [(o.cv_score, o.fold_epochs, config_key(o.config)) for o in rounds]
    if any(s != scores[0] for s in scores):
        first.error = f"rounds disagree: {scores}"
        return first
    first.wall_s, first.walls = float(np.median(walls)), walls
    first.note = "; ".join(filter(None, [first.note, "walls " + ", ".join(f"{w:.1f}" for w in walls) + " s"]))
    return first


def _warm_worker(X, y, n_features, n_classes):
    """A loky worker's one-off costs (imports, torch's first fit) paid before any timing."""
    torch.set_num_threads(1)
    make_net({"hidden": [32]}, n_features, n_classes, max_epochs=1, patience=0).fit(X, y)
    return os.getpid()


def _fmt(value, spec: str, missing: str = "–", unit: str = "") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return missing
    return format(value, spec) + unit


def _pct(fraction: float) -> str:
    return _fmt(100 * fraction, ".2f", "–", "%")


def _config_text(config: dict | None) -> str:
    if not config:
        return "–"
    hidden = "-".join(str(h) for h in config.get("hidden", []))
    return (f"{hidden}, {config.get('optimizer')}, lr {config.get('lr', math.nan):.3g}, "
            f"L2 {config.get('weight_decay', math.nan):.2g}, dropout {config.get('dropout', math.nan):.2f}")


def report(outcomes: list[Outcome], bench: Bench, args, images: int) -> None:
    ref = next((o for o in outcomes if o.name == "random" and not o.error), None)
    print(machine_line(getattr(args, "device", "cpu")))  # names the GPU when hpsearch's contenders used one
    print(f"command: python {' '.join(sys.argv)}  ({env_note()}; dataset={bench.dataset.name}, train images={images}, "
          f"test images={len(bench.dataset.y_test)}, n={bench.n}, cv={CV}, n_jobs={N_JOBS} x 1 thread, "
          f"max_epochs={bench.max_epochs}, min_epochs={bench.min_epochs or f'auto ({bench.first_rung})'}, "
          f"factor={bench.factor}, "
          f"n_startup={bench.n_startup}, patience=0, seed={bench.seed}, space={SPACE}; retraining: "
          f"{bench.max_epochs} epochs on all train images, torch threads {torch.get_num_threads()})")
    print()
    print("| contender | wall (s) | fold-epochs | configs at full budget | best CV acc | CV neg-log-loss "
          "| test acc (retrained) | speed-up vs random | fold-epochs vs random | compute vs random "
          "| Δ CV acc (pts) | Δ test acc (pts) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for o in outcomes:
        if o.error:
            print(f"| {o.name} | failed: {o.error} | | | | | | | | | | |")
            continue
        speed = ref.wall_s / o.wall_s if ref else math.nan
        work = ref.fold_epochs / o.fold_epochs if ref else math.nan
        compute = ref.compute / o.compute if ref else math.nan
        dcv = 100 * (o.cv_accuracy - ref.cv_accuracy) if ref else math.nan
        dtest = 100 * (o.test_accuracy - ref.test_accuracy) if ref else math.nan
        print(f"| {o.name} | {_fmt(o.wall_s, '.1f')} | {_fmt(o.fold_epochs, ',.0f')} | {o.full_budget} "
              f"| {_pct(o.cv_accuracy)} | {_fmt(o.cv_score, '.4f')} | {_pct(o.test_accuracy)} "
              f"| {_fmt(speed, '.2f', '–', '×')} | {_fmt(work, '.2f', '–', '×')} | {_fmt(compute, '.2f', '–', '×')} "
              f"| {_fmt(dcv, '+.2f')} "
              f"| {_fmt(dtest, '+.2f')} |")
    print()
    print("| contender | chosen config (hidden, optimizer, lr, L2, dropout) | its budget (epochs) | retrain (s) "
          "| notes |")
    print("| --- | --- | ---: | ---: | --- |")
    for o in outcomes:
        if not o.error:
            print(f"| {o.name} | {_config_text(o.config)} | {_fmt(o.budget, '.0f')} | {_fmt(o.retrain_s, '.1f')} "
                  f"| {o.note} |")
    print()
    if ref and ref.walls:  # each round's ratio, from walls measured minutes apart
        for o in outcomes:
            if o is not ref and len(o.walls) == len(ref.walls):
                ratios = ", ".join(f"{a / b:.2f}×" for a, b in zip(ref.walls, o.walls, strict=True))
                print(f"speed-up vs random round by round, {o.name}: {ratios}")
    if ref:  # configs that both a contender and random trained to the full budget: same nets, same scores?
        for o in outcomes:
            if o is ref or o.error:
                continue
            shared = [k for k in o.full_scores if k in ref.full_scores]
            if shared:
                diff = max(abs(o.full_scores[k] - ref.full_scores[k]) for k in shared)
                print(f"agreement {o.name} vs random at {bench.max_epochs} epochs: {len(shared)} shared configs, "
                      f"max |Δ mean neg-log-loss| = {diff:.2g}")


def _first_rung(text: str) -> int | None:
    if text == "auto":
        return None
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a whole number of epochs >= 1 or auto, got {text!r}")
    return int(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="digits (bundled), n=18")
    parser.add_argument("--n", type=whole(1), default=None, help="configs / trials per contender (18 quick, 27 full)")
    parser.add_argument("--images", type=int, default=None,
                        help="stratified training images (default 12,000; --quick: all of digits)")
    parser.add_argument("--dataset", default=None, help="fashion-mnist (default), digits (--quick) or mnist")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--max-epochs", type=whole(1), default=27)
    parser.add_argument("--min-epochs", type=_first_rung, default=3,
                        help="the first rung's epochs, or auto: halving's automatic rungs (the quick start's; the "
                             "peers then start at its first rung) (default 3)")
    parser.add_argument("--factor", type=whole(2), default=3)
    parser.add_argument("--trend", default=None, metavar="WEIGHT|off", type=lambda v: v if v == "off" else float(v),
                        help="halving's --trend (default: halving's own, off since the tenth session; --factor 4 "
                             "--trend 0.5 is the halving of the eighth and ninth sessions' runs)")
    parser.add_argument("--n-startup", type=whole(1), default=10, help="random (enqueued) trials before TPE")
    parser.add_argument("--seed", type=whole(0), default=0)
    parser.add_argument("--engine", default="skorch", help="hpsearch's engine for its contenders: skorch or batched")
    parser.add_argument("--device", default="cpu", help="hpsearch's device for its contenders (cpu, cuda)")
    parser.add_argument("--only", default=",".join(CONTENDERS), help=f"comma list of {', '.join(CONTENDERS)}")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds, in alternating order (A B B A ...); the wall time is each contender's median")
    parser.add_argument("--equal-compute", action="store_true",
                        help="Optuna's studies stop once they have trained halving's fold-epochs (DEHB always does)")
    parser.add_argument("--retrains", type=int, default=1,
                        help="retrain each chosen config this many times (seeds seed, seed+1, ...) and report the "
                             "mean test accuracy: one retraining's test accuracy varied by up to 1.5 points "
                             "on the Fashion slice (BENCHMARKS.md)")
    args = parser.parse_args(argv)
    if args.retrains < 1:
        parser.error(f"--retrains must be a whole number >= 1, got {args.retrains}")
    if args.repeat < 1:
        parser.error(f"--repeat must be a whole number >= 1, got {args.repeat}")
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in only if name not in CONTENDERS]
    if unknown:
        parser.error(f"--only: unknown {', '.join(unknown)}; choose from {', '.join(CONTENDERS)}")
    n = args.n or (18 if args.quick else 27)
    name = args.dataset or ("digits" if args.quick else "fashion-mnist")
    images = args.images if args.images is not None else (None if args.quick else 12_000)

    dataset = stratified_slice(load_dataset(name, args.data_dir), images, args.seed)
    configs = ParamGenerator(load_space(SPACE), args.seed).gen_values(n)
    torch.set_num_threads(1)  # retraining: 1 thread (2 OpenMP threads crawl when other work shares the cores)
    # start and warm loky's workers (reused by run_search and HalvingRandomSearchCV) before any timing
    warm = (dataset.X_train[:256], dataset.y_train[:256], dataset.n_features, dataset.n_classes)
    Parallel(n_jobs=N_JOBS)(delayed(_warm_worker)(*warm) for _ in range(2 * N_JOBS))
    make_net({"hidden": [32]}, *warm[2:], max_epochs=1, patience=0).fit(*warm[:2])  # and this process (retraining)

    runners = {"sklearn-halving": sklearn_halving, "optuna-tpe-sha": optuna_tpe_sha,
               "sklearn-halving-samples": lambda bench: sklearn_halving(bench, "n_samples"),
               "hpsearch-halving-cv": hpsearch_halving_cv,
               "optuna-tpe-hyperband": lambda bench: optuna_tpe_sha(bench, "hyperband", args.equal_compute),
               "dehb": dehb_search}
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="bench-strategies-") as tmp:
        if any(c in OURS for c in only):  # the first run_search's one-off costs (imports, SQLite), not timed
            tiny = Bench(stratified_slice(dataset, 400, args.seed), configs[:1], 1, args.seed, 1, 1, args.factor,
                         1, Path(tmp))
            run_search(_settings(tiny, "random", Path(tmp) / "warm-up"), dataset=tiny.dataset)
        bench = Bench(dataset, configs, n, args.seed, args.max_epochs, args.min_epochs, args.factor,
                      args.n_startup, Path(tmp), args.engine, args.device, trend=args.trend)
        order = [c for c in CONTENDERS if c in only]
        rounds: dict[str, list[Outcome]] = {c: [] for c in order}
        for r in range(args.repeat):
            bench.tmp = Path(tmp) / f"round-{r + 1}"
            for contender in order if r % 2 == 0 else order[::-1]:
                if rounds[contender] and rounds[contender][0].error:
                    continue
                try:
                    run = runners.get(contender)
                    outcome = run(bench) if run else hpsearch_strategy(bench, contender)
                except Exception as exc:  # noqa: BLE001 - one contender failing must not sink the others
                    traceback.print_exc(file=sys.stderr)
                    outcome = Outcome(contender, error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:100]}")
                print(f"[{contender}, round {r + 1}] wall {outcome.wall_s:.1f} s, fold-epochs "
                      f"{outcome.fold_epochs:,.0f}, CV acc {outcome.cv_accuracy:.4f} {outcome.error}",
                      file=sys.stderr, flush=True)
                rounds[contender].append(outcome)
                if contender == "halving" and not outcome.error:  # the peers' equal compute: what it trained
                    bench.halving_fold_epochs = outcome.fold_epochs
        for contender in order:
            outcome = combine_rounds(rounds[contender])
            if not outcome.error:
                accuracies, outcome.retrain_s = retrain(outcome.config, dataset, args.max_epochs, args.seed,
                                                        args.device, args.retrains)
                outcome.test_accuracy = float(np.mean(accuracies))
                if args.retrains > 1:
                    each = ", ".join(f"{100 * a:.2f}" for a in accuracies)
                    outcome.note = "; ".join(filter(None, [outcome.note, f"test acc of the {args.retrains} "
                                                           f"retrainings: {each}%"]))
            outcomes.append(outcome)
    report(outcomes, bench, args, len(dataset.y_train))
    return 0


if __name__ == "__main__":
    import signal

    # a kill (SIGTERM, a timeout's) unwinds like Ctrl-C: the temporary folder of the runs is removed, not left
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    raise SystemExit(main())
