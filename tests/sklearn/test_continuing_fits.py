"""A continued fit is the straight fit, whatever the net holds: candidates told apart only by a tensor,
a function or a module instance are separate fits; a user's own LRScheduler and EarlyStopping (under
any name, hpsearch's own names included) go on where they paused; a fit that stopped early stays
stopped; the storage is per random_state; a fit leaves the caller's torch random state alone."""

import os
import re
import signal

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import FitFailedWarning
from skorch import NeuralNetClassifier
from skorch.callbacks import Callback, EarlyStopping, LRScheduler
from torch import nn
from torch.optim.lr_scheduler import StepLR

from hpsearch import RandomizedSearchCV
from hpsearch.sklearn.continuing import EPOCHS_LOG, continuing, fit_key
from hpsearch.sklearn.fitting import trained_epochs


class Net(nn.Module):
    def __init__(self, width=16, act=None):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(64, width), act or nn.ReLU(), nn.Linear(width, 10))

    def forward(self, x):
        return self.layers(x)


@pytest.fixture(scope="module")
def data():
    X, y = load_digits(return_X_y=True)
    return (X[:300] / 16).astype(np.float32), y[:300]


def _net(**kw):
    return NeuralNetClassifier(Net, max_epochs=3, lr=0.1, batch_size=16, optimizer=torch.optim.SGD,
                               criterion=nn.CrossEntropyLoss, train_split=None, verbose=0, **kw)


def _fits(net, folder, data, *epochs):
    """``net`` fitted (as a continuing net in ``folder``) to each of ``epochs`` in turn, as halving's rungs
    do; the last fit and the epochs each trained."""
    made = continuing(net, folder, 0, 1)
    for target in epochs:
        fitted = clone(made).set_params(max_epochs=target).fit(*data)
    return fitted, trained_epochs(folder)


def _weights(net):
    return [p.detach().clone() for p in net.module_.parameters()]


@pytest.mark.parametrize("one, other", [
    (torch.ones(10), torch.tensor([100.0] + [0.01] * 9)),
    (np.ones(10, np.float32), np.arange(10, dtype=np.float32)),
    (nn.LeakyReLU(0.01), nn.LeakyReLU(5.0)),
    (torch.relu, torch.tanh),
    (lambda x: x * 2, lambda x: x * 3),
], ids=["tensor", "array", "module", "builtin", "lambda"])
def test_values_of_one_kind_are_different_fits_and_equal_values_the_same(one, other):
    name = "module__act" if isinstance(one, nn.Module) else "criterion__weight"
    key = fit_key(_net(**{name: one}))
    assert key != fit_key(_net(**{name: other}))
    twin = one.clone() if isinstance(one, torch.Tensor) else np.copy(one) if isinstance(one, np.ndarray) else one
    if isinstance(one, nn.Module):
        twin = nn.LeakyReLU(one.negative_slope)
    assert fit_key(_net(**{name: twin})) == key


def test_skorchs_default_train_split_is_one_fit_that_continues(tmp_path, data):
    """skorch's default train_split, ValidSplit(5), has a repr naming its memory address: it was part of the
    fit's key, so a clone was another fit (a survivor trained again from epoch 0) and the fit's seed changed
    from run to run. It is now described by its settings: the fit continues, equal to the straight one."""
    from skorch.dataset import ValidSplit

    def net():
        return NeuralNetClassifier(Net, max_epochs=3, lr=0.1, batch_size=16, optimizer=torch.optim.SGD, verbose=0,
                                   criterion=nn.CrossEntropyLoss)  # (the default NLLLoss on logits: NaN, diverged)

    assert fit_key(net()) == fit_key(clone(net())) != fit_key(net().set_params(train_split=ValidSplit(3)))
    straight, _ = _fits(net(), tmp_path / "straight", data, 3)
    continued, trained = _fits(net(), tmp_path / "continued", data, 1, 3)
    assert trained == [1, 2]
    for mine, theirs in zip(_weights(continued), _weights(straight), strict=True):
        assert torch.equal(mine, theirs)


