"""Seeds derived from the run's ``--seed``, so nothing depends on how many trials run or in what order."""

from __future__ import annotations

import numpy as np

__all__ = ["trial_seed"]


def trial_seed(seed: int, index: int) -> int:
    """The torch seed of trial ``index``: independent of how many trials run or in what order."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
