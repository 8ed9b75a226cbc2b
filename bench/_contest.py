"""What bench/strategies.py's contenders share: the bench they run on, the outcome they report, and
the units they count work in (fold-epochs, and compute: fold-epochs x the config's multiply-adds)."""

from __future__ import annotations

import dataclasses
import json
import math
import uuid
from pathlib import Path

from _common import mlp_macs

from hpsearch.data.dataset import Dataset

N_JOBS = 2
CV = 4
SPACE = "mlp_mnist"


@dataclasses.dataclass
class Bench:
    """What every contender shares."""

    dataset: Dataset
    configs: list[dict]
    n: int
    seed: int
    max_epochs: int
    min_epochs: int | None  # None: halving's automatic rungs (the quick start's); the peers start at its first
    factor: int
    n_startup: int
    tmp: Path
    engine: str = "skorch"  # hpsearch's contenders only; the peers are skorch
    device: str = "cpu"
    # the fold-epochs hpsearch's halving trained in this bench (fold racing stops some folds), once it ran:
    # DEHB's budget and the point where Optuna's incumbent is read at equal compute
    halving_fold_epochs: float | None = None
    trend: float | str | None = None  # halving's --trend (None: its default)

    @property
    def first_rung(self) -> int:
        """The peers' minimum fidelity: ``min_epochs``, else halving's first automatic rung."""
        from hpsearch.strategies.halving import rung_budgets

        return self.min_epochs or rung_budgets(self.n, self.max_epochs, self.factor)[0]


@dataclasses.dataclass
class Outcome:
    name: str
    wall_s: float = math.nan
    fold_epochs: float = math.nan
    compute: float = math.nan           # sum over fold-epochs of the net's multiply-adds per image (G)
    cv_score: float = math.nan          # the chosen config's mean held-out neg-log-loss
    cv_accuracy: float = math.nan       # ... and its mean held-out accuracy
    budget: float = math.nan            # epochs the chosen config reached
    full_budget: int = 0                # configs trained to max_epochs
    config: dict | None = None
    test_accuracy: float = math.nan
    retrain_s: float = math.nan
    error: str = ""
    note: str = ""
    # {config as JSON: mean held-out score} of the configs trained to max_epochs, for agreement checks
    full_scores: dict = dataclasses.field(default_factory=dict)
    walls: list = dataclasses.field(default_factory=list)  # every round's wall time (--repeat)


def config_key(config: dict) -> str:
    return json.dumps(config, sort_keys=True)


def compute_of(fold_epochs: float, config: dict, data: Dataset) -> float:
    """G multiply-add-epochs: fold-epochs weighted by the config's forward cost per image (a wide
    config's epoch costs more than a narrow one's, which fold-epochs do not see)."""
    return fold_epochs * mlp_macs([data.n_features, *config.get("hidden", []), data.n_classes]) / 1e9


def log_record(log_dir, kind, **record):
    """One small JSON file per record: the workers that write them are other processes."""
    if log_dir:
        Path(log_dir, f"{kind}-{uuid.uuid4().hex}.json").write_text(json.dumps(record))


def read_records(log_dir, kind) -> list[dict]:
    return [json.loads(p.read_text()) for p in Path(log_dir).glob(f"{kind}-*.json")]
