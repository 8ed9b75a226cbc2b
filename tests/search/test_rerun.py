"""A run's later steps as a user meets them: retraining in parallel jobs with per-epoch progress,
resumed and never redone, stored settings reused, the winner's optimizer state, a slice of the
training set, and a search where every config failed."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hpsearch import load_winner
from hpsearch.cli import main
from hpsearch.errors import UsageError
from hpsearch.retrain.top import retrain_top
from hpsearch.search.run import run_search
from hpsearch.settings import SearchSettings

ROOT = Path(__file__).resolve().parents[2]
TINY = dict(dataset="digits", cv=2, max_epochs=3, patience=0, n_jobs=2, progress=False)


@pytest.fixture(scope="module")
def searched(tmp_path_factory, digits):
    return run_search(SearchSettings(n=4, out=str(tmp_path_factory.mktemp("searched") / "run"), **TINY), digits)


def _copy_search(run, tmp_path):
    """The search's files alone (no retraining yet), in a folder of the test's own."""
    target = tmp_path / "run"
    target.mkdir(parents=True)
    for name in ("trials.db", "settings.json", "space.toml", "trials.csv", "dataset.npz"):
        (target / name).write_bytes((run / name).read_bytes())
    return target


@pytest.mark.slow
def test_parallel_retraining_resumes_and_equals_one_job(searched, tmp_path, digits):
    sequential = retrain_top(_copy_search(searched, tmp_path / "a"), top=3, retrain_epochs=4, dataset=digits,
                             progress=False, n_jobs=1)
    run = _copy_search(searched, tmp_path / "b")
    first = retrain_top(run, top=1, retrain_epochs=4, dataset=digits, progress=False, n_jobs=2)
    assert first.trained == 1
    # raising --top trains only the configs without a row; the result is the one-job, one-go table
    more = retrain_top(run, top=3, retrain_epochs=4, dataset=digits, progress=False, n_jobs=2)
    assert more.trained == 2
    cols = ["trial", "search_rank", "test_accuracy", "test_loss", "epochs", "retrain_epochs", "winner"]
    pd.testing.assert_frame_equal(more.table[cols], sequential.table[cols])
    assert more.winner["trial"] == sequential.winner["trial"]
    # the same retraining again trains nothing and keeps the winner
    again = retrain_top(run, top=3, retrain_epochs=4, dataset=digits, progress=False)
    assert again.trained == 0 and again.winner["trial"] == sequential.winner["trial"]
    np.testing.assert_array_equal(again.net.predict_proba(digits.X_test), sequential.net.predict_proba(digits.X_test))
    # other epochs are another retraining: every config is trained again
    assert retrain_top(run, top=2, retrain_epochs=2, dataset=digits, progress=False).trained == 2


def test_retraining_reports_every_epoch(searched, tmp_path, digits, capsys):
    retrain_top(_copy_search(searched, tmp_path), top=2, retrain_epochs=3, dataset=digits, progress=True, n_jobs=2)
    err = capsys.readouterr().err
    assert "6/6" in err and "epoch" in err  # one bar over 2 configs x 3 epochs
    assert "test acc" in err and "epoch 3/3" in err


def test_winner_keeps_its_optimizer_state(searched, tmp_path, digits):
    result = retrain_top(_copy_search(searched, tmp_path), top=1, retrain_epochs=3, dataset=digits, progress=False)
    net = load_winner(result.run_dir)
    state = net.optimizer_.state_dict()["state"]
    steps = {int(s["step"]) for s in state.values()} if "adam" in net.optimizer_.__class__.__name__.lower() else None
    assert state, "the optimizer's moments are restored, not fresh"
    batches = 3 * int(np.ceil(len(digits.y_train) / net.batch_size))
    if steps is not None:
        assert steps == {batches}
        net.partial_fit(digits.X_train, digits.y_train, epochs=1)  # continues Adam: its step count goes on
        after = {int(s["step"]) for s in net.optimizer_.state_dict()["state"].values()}
        assert after == {batches + batches // 3}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_load_winner_on_cuda_without_cuda_says_what_to_do(retrained_run):
    with pytest.raises(UsageError, match=r"device='cuda' asks for CUDA.*device='cpu' \(or 'auto'"):
        load_winner(retrained_run, device="cuda")
    assert load_winner(retrained_run, device="auto").device == "cpu"


@pytest.mark.slow
def test_resume_reuses_stored_retraining_and_never_redoes_a_finished_run(tmp_path, capsys, short_ascents):
    run = tmp_path / "run"
    base = ["--dataset", "digits", "--n", "3", "--cv", "2", "--max-epochs", "2", "--patience", "0",
            "--no-progress", "--out", str(run), "--images", "4", "--units", "4"]
    assert main(["search", *base, "--top", "2", "--retrain-epochs", "3"]) == 0
    first = capsys.readouterr().out
    assert "retrained 2 configs for 3 epochs" in first and "open first" in first
    assert json.loads((run / "settings.json").read_text())["top"] == 2
    # --resume keeps --top 2 --retrain-epochs 3 and redoes neither the retraining nor the pictures
    assert main(["search", "--resume", str(run), "--no-progress", "--images", "4", "--units", "4"]) == 0
    out = capsys.readouterr().out
    assert "retraining already done (retrain.csv: 2 configs, 3 epochs)" in out
    assert "pictures of this winner already drawn" in out
    assert len(pd.read_csv(run / "retrain.csv")) == 2
    # hpsearch retrain without flags uses the stored ones too
    assert main(["retrain", str(run), "--no-progress"]) == 0
    assert "nothing to train" in capsys.readouterr().out


def test_flags_of_later_steps_are_checked_before_the_search(tmp_path, capsys):
    for flags, message in ((["--top", "0"], "--top must be"), (["--retrain-epochs", "0"], "--retrain-epochs must be"),
                           (["--images", "0"], "--images must be"), (["--units", "-1"], "--units must be"),
                           (["--max-train", "0"], "--max-train must be")):
        assert main(["search", "--dataset", "digits", "--n", "2", "--out", str(tmp_path / "r"), *flags]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "r" / "trials.db").exists()  # refused before any work


def test_max_train_is_a_stratified_seeded_slice_recorded_in_the_run(tmp_path, digits):
    part = digits.training_slice(300, seed=1)
    assert len(part.y_train) == 300 and len(part.y_test) == len(digits.y_test)
    counts = np.bincount(part.y_train, minlength=10) / 300
    np.testing.assert_allclose(counts, np.bincount(digits.y_train) / len(digits.y_train), atol=0.01)
    np.testing.assert_array_equal(part.X_train, digits.training_slice(300, seed=1).X_train)  # seeded
    assert not np.array_equal(part.y_train, digits.training_slice(300, seed=2).y_train)
    run = run_search(SearchSettings(n=2, max_train=300, seed=1, out=str(tmp_path / "run"), **TINY))
    assert json.loads((run / "settings.json").read_text())["max_train"] == 300
    frame = pd.read_csv(run / "trials.csv")
    assert frame["mean_test_accuracy"].notna().all()
    with pytest.raises(UsageError, match="max_train 5 is too small"):
        digits.training_slice(5)


def test_a_max_train_past_the_training_set_is_the_whole_set_and_stored_as_such(tmp_path, digits, capsys):
    run = run_search(SearchSettings(n=1, max_train=100_000, out=str(tmp_path / "run"), **TINY), digits)
    assert "max_train 100000 is no fewer than the 1,437 training images of digits: all of them are used" in \
        capsys.readouterr().err
    assert json.loads((run / "settings.json").read_text())["max_train"] is None
    run_search(SearchSettings(n=2, out=str(run), **TINY), digits)  # without it: the same run, resumed
    assert len(pd.read_csv(run / "trials.csv")) == 2


def test_a_search_where_every_config_failed_says_so_and_exits_1(tmp_path, capsys):
    space = tmp_path / "diverge.toml"
    space.write_text('model = "mlp"\nhidden = [32]\noptimizer = "sgd"\nlr = 1e6\n')
    code = main(["search", "--dataset", "digits", "--space", str(space), "--n", "2", "--cv", "2", "--max-epochs", "3",
                 "--patience", "0", "--no-progress", "--out", str(tmp_path / "run")])
    assert code == 1
    err = capsys.readouterr().err
    assert "every one of the 2 configs failed" in err and "diverged" in err


@pytest.mark.slow
def test_ctrl_c_in_retraining_keeps_finished_rows_and_says_how_to_continue(searched, tmp_path, digits):
    run = _copy_search(searched, tmp_path)
    retrain_top(run, top=1, retrain_epochs=40, dataset=digits, progress=False)  # one config done: its row
    proc = subprocess.Popen([sys.executable, "-m", "hpsearch.cli", "retrain", str(run), "--top", "3",
                             "--retrain-epochs", "40"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    deadline, seen = time.monotonic() + 120, ""
    while time.monotonic() < deadline and " epoch " not in seen:  # "trial 3 epoch 1/40": a fit is under way
        seen = seen[-100:] + _read_some(proc.stderr)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "retraining interrupted: 1 of 3 configs are retrained" in stderr
    assert f"hpsearch retrain {run} --top 3 --retrain-epochs 40" in stderr and "Traceback" not in stderr
    table = pd.read_csv(run / "retrain.csv")
    assert len(table) == 1 and table["epochs"].eq(40).all()  # the cut-short fits left nothing behind
    # the same command again says which configs go on from their checkpoints, and from which epoch (in a
    # log too, with the bars off: it was said only beside them)
    again = subprocess.run([sys.executable, "-m", "hpsearch.cli", "retrain", str(run), "--top", "3",
                            "--retrain-epochs", "40", "--no-progress"], capture_output=True, text=True, cwd=ROOT,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    assert re.search(r"trial \d+ goes on from epoch \d+ of 40 \(its checkpoint\)", again.stderr), again.stderr[-800:]
    assert "retraining the best 3 for 40 epochs each" in again.stdout


def _read_some(stream) -> str:
    """A chunk of a subprocess's output (tqdm redraws its bar without newlines)."""
    return os.read(stream.fileno(), 4096).decode(errors="replace")


