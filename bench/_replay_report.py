"""What ``replay.py`` prints from its replays: per strategy the medians and spreads over the seeds
(``summarize``), two strategies seed by seed (``versus_line``) and the anytime curves (``figure``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# the anytime figure's curves: name -> legend
ANYTIME = {"random": "random", "halving": "halving, factor 3, every fold",
           "racing-m0.02": "halving, factor 3, fold racing 0.02 (the default but in sessions 8-10)",
           "f4-racing-trend": "halving, factor 4, fold racing 0.02, trend 0.5 (the default in sessions 8-10)",
           "hyperband": "hyperband", "sklearn-halving": "scikit-learn's HalvingRandomSearchCV"}


def _median_iqr(values) -> tuple[float, float, float]:
    values = np.asarray(values, dtype=float)
    return float(np.median(values)), float(np.percentile(values, 25)), float(np.percentile(values, 75))


def summarize(table, results: dict, max_epochs: int) -> dict:
    """Per strategy: compute ratios, CV and test gaps (points), best-pruned share, over the seeds."""
    summary = {}
    for name, runs in results.items():
        ratios, gaps, test_gaps, pruned = [], [], [], []
        for seed, replay in runs.items():
            reference = results["random"][seed]
            best = reference.chosen
            ratios.append(reference.compute / replay.compute)
            gaps.append(100 * (table.cv_accuracy(best, max_epochs) - table.cv_accuracy(replay.chosen, max_epochs)))
            test_gaps.append(100 * (table.test_accuracy(best, max_epochs)
                                    - table.test_accuracy(replay.chosen, max_epochs)))
            # pruned: random's winner never reached the strategy's largest budget (scikit-learn's may be < max)
            pruned.append(replay.reached.get(replay.drawn.index(best), 0) < max(replay.reached.values()))
        summary[name] = {"ratio": _median_iqr(ratios), "gap": _median_iqr(gaps), "test_gap": _median_iqr(test_gaps),
                         "pruned": float(np.mean(pruned)), "worst_gap": float(np.max(gaps)),
                         "p90_gap": float(np.percentile(gaps, 90))}  # a tail of the gap, short of the worst seed
    return summary


def versus_line(table, results: dict, first: str, second: str, max_epochs: int) -> str:
    """Two strategies seed by seed, on the same draws: the second's chosen config minus the first's, in
    points of CV and test accuracy (medians hide whether one is ahead on most seeds or far ahead on a few)."""
    cv, test, ratio = [], [], []
    for seed, a in results[first].items():
        b = results[second][seed]
        cv.append(100 * (table.cv_accuracy(b.chosen, max_epochs) - table.cv_accuracy(a.chosen, max_epochs)))
        test.append(100 * (table.test_accuracy(b.chosen, max_epochs) - table.test_accuracy(a.chosen, max_epochs)))
        ratio.append(a.compute / b.compute)
    cv, test = np.array(cv), np.array(test)
    same = sum(results[first][s].chosen == results[second][s].chosen for s in results[first])
    return (f"versus: {second} - {first}, per seed: CV accuracy median {np.median(cv):+.2f} pts (mean "
            f"{cv.mean():+.2f}; higher on {(cv > 0).sum()}, lower on {(cv < 0).sum()} of {len(cv)} seeds), test "
            f"accuracy median {np.median(test):+.2f} (mean {test.mean():+.2f}; higher on {(test > 0).sum()}, lower "
            f"on {(test < 0).sum()}), the same config on {same}; {second} spends 1/{np.median(ratio):.2f} of "
            f"{first}'s compute (median)")


def figure(table, results: dict, max_epochs: int, path: Path, title: str) -> None:
    """The anytime curves, medians over the seeds, against compute (a share of random search's): the
    incumbent's full-budget CV neg-log-loss (the score every strategy ranks by) and its CV accuracy. The
    incumbent is the best config at the largest budget scored so far, so either curve may dip when a
    longer rung crowns another config (random search's cannot: it scores only the full budget)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    grid = np.logspace(-3, 0, 200)
    measures = (("CV neg-log-loss", lambda row: table.mean_score(row, max_epochs)),
                ("CV accuracy (%)", lambda row: 100 * table.cv_accuracy(row, max_epochs)))
    for name in [n for n in results if n in ANYTIME]:
        for ax, (_, measure) in zip(axes, measures, strict=True):
            curves = []
            for seed, replay in results[name].items():
                xs = np.array([c for c, _ in replay.curve]) / results["random"][seed].compute
                ys = np.array([measure(row) for _, row in replay.curve])
                at = np.searchsorted(xs, grid, side="right") - 1
                curves.append(np.where(at >= 0, ys[np.clip(at, 0, None)], np.nan))
            # drawn from where every seed has scored: a median over the seeds that have would mix other seeds
            ax.plot(grid, np.median(np.array(curves), axis=0), label=ANYTIME[name])
    for ax, (label, _) in zip(axes, measures, strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("compute spent (share of random search's)")
        ax.set_ylabel(f"incumbent's {label} at the full budget")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
