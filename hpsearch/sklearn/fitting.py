"""What every search estimator's ``fit`` does around its search: a folder for the fits' states (the
``storage`` the user named, else a temporary one), the epochs they trained, and the inputs, seed
and jobs as the continuing nets want them; ``Float32Input``, the same inputs for the fitted search's
``predict``, ``score`` and the like."""

from __future__ import annotations

import numbers
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from joblib import effective_n_jobs
from sklearn.utils.metaestimators import available_if

from ..errors import UsageError
from ..jobs.resources import cpu_count
from .continuing import EPOCHS_LOG

__all__ = ["fit_storage", "trained_epochs", "as_float32", "Float32Input", "seed_of", "jobs_of"]


@contextmanager
def fit_storage(storage):
    """The states' folder for one ``fit`` (``storage``, made if missing, else a temporary one), its
    epochs log emptied."""
    if storage is None:
        with tempfile.TemporaryDirectory(prefix="hpsearch-sklearn-") as folder:
            (Path(folder) / EPOCHS_LOG).write_text("")
            yield Path(folder)
        return
    folder = Path(storage).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"storage {folder}: cannot make the folder ({exc.strerror}); pass a folder you can write "
                         "to, or storage=None for a temporary one") from None
    (folder / EPOCHS_LOG).write_text("")
    yield folder


def trained_epochs(folder: Path) -> list[int]:
    """The epochs each fit of this ``fit`` trained, in the order they ended (a restored fit: 0)."""
    return [int(v) for v in (Path(folder) / EPOCHS_LOG).read_text().split()]


def as_float32(X):
    """skorch's modules want float32: float64 arrays (a StandardScaler's output) are converted."""
    return X.astype(np.float32) if isinstance(X, np.ndarray) and X.dtype == np.float64 else X


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
