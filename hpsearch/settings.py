"""The settings of a search, their validation, and the fingerprint that a resume must match."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .errors import UsageError, check_whole
from .training.net import DEFAULT_BATCH_SIZE, DEFAULT_MAX_EPOCHS, DEFAULT_PATIENCE

__all__ = ["SearchSettings", "ENGINES", "fingerprint"]

# "skorch": one skorch net per config x fold, the faithful reference; "batched": many MLP configs x
# folds at once (hpsearch.engines.stack_fit), other model kinds falling back to skorch.
ENGINES = ("skorch", "batched")
MAX_SEED = 2**32 - 1
MAX_N = 1_000_000


@dataclass
class SearchSettings:
    """Everything that defines a search. The CLI flags map one to one onto these fields."""

    n: int = 150
    dataset: str = "digits"
    data_dir: str | None = None
    space: str = "mlp_mnist"
    cv: int = 4
    n_jobs: int = -1
    max_epochs: int = DEFAULT_MAX_EPOCHS
    patience: int = DEFAULT_PATIENCE
    batch_size: int = DEFAULT_BATCH_SIZE
    scoring: str = "neg_log_loss"
    seed: int = 0
    out: str | None = None
    device: str = "cpu"
    progress: bool = True
    engine: str = "skorch"
    max_models_per_chunk: int | None = None
    strategy: str = "random"
    factor: int = 3
    min_epochs: int | None = None
    n_startup: int = 10
    max_train: int | None = None  # a stratified, seeded slice of the training set (None: all of it)
    backend: str = "loky"  # where the jobs run (hpsearch.jobs.backends): loky processes here, or a Dask cluster
    scheduler: str | None = None  # --backend dask: tcp://HOST:PORT, local or local:N (default local)
    # What follows the search on the command line; stored so that a resume retrains as asked.
    top: int = 15
    retrain_epochs: int = 300
    schedule: str | None = None  # the retraining's learning-rate schedule (None: each config's own)
    checkpoint_every: int = 1  # the retraining saves each config's state every this many epochs (0: never)
    extra: dict = field(default_factory=dict)

    def validate(self) -> None:
        from .engines.cv import SCORINGS
        from .jobs.backends import check_backend_flags
        from .jobs.resources import effective_jobs
        from .strategies import make_strategy
        from .training.schedules import check_schedule_name

        check_whole("--n", self.n, 1)
        if self.n > MAX_N:  # every config becomes a trial in the store; halving trains them all at once
            raise UsageError(f"--n must be at most {MAX_N:,} configs (each one is a trial in the store), "
                             f"got {self.n:,}")
        check_whole("--cv", self.cv, 2)
        check_whole("--max-epochs", self.max_epochs, 1)
        check_whole("--patience", self.patience, 0)
        check_whole("--batch-size", self.batch_size, 1)
        check_whole("--seed", self.seed, 0)
        if self.seed > MAX_SEED:  # scikit-learn's folds take a 32-bit seed
            raise UsageError(f"--seed must be at most {MAX_SEED} (2**32 - 1), got {self.seed}")
        check_whole("--top", self.top, 1)
        check_whole("--retrain-epochs", self.retrain_epochs, 1)
        check_whole("--checkpoint-every", self.checkpoint_every, 0)
        if self.schedule is not None:
            check_schedule_name(self.schedule, "--schedule")
        if self.max_train is not None:
            check_whole("--max-train", self.max_train, 1)
        effective_jobs(self.n_jobs, 1)
        if self.scoring not in SCORINGS:
            raise UsageError(f"--scoring must be one of {', '.join(SCORINGS)}, got {self.scoring!r}")
        if self.engine not in ENGINES:
            raise UsageError(f"--engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.max_models_per_chunk is not None:
            check_whole("--max-models-per-chunk", self.max_models_per_chunk, 1)
        make_strategy(self)  # checks --strategy and its own flags
        check_backend_flags(self.backend, self.scheduler)


def fingerprint(settings: SearchSettings, space, dataset) -> dict:
    """What makes a run's trials comparable; a resume with another fingerprint is refused."""
    from .strategies import make_strategy

    return {
        "dataset": dataset.name,
        "n_train": int(len(dataset.y_train)),
        "space": space.source or json.dumps({k: repr(v) for k, v in space.params.items()}),
        "cv": settings.cv,
        "seed": settings.seed,
        "max_epochs": settings.max_epochs,
        "patience": settings.patience,
        "batch_size": settings.batch_size,
        "scoring": settings.scoring,
        # the engines agree statistically, not bit for bit: one run's trials come from one engine
        "engine": settings.engine,
        # which configs get how many epochs (--n may change: it extends a random or TPE search)
        "strategy": make_strategy(settings).fingerprint(),
        **({"max_train": settings.max_train} if settings.max_train is not None else {}),
    }
