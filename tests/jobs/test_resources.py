"""Cores and threads: jobs x threads <= cores, with a container's quota and $OMP_NUM_THREADS as caps."""

import joblib

from hpsearch.jobs import resources
from hpsearch.jobs.resources import cpu_count, omp_cap, threads_per_job


def test_the_cores_are_joblibs_count_and_omp_num_threads_caps_in_its_list_form(monkeypatch):
    """cpu_count read only the affinity (a container's CPU quota was ignored, and scikit-learn's -1 meant
    another count); OMP_NUM_THREADS "1,1" (a list per nesting level) was no cap at all."""
    assert cpu_count() <= joblib.cpu_count()
    monkeypatch.setattr(joblib, "cpu_count", lambda: 1)  # as a --cpus=1 container's quota says
    assert cpu_count() == 1 and threads_per_job(1) == 1
    monkeypatch.undo()
    for value, cap in (("1,1", 1), (" 2", 2), ("", 0), ("abc", 0), ("3,1", 3)):
        monkeypatch.setenv("OMP_NUM_THREADS", value)
        assert omp_cap() == cap, value
    monkeypatch.setenv("OMP_NUM_THREADS", "1,1")
    assert threads_per_job(1) == 1
    assert resources.task_threads({}) == 1  # not on a Dask worker: a job's share under the cap
