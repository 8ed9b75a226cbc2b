"""Which halving schedule (first rung, factor) holds both halves of the strategies target?

A side-by-side run of ``bench/strategies.py`` costs ~20 minutes per schedule and seed on 2 cores.
Because a survivor continues *exactly* (on the CPU its scores at epoch E equal a straight E-epoch
fit's: tests/strategies/test_halving.py), every halving schedule over the same configs is decided by one
table: each config's mean CV score at each epoch that any schedule stops at. This script trains
that table once (all ``n`` configs of ``bench/strategies.py``'s space, seed, folds and data, brought
to every checkpoint epoch in turn, continuing), then replays successive halving over it for each
``(min_epochs, factor)``:

- the rungs, survivors and winner are exactly those ``--strategy halving --fold-racing off`` would give (ties aside);
- its cost is the fit seconds its configs spend up to their last rung, *measured* per config and
  checkpoint in this run, against random search's (every config to ``--max-epochs``): a compute
  ratio, not a wall-clock one: each config's fit seconds per step are fitted as ``a + b * epochs``
  over its measured steps, and a schedule pays ``a`` once per rung and ``b`` per epoch (random
  search ``a + max_epochs * b``); the machine's speed drifts between side-by-side contenders, this
  table's does not;
- its winner's full-budget mean CV accuracy against random search's best (by neg-log-loss).

    python bench/halving_schedules.py --engine batched --seed 2 --out /tmp/curves-s2   # 13-16 min
    python bench/halving_schedules.py --replay /tmp/curves-s2 /tmp/curves-s0           # seconds

Then confirm a schedule side by side with ``bench/strategies.py --only random,halving`` (whose halving races
its folds, the default: fewer fold-epochs, the same winner on the tabulated benchmarks).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import strategies as head_to_head  # noqa: E402  (bench/strategies.py: the same data, space and settings)
from _common import machine_line  # noqa: E402,I001

from hpsearch import strategies as registry  # noqa: E402
from hpsearch.data import load_dataset  # noqa: E402
from hpsearch.rundir.store import load_records  # noqa: E402
from hpsearch.search.run import run_search  # noqa: E402
from hpsearch.space.search_space import ParamGenerator, load_space  # noqa: E402
from hpsearch.strategies.halving import halve, rung_budgets  # noqa: E402

SCHEDULES = [(m, f) for f in (2, 3, 4) for m in (1, 2, 3)] + [(None, 3)]


class Checkpoints(registry.Strategy):
    """Every config to every checkpoint epoch in turn, continuing; nobody pruned (bench-only)."""

    name = "checkpoints"
    continues = True

    def checkpoints(self) -> list[int]:
        return checkpoint_epochs(self.n, self.max_epochs)

    def plan(self):
        return [(self.n, e) for e in self.checkpoints()]

    def fingerprint(self) -> dict:
        return {"name": self.name, "n": self.n, "checkpoints": self.checkpoints()}

    def run(self, evaluate) -> None:
        candidates = evaluate.draw(self.n)
        for epochs in self.checkpoints():
            evaluate(candidates, epochs)


def checkpoint_epochs(n: int, max_epochs: int) -> list[int]:
    """Every rung epoch of the schedules replayed here."""
    return sorted({e for m, f in SCHEDULES for e in rung_budgets(n, max_epochs, f, m)})


def read_curves(run_dir: Path) -> dict:
    """``{index: Curve}``: each config's mean CV score and accuracy at each checkpoint, and its cost."""
    curves = {}
    for record in load_records(run_dir):
        rungs = record["rungs"]
        spans = np.diff([0, *(r["epochs"] for r in rungs)])
        seconds = [float(np.sum(r["split_fit_times"])) for r in rungs]  # the step's fit time, all folds
        # a step costs a fixed part (build, load the state, score the held-out folds) plus one per
        # epoch; fitted per config so that a schedule pays the steps it takes, not this run's twelve
        per_step, per_epoch = np.linalg.lstsq(np.c_[np.ones(len(spans)), spans], seconds, rcond=None)[0]
        curves[record["index"]] = Curve({r["epochs"]: float(np.mean(r["split_test_scores"])) for r in rungs},
                                        {r["epochs"]: float(np.mean(r["split_test_accuracies"])) for r in rungs},
                                        float(per_step), float(per_epoch))
    return curves


