"""What the search estimators refuse before any training, each in one line naming the fix."""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Sequence

import numpy as np

from ..errors import UsageError, did_you_mean
from .spaces import check_space_door, is_space

__all__ = ["check_search", "whole_number", "ranking_metric", "chosen_index"]

# skorch routes these prefixes to its parts (module__width goes to the module's constructor)
ROUTED = ("module__", "optimizer__", "criterion__", "iterator_train__", "iterator_valid__", "callbacks__",
          "dataset__")


def _refuse_pipeline(search) -> None:
    """A Pipeline as the estimator: scikit-learn's searches take one, these need the net itself (its
    fits continue), so the search goes inside the pipeline instead."""
    *before, (last, _) = search.estimator.steps
    steps = "".join(f"{type(step).__name__}(), " for _, step in before if step not in (None, "passthrough"))
    raise UsageError(f"estimator must be the skorch net itself, got a Pipeline (steps: "
                     f"{', '.join(name for name, _ in search.estimator.steps)}); put the search inside the pipeline "
                     f"instead, e.g. make_pipeline({steps}{type(search).__name__}({last}, ...)), with "
                     f"param_distributions named without the '{last}__' prefix ('lr', not '{last}__lr'); the steps "
                     "before it are then fitted on all rows, test folds included: fine for a fixed transform or a "
                     "scaler, not for one that selects features or learns from the labels (its CV scores are "
                     "inflated)")


def _check_estimator(search) -> None:
    from sklearn.pipeline import Pipeline
    from skorch import NeuralNetClassifier

    estimator = search.estimator
    if isinstance(estimator, Pipeline) and estimator.steps:
        _refuse_pipeline(search)
    if not isinstance(estimator, NeuralNetClassifier):
        kind = type(estimator).__name__
        why = "a regressor" if "Regressor" in kind else "not a skorch classifier"
        raise UsageError(f"estimator must be a skorch NeuralNetClassifier (any module, your own included), got {kind} "
                         f"({why}); wrap your module: NeuralNetClassifier(MyModule, max_epochs=..., lr=...)")


def _check_device(estimator) -> None:
    """The net's device, refused in one line before any fit where every fit would fail on it (each with
    scikit-learn's traceback); on a Dask cluster the workers' devices are theirs, so only the name is checked."""
    import joblib
    import torch

    from ..training.net import missing_gpu

    device = getattr(estimator, "device", "cpu")
    if device is None:  # skorch: the module stays where it is
        return
    if str(device) == "auto":
        raise UsageError("the net's device='auto' is hpsearch's command-line word, not one skorch knows; pass 'cuda' "
                         "or 'cpu' (hpsearch.training.net.resolve_device('auto') names the one this machine has)")
    try:
        kind = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise UsageError(f"the net's device={device!r} is not a device torch knows; pass 'cpu', 'cuda' or "
                         "'cuda:N'") from None
    if kind.type not in ("cpu", "cuda"):
        raise UsageError(f"the net's device={device!r}: hpsearch trains on 'cpu' or 'cuda' (its continued fits keep "
                         "those devices' random states); pass one of them")
    if "Dask" in type(joblib.parallel.get_active_backend()[0]).__name__:
        return
    why = missing_gpu(kind)
    if why == "no CUDA GPU is visible":
        raise UsageError(f"the net's device={device!r} asks for CUDA, but {why}; pass device='cpu'")
    if why is not None:
        raise UsageError(f"the net's device={device!r}: {why}")


