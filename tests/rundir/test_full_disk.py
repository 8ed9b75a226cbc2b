"""A run folder that cannot be written (here: writes past a real file-size limit, RLIMIT_FSIZE, as a
full disk refuses them) stops the work with one line naming the file and the disk's reason; no config
is marked failed for it, so the same command later retries it."""

import resource
import signal
from contextlib import contextmanager

import numpy as np
import pytest

from hpsearch.engines.cv import _score_fold, make_folds
from hpsearch.errors import StorageError
from hpsearch.retrain.job import retrain_one
from hpsearch.retrain.progress import EpochBar
from hpsearch.rundir.atomic import atomic_write_text
from hpsearch.rundir.states import owner_of, state_path
from hpsearch.training.net import make_net

CONFIG = {"model": "mlp", "hidden": [8], "lr": 1e-2}


@contextmanager
def file_size_limit(nbytes: int):
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past it fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def test_a_failed_write_names_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "trials.csv"
    with file_size_limit(100), pytest.raises(StorageError, match=r"cannot write .*trials.csv \(File too large\)"):
        atomic_write_text(target, "x" * 10_000)
    assert list(tmp_path.iterdir()) == []


def test_a_state_that_cannot_be_written_stops_the_search_not_the_config(tmp_path, digits):
    folds = make_folds(digits.y_train, 2, 0)
    train, test = folds[0]
    make = lambda: make_net(CONFIG, digits, max_epochs=1, patience=0, random_state=0)  # noqa: E731
    state = (state_path(tmp_path, 0, 0), True, owner_of("run", 0, 0, CONFIG))
    with file_size_limit(2_000), pytest.raises(StorageError, match="fold0.pt"):
        _score_fold(make, digits.X_train, digits.y_train, train, test, "neg_log_loss", 1, state)
    outcome = _score_fold(make, digits.X_train, digits.y_train, train, test, "neg_log_loss", 1, state)
    assert outcome["error"] is None and np.isfinite(outcome["score"])  # with room on the disk it goes on


def test_a_checkpoint_that_cannot_be_written_is_no_failed_config(tmp_path, digits):
    cand = {"trial": 0, "search_rank": 1, "cv_score": -0.1, "cv_accuracy": 0.9, "config": CONFIG}
    kwargs = dict(device="cpu", epochs=2, batch_size=128, seed=0, monitor_test=False, threads=1,
                  sink=EpochBar(2, 1, desc="retrain", enabled=False), run_dir=tmp_path, checkpoint_every=1)
    with file_size_limit(2_000), pytest.raises(StorageError, match="retrain_states"):
        retrain_one(cand, digits, **kwargs)
    row, payload = retrain_one(cand, digits, **kwargs)
    assert row["error"] == "" and payload is not None


def test_pictures_that_cannot_be_written_are_one_line(tmp_path, capsys):
    from hpsearch.cli import main
    from hpsearch.search.run import run_search
    from hpsearch.settings import SearchSettings

    run = run_search(SearchSettings(dataset="digits", n=3, cv=2, max_epochs=1, patience=0, progress=False,
                                    out=str(tmp_path / "run")))
    with file_size_limit(2_000):
        assert main(["plot", "search", str(run)]) == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and "search_" in err and "(File too large)" in err and "Traceback" not in err
    assert not list(run.glob("search_*.png")) and not list(run.glob(".*tmp*"))


def test_torchs_unexpected_pos_on_a_full_disk_is_a_storage_error(tmp_path):
    """On a full disk torch.save raises "unexpected pos ...", a RuntimeError without "writ" in it, while the write's
    OSError is being handled: it went through as a traceback, or as a failed fit."""
    from hpsearch.errors import StorageError
    from hpsearch.rundir.atomic import atomic_write

    def full(fh):
        try:
            raise OSError(28, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 2944 vs 2838") from None

    with pytest.raises(StorageError, match="cannot write .*state.pt"):
        atomic_write(tmp_path / "state.pt", full, binary=True)
    assert list(tmp_path.iterdir()) == []