@dataclasses.dataclass
class Curve:
    score: dict[int, float]
    accuracy: dict[int, float]
    per_step: float
    per_epoch: float

    def at(self, epochs: int) -> tuple[float, float]:
        """(mean score, mean accuracy) at ``epochs``; NaN where the config had failed before."""
        return self.score.get(epochs, math.nan), self.accuracy.get(epochs, math.nan)

    def cost(self, budgets: list[int]) -> float:
        """Fit seconds (all folds) to train through these rungs, continuing at each."""
        return len(budgets) * self.per_step + budgets[-1] * self.per_epoch


class TableEvaluate:
    """The strategies' ``evaluate`` seam answered from the table: no training, the stored scores."""

    def __init__(self, curves: dict):
        self.curves = curves
        self.rungs: dict[int, int] = {}  # how many rungs each config trained

    def __call__(self, candidates: dict, epochs: int) -> dict[int, float]:
        for i in candidates:
            self.rungs[i] = self.rungs.get(i, 0) + 1
        return {i: self.curves[i].at(epochs)[0] for i in candidates}

    def prune(self, indices) -> None:
        pass


def replay(curves: dict, budgets: list[int], factor: int) -> tuple[int, float]:
    """hpsearch's own successive halving (``halve``) over the table: (winner, fit seconds spent)."""
    evaluate = TableEvaluate(curves)
    halve(evaluate, {i: {} for i in sorted(curves)}, budgets, factor)
    finalists = [i for i, k in evaluate.rungs.items() if k == len(budgets)]
    return (best_of(curves, finalists, budgets[-1]),
            sum(curves[i].cost(budgets[:k]) for i, k in evaluate.rungs.items()))


def best_of(curves: dict, indices, epochs: int) -> int:
    """The best score at ``epochs`` (ties: lower index), failed configs never."""
    return max((i for i in indices if not math.isnan(curves[i].at(epochs)[0])),
               key=lambda i: (curves[i].at(epochs)[0], -i))


def report(run_dirs: list[Path], max_epochs: int) -> None:
    tables = {d: read_curves(d) for d in run_dirs}
    print(f"| schedule (rungs) | {' | '.join(f'{d.name}: compute ratio, delta CV acc' for d in run_dirs)} "
          "| min ratio | worst delta |")
    print("| --- |" + " ---: |" * (len(run_dirs) + 2))
    for m, f in SCHEDULES:
        n = len(next(iter(tables.values())))
        budgets = rung_budgets(n, max_epochs, f, m)
        cells, ratios, deltas = [], [], []
        for curves in tables.values():
            best = best_of(curves, curves, max_epochs)
            everything = sum(c.cost([max_epochs]) for c in curves.values())  # random search: one step each
            winner, spent = replay(curves, budgets, f)
            ratio = everything / spent
            delta = 100 * (curves[winner].at(max_epochs)[1] - curves[best].at(max_epochs)[1])
            ratios.append(ratio)
            deltas.append(delta)
            cells.append(f"{ratio:.2f}x, {delta:+.2f}")
        label = f"min {m if m else 'auto'}, factor {f} ({'/'.join(map(str, budgets))})"
        print(f"| {label} | {' | '.join(cells)} | {min(ratios):.2f}x | {min(deltas):+.2f} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replay", nargs="+", type=Path, help="run folders of earlier runs: replay only")
    parser.add_argument("--out", type=Path, help="the run folder to train the curves in (kept)")
    parser.add_argument("--engine", default="batched")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n", type=int, default=27)
    parser.add_argument("--dataset", default="fashion-mnist", help="any hpsearch dataset (fashion-mnist)")
    parser.add_argument("--data-dir", default=None, help="where its files are (as for run_search.py)")
    parser.add_argument("--images", type=int, default=12_000, help="a stratified slice of the training images")
    parser.add_argument("--max-epochs", type=int, default=27)
    args = parser.parse_args(argv)
    if args.replay:
        report(args.replay, args.max_epochs)
        return 0
    if args.out is None:
        parser.error("--out is required to train the curves (or --replay RUN_DIR ...)")
    registry.STRATEGIES[Checkpoints.name] = Checkpoints
    dataset = head_to_head.stratified_slice(load_dataset(args.dataset, args.data_dir), args.images, args.seed)
    configs = ParamGenerator(load_space(head_to_head.SPACE), args.seed).gen_values(args.n)
    bench = head_to_head.Bench(dataset, configs, args.n, args.seed, args.max_epochs, 1, 3, 10, args.out.parent,
                               args.engine)
    print(machine_line(), file=sys.stderr)
    run_search(head_to_head._settings(bench, Checkpoints.name, args.out), dataset=dataset)
    report([args.out], args.max_epochs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
