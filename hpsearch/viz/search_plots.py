"""Pictures of a search itself, not of its winner (``hpsearch plot search RUN``): the score against
each hyperparameter, the optimization history with its running best, Optuna's parameter
importances, the spread of the fold scores per config and, for halving and Hyperband runs, the rungs.

As in Optuna's visualization, pure data functions (``search_data``: a frame shaped like ``trials.csv``,
the run's space, its study -> plain numbers; re-exported here) stand apart from the thin ``plot_*``
functions here that only draw them and return a Figure. A picture that cannot be drawn for a run gets
a ``Skipped`` with the reason.
"""

from __future__ import annotations

import matplotlib
import matplotlib.lines
import numpy as np
from matplotlib.figure import Figure

from ..errors import plural
from ..rundir.run_info import read_stored_settings
from .fonts import plain
from .search_data import (
    ParamPoints,
    Skipped,
    first_rung_study,
    fold_spread,
    history,
    importances,
    learned_floor,
    load_trials,
    run_importances,
    rungs,
    score_vs_params,
    search_plot_data,
)

__all__ = [
    "Skipped", "ParamPoints", "load_trials", "score_vs_params", "history", "importances",
    "first_rung_study", "run_importances",
    "fold_spread", "rungs", "plot_score_vs_params", "plot_history", "plot_importances",
    "plot_fold_spread", "plot_rungs", "search_plot_data", "draw_search_plots", "learned_floor",
]

def _grid(n: int, width: float = 3.2, height: float = 2.8) -> tuple[Figure, list]:
    cols = min(n, 3)
    rows = -(-n // cols)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, list(axes[:n])


def _scale_to_learned(ax, xs, scores, floor: float | None) -> None:
    """Scale the y axis to the configs that learned; draw the ones below (at chance) on its lower edge,
    marked, and say how many."""
    scores = np.asarray(scores, float)
    if floor is None or not len(scores):
        return
    top = float(np.nanmax(scores))
    span = max(top - floor, 0.02 * max(1.0, abs(top)))  # one learned config: still a readable axis
    low = floor - 0.15 * span
    ax.set_ylim(low, top + 0.05 * span)
    below = scores < low
    if below.any():
        ax.scatter(np.asarray(xs)[below], np.full(int(below.sum()), low), marker="v", s=22, color="0.5",
                   clip_on=False, zorder=3)
        # counted as drawn: below the axis, not the at_chance column (a config at chance may score above it)
        ax.text(0.99, 0.02, f"{int(below.sum())} below the axis (on the edge)", ha="right", va="bottom",
                fontsize=7, color="0.35", transform=ax.transAxes)


def _budget_colours(epochs) -> dict[int, object]:
    """One colour per budget the configs were scored at (halving's rungs), in order; ``{}`` for one budget."""
    budgets = sorted({int(e) for e in epochs})
    if len(budgets) < 2:
        return {}
    return dict(zip(budgets, matplotlib.colormaps["viridis"](np.linspace(0, 0.9, len(budgets))), strict=True))


def _budget_legend(fig: Figure, colours: dict[int, object]) -> None:
    handles = [matplotlib.lines.Line2D([], [], marker="o", linestyle="", color=c, label=plural(b, "epoch"))
               for b, c in colours.items()]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), fontsize=8)


MAX_CATEGORY_TICKS = 30  # labels on a categorical axis: 10,000 choices held the report for minutes measuring them


def _category_ticks(n: int) -> list[int]:
    """The categories labelled: all up to ``MAX_CATEGORY_TICKS``, else that many spread evenly, both ends kept."""
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, min(n, MAX_CATEGORY_TICKS))})


def plot_score_vs_params(panels: list[ParamPoints], metric: str = "score", floor: float | None = None) -> Figure:
    fig, axes = _grid(max(len(panels), 1))
    colours = _budget_colours(e for p in panels for e in p.epochs)
    budgets = list(colours) or sorted({int(e) for p in panels for e in p.epochs})
    for ax, p in zip(axes, panels, strict=False):
        if p.kind == "categorical":
            where = {c: i for i, c in enumerate(p.categories)}
            jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(p.x))
            xs = [where.get(v, -1) + j for v, j in zip(p.x, jitter, strict=True)]
            shown = _category_ticks(len(p.categories))
            ax.set_xticks(shown, [plain(p.categories[i]) for i in shown])
        else:
            xs = p.x
            if p.log:
                ax.set_xscale("log")
                ax.tick_params(axis="x", which="both", labelrotation=30)  # a narrow range labels minor ticks too
        epochs = np.asarray(p.epochs, int)
        for budget in budgets:  # one colour per budget, named in the legend (halving's rungs)
            at = epochs == budget
            if at.any():
                ax.scatter(np.asarray(xs, float)[at], np.asarray(p.score, float)[at], s=16, alpha=0.8,
                           color=colours.get(budget), label=f"{plural(budget, 'epoch')}")
        _scale_to_learned(ax, xs, p.score, floor)
        if p.kind == "categorical":  # every strip and its label on the axis, whatever the jitter drew
            ax.set_xlim(-0.5, len(p.categories) - 0.5)
        ax.set_xlabel(p.name)
        ax.set_ylabel(metric)
    if not panels:
        axes[0].text(0.5, 0.5, "no searched parameters", ha="center", transform=axes[0].transAxes)
    fig.suptitle(f"{metric} vs each hyperparameter" + (" (colour: epochs trained)" if colours else ""))
    if colours:
        _budget_legend(fig, colours)
    return fig