def test_candidates_told_apart_by_a_tensor_each_train(data):
    """Two class weightings of the loss: each candidate trains its own 2 folds x 3 epochs."""
    weights = [torch.ones(10), torch.tensor([100.0] + [0.01] * 9)]
    search = RandomizedSearchCV(_net(), {"criterion__weight": weights}, n_iter=2, cv=2, random_state=0,
                                refit=False).fit(*data)
    assert search.n_fold_epochs_ == 2 * 2 * 3
    first, second = search.cv_results_["split0_test_score"]
    assert first != second


def test_a_users_lr_scheduler_named_as_hpsearch_names_its_own_continues_as_a_straight_fit(tmp_path, data):
    schedule = ("lr_schedule", LRScheduler(StepLR, step_size=1, gamma=0.1))
    straight, _ = _fits(_net(callbacks=[schedule]), tmp_path / "straight", data, 3)
    continued, trained = _fits(_net(callbacks=[schedule]), tmp_path / "continued", data, 1, 3)
    assert trained == [1, 2]
    assert continued.history[:, "event_lr"] == straight.history[:, "event_lr"] == pytest.approx([0.1, 0.01, 0.001])
    for mine, theirs in zip(_weights(continued), _weights(straight), strict=True):
        assert torch.equal(mine, theirs)


def test_a_users_early_stopping_waits_on_across_the_pause_and_a_stopped_fit_stays_stopped(tmp_path, data):
    """No epoch after the first improves by 10: the straight fit stops after epoch 3 (2 misses). Paused
    after epoch 2 (1 miss), the continued fit stops after epoch 3 too; asked for 20 epochs next, it
    trains none, as the straight fit with 20 would."""
    stopping = ("early_stopping", EarlyStopping(monitor="train_loss", patience=2, threshold=10,
                                                threshold_mode="abs", load_best=True))
    straight, _ = _fits(_net(callbacks=[stopping]), tmp_path / "straight", data, 8)
    assert len(straight.history) == 3
    continued, trained = _fits(_net(callbacks=[stopping]), tmp_path / "continued", data, 2, 8, 20)
    assert trained == [2, 1, 0]
    assert len(continued.history) == 3
    for mine, theirs in zip(_weights(continued), _weights(straight), strict=True):
        assert torch.equal(mine, theirs)  # load_best's weights (epoch 1's), as the straight fit ends


def test_a_fit_stopped_at_exactly_the_epochs_asked_stays_stopped(tmp_path, data):
    """The straight fit stops after epoch 3; paused at 3 (a rung's budget) the stop looked like the end of
    the budget, and asked for 9 next the fit went on to 9, its patience passed and never stopping again."""
    stopping = ("early_stopping", EarlyStopping(monitor="train_loss", patience=2, threshold=10,
                                                threshold_mode="abs", load_best=True))
    straight, _ = _fits(_net(callbacks=[stopping]), tmp_path / "straight", data, 9)
    assert len(straight.history) == 3
    continued, trained = _fits(_net(callbacks=[stopping]), tmp_path / "continued", data, 1, 3, 9)
    assert trained == [1, 2, 0] and len(continued.history) == 3
    for mine, theirs in zip(_weights(continued), _weights(straight), strict=True):
        assert torch.equal(mine, theirs)


