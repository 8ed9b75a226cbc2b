"""hpsearch: hyperparameter search and visual explanation of small PyTorch image classifiers."""

from .data import Dataset, load_dataset
from .engines.batched_engine import evaluate_batched
from .errors import DivergedError, UsageError
from .estimator import make_net
from .evaluate import evaluate_config, make_folds
from .models import MLP
from .retrain import load_winner, retrain_top
from .search import SearchSettings, run_search
from .space import ParamGenerator, SearchSpace, load_space
from .store import load_results

__version__ = "0.1.0"

__all__ = [
    "Dataset", "load_dataset", "DivergedError", "UsageError", "make_net", "evaluate_config",
    "make_folds", "MLP", "SearchSettings", "run_search", "ParamGenerator", "SearchSpace",
    "load_space", "load_results", "load_winner", "retrain_top", "evaluate_batched",
]