def plot_history(data: dict, metric: str = "score", floor: float | None = None) -> Figure:
    fig = Figure(figsize=(6, 3.5), layout="constrained")
    ax = fig.subplots()
    colours = _budget_colours(data.get("epochs", ()))
    epochs = np.asarray(data.get("epochs", np.zeros(len(data["trial"]))), int)
    ax.scatter(data["trial"], data["score"], s=14, alpha=0.7, label=None if colours else "trial",
               color=[colours[int(e)] for e in epochs] if colours else None)
    _scale_to_learned(ax, data["trial"], data["score"], floor)
    top = data.get("best_epochs")
    ax.step(data["trial"], data["best"], where="post", color="C3",
            label=f"best so far at {plural(top, 'epoch')}" if top else "best so far")
    ax.set(xlabel="trial", ylabel=metric,
           title="optimization history" + (" (colour: epochs trained)" if colours else ""))
    ax.legend()
    if colours:
        _budget_legend(fig, colours)
    return fig


def plot_importances(data: dict) -> Figure:
    """``data`` as :func:`run_importances` gives it (or a bare ``{param: importance}``)."""
    wrapped = set(data) == {"values", "basis"}
    basis, data = (data["basis"], data["values"]) if wrapped else ("", data)
    names = list(data)[::-1]
    fig = Figure(figsize=(5.5, 0.4 * len(names) + 1.2), layout="constrained")
    ax = fig.subplots()
    ax.barh(names, [data[n] for n in names])
    ax.set(xlabel="importance (Optuna, sums to 1)", title="parameter importances" + (f"\n({basis})" if basis else ""))
    return fig


def plot_fold_spread(data: dict, metric: str = "score", top: int = 40, floor: float | None = None) -> Figure:
    splits, trials = data["splits"][:top], data["trial"][:top]
    fig = Figure(figsize=(max(5.0, 0.25 * len(trials) + 2), 3.5), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(trials))
    colours = _budget_colours(data.get("epochs", ())[:top])
    fold_colour = [colours[int(e)] for e in data["epochs"][:top]] if colours else "C0"
    for k in range(splits.shape[1]):
        ax.scatter(x, splits[:, k], s=12, color=fold_colour, alpha=0.6)
    ax.scatter([], [], s=12, color="0.5" if colours else "C0", label="fold")  # in no budget's colour
    ax.scatter(x, data["mean"][:top], marker="_", s=120, color="C3", label="mean")
    ax.set_xticks(x, [str(t) for t in trials], rotation=90, fontsize=7)
    ax.set(xlabel="trial (best first)", ylabel=metric,
           title="fold scores per config" + (" (colour: epochs trained)" if colours else ""))
    _scale_to_learned(ax, x, data["mean"][:top], floor)
    ax.legend()
    if colours:
        _budget_legend(fig, colours)
    return fig


def plot_rungs(data: dict, metric: str = "score", chance: float | None = None) -> Figure:
    fig = Figure(figsize=(9, 3.5), layout="constrained")
    count, spread = fig.subplots(1, 2)
    labels = [str(e) for e in data["epochs"]]
    bars = count.bar(labels, data["configs"])
    failed = data.get("failed")
    if failed is not None and failed.any():  # trained there, and failed (no score on the right)
        count.bar_label(bars, [f"{f} failed" if f else "" for f in failed], fontsize=7)
    count.set(xlabel="rung budget (epochs)", ylabel="configs", title="configs per rung")
    for i, scores in enumerate(data["scores"]):
        spread.scatter(np.full(len(scores), i), scores, s=14, alpha=0.7, color="C0")
    spread.set_xticks(range(len(labels)), labels)
    spread.set(xlabel="rung budget (epochs)", ylabel=metric, title="score per rung budget")
    if chance is not None:  # scaled to the scores above chance at their rung, the rest on the lower edge
        xs = np.concatenate([np.full(len(scores), i) for i, scores in enumerate(data["scores"])])
        scores = np.concatenate(data["scores"]) if data["scores"] else np.array([])
        learned = scores[scores > chance]
        _scale_to_learned(spread, xs, scores, float(learned.min()) if len(learned) < len(scores) and len(learned)
                          else None)
    return fig


_DRAW = {"search_params": plot_score_vs_params, "search_history": plot_history,
         "search_importances": plot_importances, "search_folds": plot_fold_spread,
         "search_rungs": plot_rungs}


def draw_search_plots(run_dir, skipped: dict | None = None) -> dict[str, Figure]:
    """``{stem: Figure}`` of the search pictures that apply to ``run_dir``; the reasons for the
    others go into ``skipped`` when given."""
    stored = read_stored_settings(run_dir)
    metric = stored.get("scoring", "score")
    figures = {}
    for stem, data in search_plot_data(run_dir).items():
        if isinstance(data, Skipped):
            if skipped is not None:
                skipped[stem] = data.reason
            continue
        if stem == "search_importances":
            figures[stem] = _DRAW[stem](data)
        elif stem in ("search_params", "search_history", "search_folds"):  # scaled to the configs that learned
            figures[stem] = _DRAW[stem](data, metric=metric, floor=learned_floor(load_trials(run_dir)))
        elif stem == "search_rungs":
            figures[stem] = _DRAW[stem](data, metric=metric, chance=_chance_score(stored))
        else:
            figures[stem] = _DRAW[stem](data, metric=metric)
    return figures


def _chance_score(settings: dict) -> float | None:
    """What guessing from the class frequencies scores in the run's metric (settings.json's chance)."""
    chance = settings.get("chance") or {}
    value = chance.get(settings.get("scoring", "neg_log_loss"))
    return float(value) if isinstance(value, int | float) else None
