"""Configs no better than chance: named, counted and described, never passed off as fine.

A config is at chance when its mean CV accuracy is at most the share of the most common training
class (what always answering that class scores), or, when the search ranks by log-loss, when its
log-loss is no better than predicting the class frequencies for every image (minus their entropy:
-2.30 for ten balanced classes). Such a config learned nothing usable: it did not fail (no error, a
finite score), so it is not counted among the failures, but it is said beside them, with the traits
the chance-level configs share.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

__all__ = ["chance_levels", "at_chance", "common_traits", "chance_summary", "winner_at_chance"]


def chance_levels(y: np.ndarray, scoring: str) -> dict | None:
    """What guessing from the class frequencies scores on labels ``y``; None for labels per position."""
    y = np.asarray(y)
    if y.ndim != 1 or len(y) == 0:
        return None
    shares = np.bincount(y) / len(y)
    shares = shares[shares > 0]
    return {"accuracy": float(shares.max()), "neg_log_loss": float(np.sum(shares * np.log(shares))),
            "scoring": scoring}


def at_chance(frame: pd.DataFrame, chance: dict | None) -> pd.Series:
    """Whether each finished config of a results frame scores no better than ``chance``."""
    if chance is None or frame.empty:
        return pd.Series(False, index=frame.index)
    accuracy = frame["mean_test_accuracy"] <= chance["accuracy"] + 1e-9
    if chance.get("scoring") == "neg_log_loss":
        accuracy |= frame["mean_test_score"] <= chance["neg_log_loss"] + 1e-9
    return accuracy & frame["mean_test_score"].notna()


def common_traits(frame: pd.DataFrame, mask: pd.Series, limit: int = 3) -> list[str]:
    """What the configs of ``mask`` share more than the others: a choice most of them made that is rarer
    elsewhere (``optimizer=rmsprop: 10 of 12, 18% of the rest``), or a range of a number
    (``lr >= 0.012: 11 of 12, 20% of the rest``)."""
    scored = frame["mean_test_score"].notna() if "mean_test_score" in frame else pd.Series(True, index=frame.index)
    chosen, rest = frame[mask], frame[~mask & scored]  # the rest: configs that scored (a failed one did not)
    if len(chosen) < 2 or rest.empty:  # one config shares nothing with itself; with no rest, nothing sets them apart
        return []
    traits = []
    for column in (c for c in frame if c.startswith("param_")):
        name = column.removeprefix("param_")
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.notna().all() and values.nunique() > 3:
            low = _round_down(values[mask].quantile(0.25))  # as shown: "lr >= 16.5" counts what it says
            share_in = float((values[mask] >= low).mean())
            share_out = float((values[rest.index] >= low).mean())
            if _most(int((values[mask] >= low).sum()), len(chosen)) and share_out < share_in - 0.3:
                traits.append((share_in - share_out, f"{name} >= {low:.3g}: {int((values[mask] >= low).sum())} "
                                                     f"of {len(chosen)}, {share_out:.0%} of the rest"))
            continue
        counts = Counter(chosen[column].astype(str))
        value, count = counts.most_common(1)[0]
        share_out = float((rest[column].astype(str) == value).mean())
        if _most(count, len(chosen)) and share_out < count / len(chosen) - 0.3:
            traits.append((count / len(chosen) - share_out,
                           f"{name}={value}: {count} of {len(chosen)}, {share_out:.0%} of the rest"))
    return [text for _, text in sorted(traits, reverse=True)[:limit]]


def _round_down(value: float, digits: int = 3) -> float:
    """``value`` to ``digits`` significant digits, rounded down (so ``>= shown`` holds for ``value``)."""
    if not np.isfinite(value) or value == 0:
        return float(value)
    scale = 10.0 ** (digits - 1 - int(np.floor(np.log10(abs(value)))))
    return float(np.floor(value * scale) / scale)


def _most(count: int, of: int) -> bool:
    """Whether ``count`` of ``of`` configs is "common to them": more than half, and at least two."""
    return count >= 2 and count > of / 2


def chance_summary(frame: pd.DataFrame, chance: dict | None) -> str | None:
    """One line on the configs at chance (how many, the reference, their traits), or None."""
    if chance is None or "at_chance" not in frame or not frame["at_chance"].any():
        return None
    mask = frame["at_chance"].astype(bool)
    trials = ", ".join(str(int(t)) for t in frame.loc[mask, "trial"].head(8)) + (", ..." if mask.sum() > 8 else "")
    reference = f"accuracy <= {chance['accuracy']:.3f}, the majority class's share"
    if chance.get("scoring") == "neg_log_loss":
        reference += f", or log-loss worse than the class frequencies' {-chance['neg_log_loss']:.3f}"
    traits = common_traits(frame, mask)
    short = ""
    if "n_epochs" in frame and frame["n_epochs"].nunique() > 1:  # halving: a config pruned early scored early
        full = frame["n_epochs"].max()
        early = int((mask & (frame["n_epochs"] < full)).sum())
        short = f" ({early} of them scored at a rung of fewer than {full} epochs)" if early else ""
    return (f"{int(mask.sum())} of {len(frame)} configs scored no better than chance ({reference}){short}: trials "
            f"{trials}" + (f"; common to them: {'; '.join(traits)}" if traits else "") + " (trials.csv, column "
            "at_chance)")


def winner_at_chance(frame: pd.DataFrame | None, trial) -> str | None:
    """A note when the winning ``trial`` scored no better than chance in the search (``frame``: the run's
    results, with ``at_chance``), else None: the best of configs that learned nothing is no finding."""
    if frame is None or "at_chance" not in frame:
        return None
    row = frame[frame["trial"] == trial]
    if row.empty or not bool(row["at_chance"].iloc[0]):
        return None
    return (f"trial {trial} scored no better than chance in the search (trials.csv, at_chance): the winner is the "
            "best retrained of configs that learned nothing there; search again with other settings before "
            "trusting it")
