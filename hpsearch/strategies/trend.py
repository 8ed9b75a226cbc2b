"""A rung's ranking by the trend of each config's learning curve: its score extrapolated to the full
budget along the line through its scores at the previous rung and this one (in log-epochs), the
extrapolated gain weighted by ``weight``.

Why: on both tabulated benchmarks (``bench/replay.py``, BENCHMARKS.md) the full budget's winners are
slow starters that a rung's plain score ranks mid-table. Their curve since the previous rung already
says they are still climbing, and halving has those scores for free (the previous rung scored every
candidate). A diverged config (NaN at either rung) keeps its NaN and ranks last; the first rung has
no trend and ranks by its score. The weight shrinks the extrapolation: a straight line in log-epochs
overshoots, since curves flatten.
"""

from __future__ import annotations

import math

__all__ = ["extrapolate"]


def extrapolate(now: dict[int, float], before: dict[int, float], epochs: int, before_epochs: int, max_epochs: int,
                weight: float) -> dict[int, float]:
    """Each config's score at ``epochs`` plus ``weight`` times its gain since ``before_epochs`` carried
    on to ``max_epochs`` (the gain per log-epoch, times the log-epochs left); a config missing from
    ``before`` keeps its score."""
    reach = math.log(max_epochs / epochs) / math.log(epochs / before_epochs)
    keys = {}
    for i, score in now.items():
        earlier = before.get(i, math.nan)
        keys[i] = score + weight * reach * (score - earlier) if math.isfinite(earlier) else score
    return keys
