"""What every search estimator's ``fit`` does around its search: a folder for the fits' states (the
``storage`` the user named, else a temporary one), the epochs they trained, and the inputs, seed
and jobs as the continuing nets want them; ``Float32Input``, the same inputs for the fitted search's
``predict``, ``score`` and the like."""

from __future__ import annotations

import numbers
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from joblib import effective_n_jobs
from sklearn.utils.metaestimators import available_if

from ..errors import UsageError
from ..jobs.resources import cpu_count
from ..rundir.names import SETTINGS_FILE
from ..training.models.user import run_folder_holding
from .continuing import EPOCHS_LOG, forget_warnings

__all__ = ["fit_storage", "trained_epochs", "as_float32", "as_rows", "Float32Input", "seed_of", "jobs_of",
           "callers_state_kept"]


@contextmanager
def fit_storage(storage):
    """The states' folder for one ``fit`` (``storage``, made if missing, else a temporary one), its
    epochs log emptied."""
    forget_warnings()
    if storage is None:
        with tempfile.TemporaryDirectory(prefix="hpsearch-sklearn-") as folder:
            (Path(folder) / EPOCHS_LOG).write_text("")
            yield Path(folder)
        return
    if not str(storage).strip():  # Path("") is the current folder: the states would land wherever Python runs
        raise UsageError(f"storage {storage!r} is empty; name a folder for the fits' states, or storage=None for a "
                         "temporary one")
    folder = Path(storage).expanduser()
    run = run_folder_holding(folder)
    # hpsearch search's run (its settings too: a trials.db of your own Optuna study is no run): its trials are not
    # the door's states, nor is its lock taken here
    if run is not None and (run / SETTINGS_FILE).is_file():
        raise UsageError(f"storage {folder} is in the run folder {run} of hpsearch search, whose trials a search "
                         "estimator does not read; give the fits' states a folder of their own")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / EPOCHS_LOG).write_text("")
    except OSError as exc:
        what = "is a file, not a folder" if folder.is_file() else f"cannot be written ({exc.strerror})"
        raise UsageError(f"storage {folder} {what}; pass a folder you can write to, or storage=None for a "
                         "temporary one") from None
    yield folder


def trained_epochs(folder: Path) -> list[int]:
    """The epochs each fit of this ``fit`` trained, in the order they ended (a restored fit: 0)."""
    return [int(v) for v in (Path(folder) / EPOCHS_LOG).read_text().split()]


def as_float32(X):
    """skorch's modules want float32: other float arrays (a StandardScaler's float64) are converted."""
    return X.astype(np.float32) if isinstance(X, np.ndarray) and X.dtype.kind == "f" and X.dtype != np.float32 else X


def _some(values: np.ndarray) -> str:
    """The first few values as Python writes them: ``'cat', 'dog', ...``."""
    shown = ", ".join(repr(v.item() if isinstance(v, np.generic) else v) for v in values[:4])
    return shown + (", ..." if len(values) > 4 else "")


def as_rows(X, y):
    """``X`` and ``y`` as the searches index them (a list becomes an array, floats float32), or one line
    before any training for what the net cannot take: integer images (unscaled) and labels that are not
    whole numbers, which skorch would refuse from deep inside torch in every fit."""
    if isinstance(X, list | tuple):
        X = np.asarray(X)
    if isinstance(X, np.ndarray) and X.dtype.kind != "f":
        fix = ("scale them to floats first, e.g. X = X.astype('float32') / 255 for 8-bit images"
               if X.dtype.kind in "iu" else "give them as float32, e.g. X = X.astype('float32')" if X.dtype.kind == "b"
               else "give the pixels or features as numbers")
        raise UsageError(f"X holds {X.dtype} values, and the net takes floats; {fix}")
    if y is not None:
        y = np.asarray(y)
        if y.dtype.kind not in "iu":
            labels = np.unique(y) if y.dtype.kind in "biufSU" else y.ravel()
            kind = "text" if y.dtype.kind in "OSU" else str(y.dtype)
            raise UsageError(f"y must hold whole-number class labels (the index of the net's output), got {kind} "
                             f"values ({_some(labels)}); encode them: y = "
                             "sklearn.preprocessing.LabelEncoder().fit_transform(y)")
    return as_float32(X), y


@contextmanager
def callers_state_kept():
    """The caller's torch random states (the CPU's and the GPUs') and Optuna's log level as they were, after a
    search's ``fit``: scoring draws from the one (skorch's loaders), a TPE study sets the other."""
    optuna = sys.modules.get("optuna")
    level = optuna.logging.get_verbosity() if optuna is not None else None
    from ..jobs.resources import rng_kept

    with rng_kept():
        try:
            yield
        finally:
            optuna = sys.modules.get("optuna")
            if optuna is not None:
                optuna.logging.set_verbosity(level if level is not None else optuna.logging.INFO)


def _with_float32(name: str):
    """scikit-learn's ``name`` of the search, its ``X`` converted as ``fit``'s; there only where scikit-learn's
    is (its own check: a search over a net without ``decision_function`` has none)."""

    def method(self, X, *args, **kwargs):
        return getattr(super(Float32Input, self), name)(as_float32(X), *args, **kwargs)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"scikit-learn's ``{name}``, float64 ``X`` converted to float32 as in ``fit``."
    return available_if(lambda self: hasattr(super(Float32Input, self), name))(method)


class Float32Input:
    """Mixed in before a scikit-learn search class: what ``fit`` takes (a StandardScaler's float64 output
    included) the fitted search's ``predict``, ``score`` and the like take too (the net wants float32)."""

    predict = _with_float32("predict")
    predict_proba = _with_float32("predict_proba")
    predict_log_proba = _with_float32("predict_log_proba")
    decision_function = _with_float32("decision_function")
    score_samples = _with_float32("score_samples")
    transform = _with_float32("transform")
    score = _with_float32("score")


def seed_of(random_state) -> int:
    """The seed of every fit: an int ``random_state``, else 0 (a search is reproducible either way)."""
    return int(random_state) if isinstance(random_state, int | np.integer) else 0


def jobs_of(n_jobs) -> int:
    """The jobs a ``Parallel(n_jobs)`` runs here (None: 1, or a parallel_backend's count), at most the cores."""
    if n_jobs is not None and (isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral) or n_jobs == 0):
        raise UsageError(f"n_jobs must be a whole number of parallel jobs other than 0 (-1: one per core) or None (1), "
                         f"got {n_jobs!r}; e.g. n_jobs=-1")
    return min(effective_n_jobs(n_jobs), cpu_count())
