"""hpsearch: hyperparameter search and visual explanation of small PyTorch image classifiers."""

import importlib

from .data import load_dataset
from .data.dataset import Dataset
from .engines.batched_engine import evaluate_batched
from .engines.cv import evaluate_config, make_folds
from .errors import DivergedError, UsageError
from .retrain.top import retrain_top
from .rundir.exports import read_sorted
from .rundir.store import load_results
from .search.run import run_search
from .settings import SearchSettings
from .sklearn import HalvingRandomSearchCV, RandomizedSearchCV, SearchCV
from .space.search_space import ParamGenerator, SearchSpace, load_space
from .training.models.mlp import MLP
from .training.net import make_net
from .winner.bundle import load_winner

__version__ = "0.1.0"

__all__ = [
    "Dataset", "load_dataset", "DivergedError", "UsageError", "make_net", "evaluate_config",
    "make_folds", "MLP", "SearchSettings", "run_search", "ParamGenerator", "SearchSpace",
    "load_space", "load_results", "read_sorted", "load_winner", "retrain_top", "evaluate_batched", "viz",
    "HalvingRandomSearchCV", "RandomizedSearchCV", "SearchCV",
]

# Subpackages imported on first use: ``import hpsearch; hpsearch.viz.receptive_fields(net)`` works,
# while ``import hpsearch`` alone does not pay for matplotlib.
_LAZY = ("viz",)


def __getattr__(name: str):
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
