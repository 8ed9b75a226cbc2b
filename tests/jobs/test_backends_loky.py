"""The loky backend: a search stopped by its own error gets no advice from joblib beside it."""

import time
import warnings

from joblib import delayed

from hpsearch.jobs.backends import LokyBackend


def test_tasks_cancelled_by_the_search_s_own_error_bring_no_joblib_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stopped = False
        try:
            with LokyBackend().parallel(2, None) as (parallel, _):
                for _ in parallel(delayed(time.sleep)(0.3) for _ in range(8)):
                    raise OSError("No space left on device")  # as a store write that failed
        except OSError:
            stopped = True
    assert stopped
    # joblib warns "4 tasks which were still being processed by the workers have been cancelled" here
    assert not [w for w in caught if "still being processed" in str(w.message)]
