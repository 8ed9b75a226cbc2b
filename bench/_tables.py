"""Tabulated benchmarks: every config's held-out score on every fold after every epoch, so that a
search strategy can be replayed on them instead of run (the way NAS-Bench, LCBench and HPOBench
tables work).

A table is one compressed ``.npz`` file:

- ``score`` float64 ``(N, folds, epochs)``: the held-out neg-log-loss (hpsearch's ranking score) of
  config ``i`` on fold ``k`` after epoch ``e + 1``; NaN from the epoch a fit diverged. The float64 a
  real run computes, not float16: a replay must score and rank exactly as a real run does (float16
  ties configs a run tells apart), and the digits table is still ~3 MB;
- ``correct`` uint16 ``(N, folds, epochs)``: its correct held-out predictions (``held`` per fold);
- ``test_correct`` uint16 ``(N, folds, epochs)``: the fold net's correct predictions on the test set
  (``n_test`` images): the test accuracy of a config is the mean over its fold nets. Only at the
  epochs ``test_epochs`` lists (every epoch unless the build named fewer: on the Fashion slice the
  10,000 test images cost a fifth of a fit per epoch, and a replay reads them at its full budget);
- ``epoch_s`` float32 ``(N, folds)``: seconds per epoch; ``macs`` ``(N,)``: multiply-adds per image;
- ``configs`` and ``provenance`` (JSON text): the configs (``ParamGenerator(space, seed)``'s first N)
  and how the table was made (commit, seed, engine, data, machine, date; a table grown from a smaller
  one holds that one's provenance under ``grown_from``: its rows were fitted there).

Every fit is the one ``hpsearch search --patience 0`` makes on the engine the table names: the
batched engine's (a one-model stack per (config, fold), as on the CPU, seeded from
``trial_seed(seed, i)``) or the skorch engine's (``make_net(config, ..., random_state=trial_seed(seed,
i))``), on ``make_folds(y, cv, seed)``, scored after each epoch by a hook that only predicts (torch's
random state put back after it: a skorch predict's DataLoader draws a seed). So the score at epoch
``e`` is the score of a run whose budget is ``e`` (continuation is exact on both engines, dropout
included): a strategy replayed on the table costs and chooses what a real run with ``--patience 0``
on that engine would (tested: ``tests/bench/test_replay.py``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import mlp_macs
from joblib import Parallel, delayed
from skorch.callbacks import Callback

from hpsearch.engines.cv import make_folds, score_probabilities
from hpsearch.jobs.resources import torch_threads
from hpsearch.space.search_space import ParamGenerator, load_space
from hpsearch.training.net import make_net
from hpsearch.training.seeds import trial_seed

__all__ = ["Table", "build_table", "load_table", "fold_fit", "batched_fold_fit"]

SPACE = "mlp_mnist"


def _wanted(test_epochs, epoch: int) -> bool:
    """Whether the test set is scored after ``epoch`` (``None``: after every epoch)."""
    return test_epochs is None or epoch in test_epochs


class EpochScores(Callback):
    """After every epoch: the held-out score and correct count, the test set's correct count."""

    def __init__(self, X_held, y_held, X_test, y_test, test_epochs=None):
        self.X_held, self.y_held, self.X_test, self.y_test = X_held, y_held, X_test, y_test
        self.test_epochs = test_epochs
        self.rows: list[tuple[float, int, int]] = []

    def on_epoch_end(self, net, **kwargs):
        rng = torch.get_rng_state()  # a predict's DataLoader draws a seed: the fit's next epoch must not see it
        try:
            proba = net.predict_proba(self.X_held)
            test = int(np.sum(net.predict(self.X_test) == self.y_test)) \
                if _wanted(self.test_epochs, len(self.rows) + 1) else 0
        finally:
            torch.set_rng_state(rng)
        if not np.all(np.isfinite(proba)):
            self.rows.append((np.nan, 0, 0))
            return
        score, _ = score_probabilities(self.y_held, proba, net.classes_, "neg_log_loss")
        self.rows.append((score, int(np.sum(net.classes_[proba.argmax(1)] == self.y_held)), test))


def fold_fit(config: dict, index: int, k: int, dataset, folds, seed: int, epochs: int, threads: int = 1,
             device: str = "cpu", test_epochs=None):
    """Config ``index`` on fold ``k`` for ``epochs`` epochs, scored after each: ``(index, k, rows, s/epoch)``."""
    train, held = folds[k]
    scores = EpochScores(dataset.X_train[held], dataset.y_train[held], dataset.X_test, dataset.y_test, test_epochs)
    with torch_threads(threads):
        net = make_net(config, dataset.n_features, dataset.n_classes, image_shape=dataset.image_shape,
                       max_epochs=epochs, patience=0, random_state=trial_seed(seed, index), task=dataset.task,
                       device=device, callbacks=[("table_scores", scores)])
        start = time.perf_counter()
        net.fit(dataset.X_train[train], dataset.y_train[train])
        seconds = (time.perf_counter() - start) / max(1, len(net.history))
    rows = scores.rows + [(np.nan, 0, 0)] * (epochs - len(scores.rows))  # a fit that stopped (diverged)
    return index, k, rows, seconds