def test_a_diverging_candidate_scores_nan_and_ranks_last(data, tmp_path):
    """skorch trains on through a NaN loss and scores the NaN weights' constant predictions (at chance): lr=1e8
    won a search and predicted one class for every image. A diverged fit now fails as a fit: error_score."""
    from hpsearch import HalvingRandomSearchCV

    search = HalvingRandomSearchCV(_net(), {"lr": [1e8, 0.05, 0.1]}, n_candidates=3, factor=3, min_resources=1,
                                   max_resources=3, cv=2, random_state=0, storage=tmp_path / "s")
    with pytest.warns(FitFailedWarning, match=r"DivergedError: training loss became nan at epoch 1: the net diverged"):
        search.fit(*data)
    first = search.cv_results_["n_resources"] == 1
    lrs, scores = search.cv_results_["param_lr"][first], search.cv_results_["mean_test_score"][first]
    assert np.isnan(scores[list(lrs).index(1e8)]) and np.isfinite(scores[list(lrs).index(0.05)])
    ranks = search.cv_results_["rank_test_score"]
    assert ranks[list(search.cv_results_["param_lr"]).index(1e8)] == len(ranks)  # last
    assert search.best_params_["lr"] != 1e8
    assert len(trained_epochs(tmp_path / "s")) == 3 * 2 + 1 * 2 + 1  # every fit counted, the diverged too (+ refit)
    straight = RandomizedSearchCV(_net(), {"lr": [1e8]}, n_iter=1, cv=2, refit=False, error_score="raise")
    with pytest.raises(Exception, match="the net diverged"):
        straight.fit(*data)
    # logits under skorch's default NLLLoss are NaN at once: said with its fix, not only "lower lr"
    logits = NeuralNetClassifier(Net, max_epochs=1, lr=0.1, train_split=None, verbose=0)
    with pytest.raises(Exception, match=r"pass criterion=torch.nn.CrossEntropyLoss"):
        RandomizedSearchCV(logits, {"lr": [0.1]}, n_iter=1, cv=2, refit=False, error_score="raise").fit(*data)


def test_the_storage_keeps_each_random_state_apart(tmp_path, data):
    space = {"lr": [0.05, 0.1, 0.2]}
    kw = dict(n_iter=2, cv=2, refit=False, storage=tmp_path / "store")
    first = RandomizedSearchCV(_net(), space, random_state=0, **kw).fit(*data)
    again = RandomizedSearchCV(_net(), space, random_state=0, **kw).fit(*data)
    other = RandomizedSearchCV(_net(), space, random_state=1, **kw).fit(*data)
    assert first.n_fold_epochs_ == other.n_fold_epochs_ == 2 * 2 * 3 and again.n_fold_epochs_ == 0
    np.testing.assert_array_equal(again.cv_results_["mean_test_score"], first.cv_results_["mean_test_score"])


def test_a_fit_leaves_the_callers_random_state_as_it_was(tmp_path, data):
    """A fit is seeded by the search, and puts the caller's torch random state back: after a search the
    draws follow the caller's seed (they were the same whatever it was). Scoring still draws from it,
    as skorch's predictions do (each DataLoader takes a seed)."""
    torch.manual_seed(123)
    before = torch.get_rng_state()
    continuing(_net(), tmp_path, 0, 1).fit(*data)
    assert torch.equal(torch.get_rng_state(), before)
    draws = []
    for seed in (123, 999):
        torch.manual_seed(seed)
        RandomizedSearchCV(_net(), {"lr": [0.05, 0.1]}, n_iter=2, cv=2, random_state=0, n_jobs=1).fit(*data)
        draws.append(torch.rand(1).item())
    assert draws[0] != draws[1]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_fit_on_a_gpu_leaves_the_callers_cuda_random_state(tmp_path, data):
    """A fit seeds itself with torch.manual_seed, which reseeds every GPU too: only the CPU's state was put
    back, so the caller's CUDA draws changed."""
    torch.cuda.manual_seed_all(1234)
    before = torch.cuda.get_rng_state_all()
    _fits(_net(device="cuda"), tmp_path / "gpu", data, 1, 3)
    assert all(torch.equal(a, b) for a, b in zip(torch.cuda.get_rng_state_all(), before, strict=True))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_continued_fit_on_a_gpu_is_the_straight_fit(tmp_path, data):
    """The state keeps the net's own GPU's random state (every GPU's was kept, and put back whole, which a
    machine with fewer GPUs refused); dropout draws on the GPU go on as in a straight fit."""
    straight, _ = _fits(_net(device="cuda", module__act=nn.Dropout(0.3)), tmp_path / "straight", data, 3)
    continued, trained = _fits(_net(device="cuda", module__act=nn.Dropout(0.3)), tmp_path / "continued", data, 1, 3)
    assert trained == [1, 2]
    for mine, theirs in zip(_weights(continued), _weights(straight), strict=True):
        assert torch.equal(mine, theirs)



_PRESSED = []  # once per test: the callback's state is not its parameters, so both fits are one fit