def test_a_resume_below_the_scored_trials_is_refused_and_keeps_the_settings(searched, tmp_path, digits):
    run = _copy_search(searched, tmp_path)
    before = (run / "settings.json").read_text()
    for n in (2, 3):  # trials 0-3 are scored: --n 3 would leave trial 3 outside a run that says 3
        with pytest.raises(UsageError, match=rf"already holds {4 - n} scored trials? numbered {n} or above "
                                             rf"\(up to 3\), beyond n {n}; resume with n 4 or more"):
            run_search(SearchSettings(n=n, out=str(run), **TINY), digits)
    assert (run / "settings.json").read_text() == before  # refused before anything was rewritten
    assert len(pd.read_csv(run / "trials.csv")) == 4


def test_an_interrupt_counts_the_rungs_of_configs_still_in_the_search():
    """Ctrl-C during halving's first rung said "0 finished trials (and every finished rung) are stored"
    while trials.db held finished rungs, and the resume kept them."""
    from hpsearch.search.run import _kept_words

    running = {"state": "RUNNING", "rungs": [{"epochs": 1}]}
    assert _kept_words([running, running, {"state": "RUNNING", "rungs": []}]) == \
        "0 finished trials and 2 finished rungs of configs still in the search are"
    assert _kept_words([{"state": "COMPLETE", "rungs": [{"epochs": 9}]}]) == "1 finished trial is"


def test_an_interrupt_counts_the_folds_trained_of_configs_with_no_rung_yet(tmp_path):
    """A Ctrl-C inside a raced first rung said "0 finished trials are stored" while 3 trained folds were kept
    (a raced rung is stored once its race is decided) and the resume went on from them."""
    from hpsearch.search.run import _kept_words

    for index, folds in ((0, 2), (1, 1), (2, 2)):
        for k in range(folds):
            path = tmp_path / "states" / str(index) / f"fold{k}.pt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
    # configs 0 and 1 have no rung (the store lists them not); 2's folds are its finished rung's states
    records = [{"index": 2, "state": "RUNNING", "rungs": [{"epochs": 1}]}]
    assert _kept_words(records, tmp_path) == \
        "0 finished trials and 1 finished rung and 3 trained folds of configs still in the search are"
    assert _kept_words([], tmp_path) == "0 finished trials and 5 trained folds of configs still in the search are"
