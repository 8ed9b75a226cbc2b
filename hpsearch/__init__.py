"""hpsearch: hyperparameter search and visual explanation of small PyTorch image classifiers."""

import importlib

__version__ = "0.1.0"

# Each public name and the module it lives in. Imported on first use (PEP 562), so that ``import
# hpsearch`` (and the command line's ``--help``) does not pay for torch, scikit-learn and skorch;
# ``from hpsearch import run_search`` works as before.
_HOMES = {
    "Dataset": ".data.dataset",
    "load_dataset": ".data",
    "DivergedError": ".errors",
    "UsageError": ".errors",
    "make_net": ".training.net",
    "evaluate_config": ".engines.cv",
    "make_folds": ".engines.cv",
    "MLP": ".training.models.mlp",
    "SearchSettings": ".settings",
    "run_search": ".search.run",
    "ParamGenerator": ".space.search_space",
    "SearchSpace": ".space.search_space",
    "load_space": ".space.search_space",
    "load_results": ".rundir.store",
    "read_sorted": ".rundir.exports",
    "load_winner": ".winner.bundle",
    "retrain_top": ".retrain.top",
    "evaluate_batched": ".engines.batched_engine",
    "HalvingRandomSearchCV": ".sklearn",
    "RandomizedSearchCV": ".sklearn",
    "SearchCV": ".sklearn",
}

# Subpackages imported on first use: ``import hpsearch; hpsearch.viz.receptive_fields(net)`` works,
# while ``import hpsearch`` alone does not pay for matplotlib.
_LAZY = ("viz",)

__all__ = [
    "Dataset", "load_dataset", "DivergedError", "UsageError", "make_net", "evaluate_config",
    "make_folds", "MLP", "SearchSettings", "run_search", "ParamGenerator", "SearchSpace",
    "load_space", "load_results", "read_sorted", "load_winner", "retrain_top", "evaluate_batched", "viz",
    "HalvingRandomSearchCV", "RandomizedSearchCV", "SearchCV",
]


def __getattr__(name: str):
    if name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name], __name__), name)
        globals()[name] = value  # once: later look-ups do not come back here
        return value
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES) | set(_LAZY))