def _names(estimator) -> tuple[set, list]:
    """The parameter names the net takes as they are, and its module's constructor arguments."""
    known = set(estimator.get_params(deep=False))
    module = estimator.get_params(deep=False).get("module")
    try:
        params = inspect.signature(module).parameters if isinstance(module, type) else {}
    except (TypeError, ValueError):
        params = {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return known, []  # **kwargs takes any name: the module itself says what it refuses
    return known, [p for p in params if p != "self"]


def _check_name(name: str, known: set, module_args: list, estimator) -> None:
    if name in known:
        return
    if name.startswith("module__") and module_args:
        arg = name.removeprefix("module__")
        if arg not in module_args:
            module = estimator.get_params(deep=False)["module"].__name__
            raise UsageError(f"param_distributions names {name!r}, but {module} takes no argument {arg!r} (it takes "
                             f"{', '.join(module_args)})" + did_you_mean(arg, module_args))
        return
    if name.startswith(ROUTED):
        return
    options = sorted(known | {f"module__{a}" for a in module_args})
    raise UsageError(f"param_distributions names {name!r}, which {type(estimator).__name__} does not have"
                     + did_you_mean(name, options) + f" (module arguments go as module__<name>: "
                     f"{', '.join(f'module__{a}' for a in module_args) or 'none'})")


def _check_values(name: str, values) -> None:
    """scikit-learn's rule: a distribution (with ``rvs``) or a non-empty sequence of values (a list, a
    tuple, a range, a numpy array)."""
    if hasattr(values, "rvs"):
        return
    listed = isinstance(values, Sequence | np.ndarray) and not isinstance(values, str | bytes)
    if listed and np.ndim(values) != 0 and len(values) > 0:
        return
    fix = "give at least one value" if listed else f"write [{values!r}] for one value"
    raise UsageError(f"param_distributions[{name!r}] must be a non-empty list of values or a scipy.stats distribution "
                     f"(with rvs), got {values!r}; {fix}, or e.g. loguniform(1e-4, 1e-1)")


def _check_error_score(error_score) -> None:
    """scikit-learn's rule, checked before any training rather than at the first failing fit."""
    if error_score == "raise" or (isinstance(error_score, numbers.Number) and not isinstance(error_score, bool)):
        return
    raise UsageError(f"error_score must be the string 'raise' or a number (the score of a failing fit, np.nan by "
                     f"default), got {error_score!r}")


def check_search(search) -> None:
    """Refuse what cannot run: an estimator that is no skorch classifier, another resource than
    ``max_epochs`` for halving, a distribution that cannot be sampled, a parameter the net does not
    have (with did-you-mean), the resource among the searched parameters; a ``SearchSpace`` naming what
    only hpsearch's training loop does (``hpsearch.sklearn.spaces``)."""
    _check_estimator(search)
    _check_device(search.estimator)
    _check_error_score(search.error_score)
    resource = getattr(search, "resource", None)
    if resource is not None and resource != "max_epochs":
        why = ("'n_samples' would show a survivor new rows, so no fit could continue" if resource == "n_samples" else
               "epochs are the budget a survivor's fit goes on with")
        raise UsageError(f"resource must be 'max_epochs' (a survivor goes on from its last epoch), got {resource!r}; "
                         f"{why}")
    distributions = search.param_distributions
    if is_space(distributions):
        check_space_door(distributions)
        return
    groups = distributions if isinstance(distributions, list) else [distributions]
    if not groups or not all(isinstance(g, dict) for g in groups):  # {}: the net as it is, one candidate
        raise UsageError(f"param_distributions must be a dict (or a list of dicts) of parameter name -> values, or an "
                         f"hpsearch SearchSpace (load_space(...)), got {distributions!r}")
    known, module_args = _names(search.estimator)
    for group in groups:
        for name, values in group.items():
            if resource is not None and name == resource:
                raise UsageError(f"param_distributions names {resource!r}, the resource halving gives each iteration; "
                                 "remove it (the net's own max_epochs, or max_resources, is the full budget)")
            _check_name(name, known, module_args, search.estimator)
            _check_values(name, values)


def whole_number(name: str, value, low: int, fix: str) -> int:
    """``value`` as an int when it is a whole number >= ``low`` (numpy's included), else one line naming
    the parameter ``name``, what it takes, what it got and ``fix``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise UsageError(f"{name} must be a whole number >= {low}, got {value!r}; {fix}")
    return int(value)


def ranking_metric(refit, names) -> str:
    """The metric of several (``names``, scoring's) that ranks the candidates: ``refit``, which must name one."""
    names = list(names)
    if isinstance(refit, str) and refit in names:
        return refit
    raise UsageError(f"refit must name the metric that ranks the candidates when scoring has several "
                     f"({', '.join(map(repr, names))}), got {refit!r}: SearchCV's strategies promote candidates, "
                     f"and pick the best, by one metric; e.g. refit={names[0]!r}")


def chosen_index(refit, cv_results: dict) -> int:
    """The row a callable ``refit`` picks from ``cv_results_``, checked as scikit-learn checks it."""
    index = refit(cv_results)
    rows = len(cv_results["params"])
    if isinstance(index, bool) or not isinstance(index, numbers.Integral) or not 0 <= index < rows:
        raise UsageError(f"refit (a function of cv_results_) must return a row index from 0 to {rows - 1}, got "
                         f"{index!r}; return e.g. int(np.argmax(cv_results['mean_test_score']))")
    return int(index)
