"""Learning-rate schedules (the documented rates at given epochs, searchable, refused where they
cannot hold) and the retraining's checkpoints: a retraining cut short at epoch k and run again ends
with exactly the weights of an uninterrupted one, also after kill -9."""

import math
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from hpsearch import make_net
from hpsearch.engines.stack_fit import unbatchable_reason
from hpsearch.errors import UsageError
from hpsearch.retrain.top import retrain_top
from hpsearch.rundir.checkpoints import EpochCheckpoint, checkpoint_path
from hpsearch.search.interrupt import SearchInterrupted
from hpsearch.search.run import run_search
from hpsearch.settings import SearchSettings
from hpsearch.space.checks import check_space
from hpsearch.space.distributions import Categorical
from hpsearch.winner.bundle import load_winner

ROOT = Path(__file__).resolve().parents[2]
LR, EPOCHS = 0.01, 6


def _fit(digits, schedule, epochs=EPOCHS, patience=0, **kw):
    net = make_net({"model": "mlp", "hidden": [16], "lr": LR, "optimizer": "adam", "schedule": schedule}, digits,
                   max_epochs=epochs, patience=patience, **kw)
    return net.fit(digits.X_train[:300], digits.y_train[:300])


def test_cosine_and_step_give_the_documented_rates(digits):
    cosine = _fit(digits, "cosine").history[:, "event_lr"]
    np.testing.assert_allclose(cosine, [LR * (1 + math.cos(math.pi * e / EPOCHS)) / 2 for e in range(EPOCHS)],
                               rtol=1e-12)
    step = _fit(digits, "step").history[:, "event_lr"]  # a tenth after each of the first two thirds
    np.testing.assert_allclose(step, [LR, LR, LR / 10, LR / 10, LR / 100, LR / 100], rtol=1e-12)
    step = _fit(digits, "step", epochs=4).history[:, "event_lr"]  # StepLR(4 // 3) cut three times: lr / 1000
    np.testing.assert_allclose(step, [LR, LR, LR / 10, LR / 100], rtol=1e-12)
    step = _fit(digits, "step", epochs=5).history[:, "event_lr"]
    np.testing.assert_allclose(step, [LR, LR, LR / 10, LR / 10, LR / 100], rtol=1e-12)
    assert "event_lr" not in _fit(digits, "none", epochs=2).history[-1]


def test_onecycle_spans_the_fit_and_peaks_at_lr(digits):
    net = _fit(digits, "onecycle")
    rates = [b["event_lr"] for epoch in net.history for b in epoch["batches"]]
    assert len(rates) == EPOCHS * math.ceil(300 / 128)
    assert dict(net.callbacks_)["lr_schedule"].lr_scheduler_.total_steps == len(rates)  # the cycle spans the fit
    assert 0.98 * LR < max(rates) <= LR and rates[0] == pytest.approx(LR / 25)  # up to lr (between steps), from lr/25


def test_onecycle_runs_whole_beside_early_stoppings_split(digits):
    """Sized on the rows the fit was given, the cycle of a search's fit (early stopping keeps a fifth back)
    ended at 28% of lr, its peak late; it spans the batches the fit trains."""
    net = _fit(digits, "onecycle", patience=EPOCHS + 1)  # a split, and no stop before the last epoch
    rates = [b["event_lr"] for epoch in net.history for b in epoch["batches"] if "event_lr" in b]  # training ones
    assert len(net.history) == EPOCHS and len(rates) == EPOCHS * math.ceil(240 / 128)  # 240: 300 less the fifth
    assert dict(net.callbacks_)["lr_schedule"].lr_scheduler_.total_steps == len(rates)
    assert rates[-1] < LR / 1000 and int(np.argmax(rates)) == round(0.3 * len(rates)) - 1


def test_plateau_watches_the_validation_loss_only_of_its_own_split(digits):
    with_split = make_net({"model": "mlp", "schedule": "plateau"}, digits, patience=3).initialize()
    assert dict(with_split.callbacks_)["lr_schedule"].monitor == "valid_loss"
    without = make_net({"model": "mlp", "schedule": "plateau"}, digits, patience=0).initialize()
    assert dict(without.callbacks_)["lr_schedule"].monitor == "train_loss"