def batched_fold_fit(config: dict, index: int, k: int, X_all, y_all, n_train: int, folds, seed: int, epochs: int,
                     n_classes: int, device: str = "cpu", threads: int = 1, test_epochs=None):
    """``fold_fit`` on the batched engine, as a CPU run trains a (config, fold): a stack of one model
    (``hpsearch.engines.batched_engine._run_chunk``'s seeds), its held-out fold and the test images
    (rows ``n_train:`` of ``X_all``) scored after every epoch by the engine's own ``evaluate``."""
    from hpsearch.engines.batched_engine import DROPOUT_FOLD_STRIDE
    from hpsearch.engines.stack_fit import FitSpec, evaluate, initial_module, train_stack
    from hpsearch.training.net import DEFAULT_BATCH_SIZE

    train, held = folds[k]
    tests = np.arange(n_train, len(y_all))
    fit_seed = trial_seed(seed, index)
    eval_batch = 4096 if str(device).startswith("cuda") else 1024  # the engine's
    rows, spent = [], [0.0]
    with torch_threads(threads):
        X = torch.as_tensor(X_all).reshape(len(X_all), -1).to(device)
        y = torch.as_tensor(y_all).to(device)

        def on_epoch(epoch, stack, live):
            start = time.perf_counter()
            _, (proba,) = evaluate(stack, X, y, [held], eval_batch, want_proba=True)
            test = 0
            if _wanted(test_epochs, epoch):
                _, (test_proba,) = evaluate(stack, X, y, [tests], eval_batch, want_proba=True)
                test = int(np.sum(test_proba.argmax(1) == y_all[tests]))
            if np.all(np.isfinite(proba)):
                score, _ = score_probabilities(y_all[held], proba, np.arange(n_classes), "neg_log_loss")
                rows.append((score, int(np.sum(proba.argmax(1) == y_all[held])), test))
            else:
                rows.append((np.nan, 0, 0))
            spent[0] += time.perf_counter() - start

        spec = FitSpec(config, fit_seed, (fit_seed, k), train, None, held,
                       initial_module(config, fit_seed, X.shape[1], n_classes))
        start = time.perf_counter()
        train_stack([spec], X, y, n_classes, device=device, max_epochs=epochs,
                    batch_size=int(config.get("batch_size", DEFAULT_BATCH_SIZE)), patience=0, eval_batch=eval_batch,
                    dropout_seed=fit_seed + DROPOUT_FOLD_STRIDE * k, on_epoch=on_epoch)
        seconds = (time.perf_counter() - start - spent[0]) / epochs
    rows += [(np.nan, 0, 0)] * (epochs - len(rows))
    return index, k, rows, seconds


class Table:
    """A table as arrays (see the module's text), with what a replay asks of it."""

    def __init__(self, arrays: dict):
        self.score = arrays["score"]
        self.correct, self.test_correct = arrays["correct"], arrays["test_correct"]
        self.held, self.n_test = arrays["held"].astype(np.float64), int(arrays["n_test"])
        self.epoch_s, self.macs = arrays["epoch_s"], arrays["macs"].astype(np.float64)
        self.test_epochs = set(arrays["test_epochs"].tolist()) if "test_epochs" in arrays else None
        self.configs = json.loads(str(arrays["configs"]))
        self.provenance = json.loads(str(arrays["provenance"]))
        self.n_configs, self.n_folds, self.max_epochs = self.score.shape

    def mean_score(self, index: int, epochs: int) -> float:
        """The config's mean CV score at ``epochs`` (NaN when a fold diverged), as a run's ``mean_test_score``."""
        folds = self.score[index, :, epochs - 1]
        return float(folds.mean()) if np.all(np.isfinite(folds)) else float("nan")

    def cv_accuracy(self, index: int, epochs: int) -> float:
        return float(np.mean(self.correct[index, :, epochs - 1] / self.held))

    def test_accuracy(self, index: int, epochs: int) -> float:
        if not _wanted(self.test_epochs, epochs):
            raise ValueError(f"this table scored the test set after epochs {sorted(self.test_epochs)} only, "
                             f"not {epochs}: replay with --max-epochs one of them, or rebuild with --test-epochs all")
        return float(np.mean(self.test_correct[index, :, epochs - 1]) / self.n_test)


def load_table(path) -> Table:
    with np.load(path, allow_pickle=False) as arrays:  # data only: no pickle from a file
        return Table({k: arrays[k] for k in arrays.files})


def _save(path: Path, arrays: dict) -> None:
    part = path.with_suffix(".writing.npz")
    np.savez_compressed(part, **arrays)
    os.replace(part, path)  # a crash leaves the last whole file


# what makes a fit: an earlier table's rows are kept only when its provenance says the same of each
SAME_FITS = ("engine", "dataset", "train_images", "test_images", "cv", "seed", "space", "device")