class _CtrlC(Callback):
    """A Ctrl-C in the middle of epoch 2 (a real SIGINT to this process), once."""

    def on_batch_end(self, net, **kwargs):
        if not _PRESSED and len(net.history) == 2 and len(net.history[-1]["batches"]) == 3:
            _PRESSED.append(True)
            os.kill(os.getpid(), signal.SIGINT)


def test_a_ctrl_c_stops_the_search_and_keeps_no_fit_it_cut_short(data, tmp_path):
    """skorch swallows a Ctrl-C: the search went on, and the cut fit was kept as done, its epoch half
    trained; every later fit with that storage restored it, under a score no whole fit earned."""
    _PRESSED.clear()
    made = continuing(_net(callbacks=[("ctrl_c", _CtrlC())]), tmp_path, 0, 1)
    with pytest.raises(KeyboardInterrupt):
        clone(made).set_params(max_epochs=3).fit(*data)
    assert _PRESSED and not list(tmp_path.glob("states/**/*.pt")) and not (tmp_path / EPOCHS_LOG).exists()
    whole = clone(made).set_params(max_epochs=3).fit(*data)  # the same fit: trained anew, whole
    assert len(whole.history) == 3 and "dur" in whole.history[-1] and trained_epochs(tmp_path) == [3]


def test_a_fit_of_edited_code_is_a_new_fit_and_a_comment_is_no_edit(data, tmp_path, monkeypatch):
    """Only the class's name made the fit: a module edited between two fits with one storage restored the old
    code's weights into the new code (scores neither code earned), or failed every fit on their shapes; a class
    redefined in a notebook cell did the same. The seed stays the parameters': an edit changes only the code."""
    import importlib

    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "door_net.py").write_text("from torch import nn\n\n\nclass Net(nn.Module):\n    def __init__(self):\n"
                                        "        super().__init__()\n        self.layers = nn.Sequential(nn.Linear(64, "
                                        "8), nn.ReLU(), nn.Linear(8, 10))\n\n    def forward(self, x):\n"
                                        "        return self.layers(x)\n")
    monkeypatch.syspath_prepend(str(folder))
    module = importlib.import_module("door_net")

    def fit(cls):
        made = continuing(_net().set_params(module=cls), tmp_path / "storage", 0, 1)
        return clone(made).set_params(max_epochs=2).fit(*data)

    first = fit(module.Net)
    assert fit(module.Net) is not None and trained_epochs(tmp_path / "storage") == [2, 0]  # the same code: restored
    source = (folder / "door_net.py").read_text()
    (folder / "door_net.py").write_text("# a comment\n" + source.replace("from torch import nn\n", "from torch import nn  # torch's\n\n"))
    fit(importlib.reload(module).Net)
    assert trained_epochs(tmp_path / "storage") == [2, 0, 0]  # comments and layout are not the code
    (folder / "door_net.py").write_text(source.replace("nn.ReLU()", "nn.Tanh()"))
    fit(module.Net)  # the class as imported (ReLU) trains: its states are not filed under the edited file's code
    edited = fit(importlib.reload(module).Net)
    assert trained_epochs(tmp_path / "storage") == [2, 0, 0, 2, 2]  # trained anew, by the edited code
    assert isinstance(edited.module_.layers[1], nn.Tanh) and fit_key(edited) == fit_key(first)

    cells = [compile(f"class Cell(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                     f"        self.layers = nn.Sequential(nn.Linear(64, 8), nn.{act}(), nn.Linear(8, 10))\n\n"
                     "    def forward(self, x):\n        return self.layers(x)\n", "<cell>", "exec")
             for act in ("ReLU", "Sigmoid")]
    classes = []
    for cell in cells:  # a notebook's cell run, edited, run again: one name, two codes
        space = {"nn": nn, "__name__": "__main__"}
        exec(cell, space)
        classes.append(space["Cell"])
    fit(classes[0]), fit(classes[1])
    assert trained_epochs(tmp_path / "storage")[-2:] == [2, 2]


def _halving(storage, **net):
    from hpsearch import HalvingRandomSearchCV

    return HalvingRandomSearchCV(_net(**net), {"lr": [0.05, 0.1, 0.2, 0.4]}, n_candidates=4, factor=2,
                                 min_resources=1, max_resources=2, cv=2, random_state=0, storage=storage)


