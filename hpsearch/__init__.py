"""hpsearch: hyperparameter search and visual explanation of small PyTorch image classifiers."""

import importlib

from .data import Dataset, load_dataset
from .engines.batched_engine import evaluate_batched
from .errors import DivergedError, UsageError
from .estimator import make_net
from .evaluate import evaluate_config, make_folds
from .models import MLP
from .results import read_sorted
from .retrain import load_winner, retrain_top
from .search import SearchSettings, run_search
from .space import ParamGenerator, SearchSpace, load_space
from .store import load_results

__version__ = "0.1.0"

__all__ = [
    "Dataset", "load_dataset", "DivergedError", "UsageError", "make_net", "evaluate_config",
    "make_folds", "MLP", "SearchSettings", "run_search", "ParamGenerator", "SearchSpace",
    "load_space", "load_results", "read_sorted", "load_winner", "retrain_top", "evaluate_batched", "viz",
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