def test_schedules_are_searchable_and_checked():
    check_space({"schedule": Categorical(["none", "cosine", "step", "plateau", "onecycle"])})
    with pytest.raises(UsageError, match=r"schedule must be one of .*'cosine'.* got 'cosin'; did you mean 'cosine'\?"):
        check_space({"schedule": Categorical(["none", "cosin"])})
    assert "constant learning rate" in unbatchable_reason({"model": "mlp", "schedule": "cosine"})


def test_halving_refuses_a_space_with_a_schedule(tmp_path):
    space = tmp_path / "space.toml"
    space.write_text('model = "mlp"\nlr = 0.01\n[schedule]\ndistribution = "categorical"\nchoices = ["none", "cosine"]\n')
    with pytest.raises(UsageError, match="continues each survivor at a longer budget.*cosine"):
        run_search(SearchSettings(n=6, dataset="digits", cv=2, max_epochs=3, strategy="halving", space=str(space),
                                  out=str(tmp_path / "run"), progress=False))


@pytest.fixture()
def run(retrained_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(retrained_run, copy)
    return copy


def _weights(run):
    return {k: v.clone() for k, v in load_winner(run).module_.state_dict().items()}


def test_a_retraining_cut_short_resumes_from_its_checkpoint_exactly(run, tmp_path, monkeypatch, digits):
    straight = tmp_path / "straight"
    shutil.copytree(run, straight)
    retrain_top(straight, top=1, retrain_epochs=EPOCHS, dataset=digits, progress=False, schedule="cosine", n_jobs=1)

    save = EpochCheckpoint.save_model

    def save_then_stop(self, net):  # as Ctrl-C at epoch 3: skorch ends the fit, the checkpoint is kept
        save(self, net)
        if len(net.history) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(EpochCheckpoint, "save_model", save_then_stop)
    with pytest.raises(SearchInterrupted):
        retrain_top(run, top=1, retrain_epochs=EPOCHS, dataset=digits, progress=False, schedule="cosine", n_jobs=1)
    state = torch.load(checkpoint_path(run, 0 if not (run / "retrain_states").exists() else
                                       int(next((run / "retrain_states").glob("*.pt")).stem)), weights_only=False)
    assert len(state["history"]) == 3 and state["lr_schedule"]["policy"]["last_epoch"] == 3
    monkeypatch.undo()
    result = retrain_top(run, top=1, retrain_epochs=EPOCHS, dataset=digits, progress=False, schedule="cosine",
                         n_jobs=1)
    assert result.trained == 1 and not list((run / "retrain_states").glob("*.pt"))  # served, removed
    got, want = _weights(run), _weights(straight)
    assert all(torch.equal(got[k], want[k]) for k in want)
    np.testing.assert_array_equal(result.net.history[:, "event_lr"], load_winner(straight).history[:, "event_lr"])
    assert result.table["schedule"].tolist() == ["cosine"]


@pytest.mark.slow
def test_a_retraining_killed_9_resumes_from_its_checkpoint_exactly(run, tmp_path, digits):
    straight = tmp_path / "straight"
    shutil.copytree(run, straight)
    epochs = 15
    retrain_top(straight, top=1, retrain_epochs=epochs, dataset=digits, progress=False, n_jobs=1)
    command = [sys.executable, "-m", "hpsearch.cli", "retrain", str(run), "--top", "1", "--retrain-epochs",
               str(epochs), "--no-progress"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    folder, deadline = run / "retrain_states", time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        files = list(folder.glob("*.pt")) if folder.is_dir() else []
        if files and len(torch.load(files[0], weights_only=False)["history"]) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the retraining ended before it could be killed: {proc.stderr.read()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    kept = len(torch.load(next(folder.glob("*.pt")), weights_only=False)["history"])
    assert 3 <= kept < epochs
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    got, want = _weights(run), _weights(straight)
    assert all(torch.equal(got[k], want[k]) for k in want)
