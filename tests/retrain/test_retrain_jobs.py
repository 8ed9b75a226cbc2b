"""The retraining runs in the jobs the search was given (a machine shared with other work keeps its
share), or in retrain's own --n-jobs."""

import pytest

from hpsearch.cli import main
from hpsearch.jobs.backends import LokyBackend
from hpsearch.jobs.resources import cpu_count


@pytest.mark.slow  # a search, its retraining and pictures, then three retrainings: about 10 s
def test_the_retraining_takes_the_searchs_jobs_or_its_own(tmp_path, monkeypatch, capsys):
    seen = []
    real = LokyBackend.parallel

    def parallel(self, jobs, X, shared=()):
        seen.append(jobs)
        return real(self, jobs, X, shared)

    monkeypatch.setattr(LokyBackend, "parallel", parallel)
    run = tmp_path / "run"
    assert main(["search", "--dataset", "digits", "--n", "3", "--cv", "2", "--max-epochs", "1", "--patience", "0",
                 "--n-jobs", "1", "--top", "2", "--retrain-epochs", "1", "--images", "2", "--units", "2", "--no-progress", "--out", str(run)]) == 0
    assert seen == [1, 1]  # the search's, then its retraining's (it took every core before)
    seen.clear()
    assert main(["retrain", str(run), "--top", "3", "--retrain-epochs", "2", "--no-progress"]) == 0
    assert seen == [1]  # the run's stored --n-jobs
    seen.clear()
    assert main(["retrain", str(run), "--top", "3", "--retrain-epochs", "3", "--n-jobs", "2", "--no-progress"]) == 0
    assert seen == [min(2, cpu_count())]
    assert main(["retrain", str(run), "--n-jobs", "0"]) == 2
    assert "--n-jobs must be a whole number >= 1, or -1 for one per core; got 0" in capsys.readouterr().err
