"""A run's settings and dataset, read back from its folder (retraining, pictures, the report)."""

from __future__ import annotations

import json
from pathlib import Path

from ..data import load_dataset
from ..data.dataset import Dataset
from ..errors import UsageError
from .names import SETTINGS_FILE

__all__ = ["run_dataset", "read_settings"]


def read_settings(run_dir: Path) -> dict:
    """A run folder's ``settings.json``, or a ``UsageError`` naming the folder."""
    path = run_dir / SETTINGS_FILE
    if not path.is_file():
        raise UsageError(f"{run_dir} holds no settings.json; is it a run folder made by hpsearch search?")
    return json.loads(path.read_text())


def run_dataset(run_dir) -> Dataset:
    """The dataset a run searched on, loaded again: the same files and the same ``--max-train``
    slice (the test set is always whole)."""
    settings = read_settings(Path(run_dir))
    dataset = load_dataset(settings["dataset"], settings.get("data_dir"))
    return dataset.training_slice(settings.get("max_train"), int(settings.get("seed", 0)))