def test_a_storage_that_cannot_keep_a_state_scores_every_fit_all_the_same(data, tmp_path):
    """A full disk failed each fit whose state it could not write: its candidate scored NaN, and halving
    promoted worse ones. A state is a cache: the fits are scored, said once, and a survivor trains from scratch
    (the same result)."""
    good = _halving(tmp_path / "good").fit(*data)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "states").write_text("")  # no folder can be made there: as a full disk, for any user
    for _ in range(2):  # a second search in the same process says it again
        with pytest.warns(RuntimeWarning, match="storage .*full: this fit's state is not kept .*; a survivor of it "
                                                r"trains from scratch at the next budget \(the same result, more "
                                                r"epochs\)"):
            kept_none = _halving(tmp_path / "full").fit(*data)
        np.testing.assert_array_equal(kept_none.cv_results_["mean_test_score"], good.cv_results_["mean_test_score"])
        assert kept_none.best_params_ == good.best_params_ and kept_none.n_fold_epochs_ > good.n_fold_epochs_


@pytest.mark.parametrize("warm_start", [False, True])
def test_a_state_the_net_cannot_take_is_said_and_trained_anew(data, tmp_path, capsys, warm_start):
    """A state of the right owner whose tensors no longer fit the net failed its candidate on every run; with
    warm_start, what the restore copied before it failed was trained on."""
    good = _halving(tmp_path / "fresh", warm_start=warm_start).fit(*data)
    _halving(tmp_path / "st", warm_start=warm_start).fit(*data)
    state = next(p for p in (tmp_path / "st").glob("states/**/2.pt"))
    payload = torch.load(state, weights_only=True)
    name = next(iter(payload["module"]))
    payload["module"][name] = torch.zeros(3)
    torch.save(payload, state)
    again = _halving(tmp_path / "st", warm_start=warm_start).fit(*data)
    assert f"{state} cannot be restored into this net (RuntimeError: Error(s) in loading state_dict for Net: " \
           "size mismatch for" in capsys.readouterr().err
    np.testing.assert_array_equal(again.cv_results_["mean_test_score"], good.cv_results_["mean_test_score"])


@pytest.mark.parametrize("storage, said", [
    ("", "storage '' is empty; name a folder for the fits' states, or storage=None for a temporary one"),
    ("a_file", "storage {tmp}/a_file is a file, not a folder; pass a folder you can write to"),
    ("run/states", "storage {tmp}/run/states is in the run folder {tmp}/run of hpsearch search, whose trials a "
                   "search estimator does not read; give the fits' states a folder of their own"),
])
def test_a_storage_that_is_no_folder_of_its_own_is_one_line(data, tmp_path, storage, said):
    from hpsearch.errors import UsageError

    (tmp_path / "a_file").write_text("")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "trials.db").write_bytes(b"")
    (tmp_path / "run" / "settings.json").write_text("{}")
    with pytest.raises(UsageError, match="^" + re.escape(said.format(tmp=tmp_path))):
        _halving(str(tmp_path / storage) if storage else storage).fit(*data)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "trials.db").write_bytes(b"")  # your own Optuna study beside your notebook: no run
    assert _halving(str(tmp_path / "mine" / "door")).set_params(n_candidates=2).fit(*data).n_fold_epochs_ > 0


class _StopMidEpoch(Callback):
    """A callback of the user's that ends training in the middle of epoch 2, as skorch lets one (a time budget)."""

    def on_batch_end(self, net, **kwargs):
        if len(net.history) == 2 and len(net.history[-1]["batches"]) == 3:
            raise KeyboardInterrupt


def test_a_fit_your_callback_ends_early_is_a_fit_not_a_ctrl_c(data, tmp_path):
    made = continuing(_net(callbacks=[("stop", _StopMidEpoch())]), tmp_path, 0, 1)
    fitted = clone(made).set_params(max_epochs=3).fit(*data)  # it stopped the search as a Ctrl-C would
    assert len(fitted.history) == 2 and trained_epochs(tmp_path) == [2]