def _keep_earlier(path: Path, arrays: dict, configs: list[dict], shape: tuple, test_epochs,
                  provenance: dict) -> dict | None:
    """Copy the fits of an earlier table (or partial build) whose configs are a prefix of ``configs``
    (``ParamGenerator``'s draws are prefix-stable), whose folds, epochs and test epochs are the same and
    whose provenance names the same engine, data, folds, seed and device (``SAME_FITS``); return its
    provenance (``None`` if nothing was kept, said with the reason)."""
    with np.load(path, allow_pickle=False) as saved:
        earlier = json.loads(str(saved["configs"]))
        m = len(earlier)
        saved_tests = saved["test_epochs"].tolist() if "test_epochs" in saved.files else None
        same_fits = saved["score"].shape[1:] == shape[1:] and m <= shape[0] and earlier == configs[:m]
        made = json.loads(str(saved["provenance"]))
        other = [k for k in SAME_FITS if k in made and made[k] != provenance.get(k)]
        if not same_fits or saved_tests != test_epochs or other:
            why = (f"its {', '.join(f'{k} {made[k]}' for k in other)} {'differs' if len(other) == 1 else 'differ'}"
                   if other else
                   "its configs, folds, epochs or test epochs differ")
            print(f"{path}: not kept ({why}); every fit is made anew", file=sys.stderr)
            return None
        done = saved["done"] if "done" in saved.files else np.ones((m, shape[1]), bool)
        for key in ("score", "correct", "test_correct", "epoch_s"):
            arrays[key][:m] = saved[key]
        arrays["done"][:m] = done
        print(f"{path}: its {m} configs' fits are kept", file=sys.stderr)
        return made


def build_table(dataset, n: int, epochs: int, *, out: Path, provenance: dict, cv: int = 4, seed: int = 0,
                jobs: int = 2, device: str = "cpu", engine: str = "batched", progress=None,
                checkpoint_every: int = 200, test_epochs=None) -> Path:
    """Fit and score every (config, fold) of ``n`` configs on ``engine`` (``batched``: the batched
    engine's one-model stacks, as a CPU run trains them; ``skorch``: one skorch net each). Resumable
    and growable: the fits in ``out``'s partial file, or in a smaller table at ``out`` (the first
    configs of the same seed), are kept; only the others are fitted. ``test_epochs``: the epochs after
    which the test set is scored (``None``: after every epoch)."""
    out = Path(out)
    partial = out.with_suffix(".partial.npz")
    test_epochs = None if test_epochs is None else sorted({int(e) for e in test_epochs})
    configs = ParamGenerator(load_space(SPACE), seed).gen_values(n)
    folds = make_folds(dataset.y_train, cv, seed)
    shape = (n, cv, epochs)
    arrays = {"score": np.full(shape, np.nan, np.float64), "correct": np.zeros(shape, np.uint16),
              "test_correct": np.zeros(shape, np.uint16), "epoch_s": np.zeros((n, cv), np.float32),
              "done": np.zeros((n, cv), bool)}
    for earlier in (partial, out):  # a build cut short, or a smaller table of the same seed: its fits are kept
        if earlier.exists():
            kept = _keep_earlier(earlier, arrays, configs, shape, test_epochs, provenance)
            # rows fitted by an earlier build (maybe another machine or commit) keep its provenance; a
            # partial file is this same build cut short, so only what it had grown from carries over
            history = (kept or {}).get("grown_from") if earlier == partial else kept
            if history:
                provenance = {**provenance, "grown_from": history}
            if kept is not None:
                break
    todo = [(i, k) for i in range(n) for k in range(cv) if not arrays["done"][i, k]]
    meta = {"held": np.array([len(h) for _, h in folds]), "n_test": np.array(len(dataset.y_test)),
            "macs": np.array([float(mlp_macs([dataset.n_features, *c.get("hidden", []), dataset.n_classes]))
                              for c in configs]),
            "configs": np.array(json.dumps(configs)), "provenance": np.array(json.dumps(provenance))}
    if test_epochs is not None:
        meta["test_epochs"] = np.array(test_epochs)
    finished = 0
    with Parallel(n_jobs=jobs, return_as="generator_unordered") as parallel:
        if engine == "batched":
            X_all = np.concatenate([dataset.X_train, dataset.X_test])
            y_all = np.concatenate([dataset.y_train, dataset.y_test])
            tasks = (delayed(batched_fold_fit)(configs[i], i, k, X_all, y_all, len(dataset.y_train), folds, seed,
                                               epochs, dataset.n_classes, device, 1, test_epochs) for i, k in todo)
        else:
            tasks = (delayed(fold_fit)(configs[i], i, k, dataset, folds, seed, epochs, 1, device, test_epochs)
                     for i, k in todo)
        for index, k, rows, seconds in parallel(tasks):
            score, correct, test = zip(*rows, strict=True)
            arrays["score"][index, k] = score
            arrays["correct"][index, k], arrays["test_correct"][index, k] = correct, test
            arrays["epoch_s"][index, k], arrays["done"][index, k] = seconds, True
            finished += 1
            if progress is not None:
                progress(finished, len(todo))
            if finished % checkpoint_every == 0:
                _save(partial, {**arrays, **meta})
    final = {k: v for k, v in arrays.items() if k != "done"}
    _save(out, {**final, **meta})
    partial.unlink(missing_ok=True)
    return out

