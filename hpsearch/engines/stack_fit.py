"""The batched engine: many MLP (config, fold) models trained at once as one stack (``--engine batched``;
on the CPU a stack is one model, trained without skorch's per-batch Python).

What it keeps from the skorch engine (``make_net`` + ``evaluate_config``): the configs, the folds,
each trial's torch seed (so the same initial weights: ``MLP`` built right after
``torch.manual_seed(seed)``, as ``SeededNet.initialize`` does), the internal validation split of
each training fold (skorch's own ``ValidSplit(5, stratified=True)``), ``EarlyStopping(patience)``'s
rule (valid_loss, threshold 1e-4 relative), max_epochs, batch size, CrossEntropyLoss, LeakyReLU,
dropout, Adam/RMSprop with weight decay as torch applies it, the score (sklearn's ``log_loss`` /
accuracy on the held-out fold's softmax probabilities) and "diverged: ..." failures, per model.

What differs: the random streams. Each model shuffles its own training fold with its own
``numpy`` generator (seeded by trial seed and fold, so its batch order does not depend on which
stack it is in), and dropout masks come from one generator per stack. So scores agree with the
skorch engine's statistically (same distribution), not bit for bit.

How: the data live on the device once; each step gathers every model's batch through an index
table (``X[table]`` -> ``(models, batch, features)``), runs ``MLPStack`` (``torch.baddbmm`` per
layer) and one fused optimizer update. A model that stops early or diverges is scored and leaves
the stack. Models are grouped by depth and batch size and sorted by width, so a chunk pads little.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from skorch.dataset import ValidSplit

from ..jobs.resident import resident
from ..tasks import VALID_SPLITS, few_members_quiet
from ..training.models.mlp import MLP
from ..training.models.user import is_user_model
from .stack import OPTIMIZER_BETAS, MLPStack

__all__ = ["FitSpec", "FitOutcome", "train_stack", "batchable", "unbatchable_reason", "to_net", "valid_split",
           "initial_module", "evaluate"]

THRESHOLD = 1e-4  # skorch EarlyStopping's default, threshold_mode="rel"


@dataclass
class FitSpec:
    """One model of a stack: its config, initial weights' seed, batch-order seed and data indices."""

    config: dict
    seed: int
    order_seed: int | tuple
    train: np.ndarray
    valid: np.ndarray | None = None
    test: np.ndarray | None = None
    module: MLP | None = None  # the initial weights; built from ``seed`` when None
    resume: dict | None = None  # a continuation state (``FitOutcome.continuation``) to go on from


@dataclass
class FitOutcome:
    """What training one model of a stack produced."""

    epochs: int = 0
    train_loss: list[float] = field(default_factory=list)
    valid_loss: list[float] = field(default_factory=list)
    proba: np.ndarray | None = None
    state_dict: dict | None = None
    error: str | None = None
    continuation: dict | None = None  # where it stopped, to go on from (``train_stack(continuation=True)``)


def batchable(config: dict) -> bool:
    """Whether the batched engine can train ``config`` (else the skorch engine does)."""
    return unbatchable_reason(config) is None


def unbatchable_reason(config: dict) -> str | None:
    """Why the batched engine cannot train ``config`` (the skorch engine does), or None."""
    if is_user_model(config.get("model")):
        return f"model {config['model']!r} is your own module (the batched engine stacks only its own MLPs)"
    if config.get("model", "mlp") != "mlp":
        return f"model {config['model']!r} (only MLPs are batched)"
    if config.get("optimizer", "adam") not in OPTIMIZER_BETAS or config.get("momentum"):
        return "optimizer other than adam or rmsprop without momentum"
    if float(config.get("negative_slope", 0.01)) != 0.01:
        return "negative_slope other than 0.01"
    if config.get("head", "softmax") != "softmax":
        return f"head {config['head']!r} (the batched engine trains a softmax output)"
    if config.get("loss", "ce") != "ce":
        return f"loss {config['loss']!r} (the batched engine trains plain cross-entropy)"
    if config.get("schedule", "none") != "none":
        return f"schedule {config['schedule']!r} (the batched engine trains at a constant learning rate)"
    if config.get("augment", "none") != "none":
        return f"augment {config['augment']!r} (the batched engine does not augment)"
    return None


def initial_module(config: dict, seed: int, n_features: int, n_classes: int) -> MLP:
    """The ``MLP`` that a ``SeededNet(random_state=seed)`` starts from for ``config``."""
    torch.manual_seed(seed)
    return MLP(n_features, tuple(config.get("hidden", (100,))), n_classes, float(config.get("dropout", 0.0)))


def valid_split(train: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """skorch's ``ValidSplit(5, stratified=True)`` of the training fold ``train``: its indices."""
    labels = y[train]
    cv = ValidSplit(VALID_SPLITS, stratified=True).check_cv(labels)
    with few_members_quiet():
        inner, valid = next(iter(cv.split(np.arange(len(train)), labels)))
    return train[inner], train[valid]


def _padded_table(index_lists, device, width=None):
    """``(M, width)`` int64 indices (0-padded) and float32 weights (1 real, 0 padding)."""
    width = width or max(len(i) for i in index_lists)
    table = np.zeros((len(index_lists), width), dtype=np.int64)
    weight = np.zeros((len(index_lists), width), dtype=np.float32)
    for m, idx in enumerate(index_lists):
        table[m, :len(idx)] = idx
        weight[m, :len(idx)] = 1.0
    return torch.from_numpy(table).to(device), torch.from_numpy(weight).to(device)


def _rows(X: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """``X[table]`` (``(M, B, ...)`` for an ``(M, B)`` index table: images or labels) through one
    ``index_select``: the same values, several times faster on the CPU than advanced indexing."""
    return X.index_select(0, table.flatten()).view(*table.shape, *X.shape[1:])


@torch.no_grad()
def evaluate(stack, X, y, index_lists, eval_batch, want_proba=False):
    """Mean cross-entropy per model over its ``index_lists`` (and, optionally, probabilities)."""
    table, weight = _padded_table(index_lists, X.device)
    total = torch.zeros(len(stack), device=X.device)
    probas = []
    for start in range(0, table.shape[1], eval_batch):
        idx, w = table[:, start:start + eval_batch], weight[:, start:start + eval_batch]
        logits = stack.forward(_rows(X, idx))
        ce = F.cross_entropy(logits.flatten(0, 1), _rows(y, idx).flatten(), reduction="none").view_as(w)
        total += (ce * w).sum(1)
        if want_proba:
            probas.append(torch.softmax(logits, dim=-1).cpu())
    counts = torch.tensor([len(i) for i in index_lists], dtype=torch.float32, device=X.device)
    losses = (total / counts).cpu().numpy()
    if not want_proba:
        return losses, None
    proba = torch.cat(probas, dim=1).numpy()
    return losses, [proba[m, :len(idx)] for m, idx in enumerate(index_lists)]


def train_stack(specs: list[FitSpec], X, y, n_classes: int, *, device="cpu", max_epochs: int = 100,
                batch_size: int = 128, patience: int = 15, keep_states: bool = False,
                eval_batch: int = 2048, dropout_seed: int = 0, continuation: bool = False,
                on_epoch=None) -> list[FitOutcome]:
    """Train the models ``specs`` together; returns one ``FitOutcome`` per spec, in order.

    Parameters
    ----------
    specs : list of FitSpec
        All MLPs of one depth; widths, hyperparameters and folds may differ.
    X, y : arrays or tensors
        All the data (``X`` of shape ``(n, ...)``); specs index into them. Moved to ``device`` once.
    max_epochs, batch_size, patience : int
        As in ``make_net``; a config's own ``max_epochs`` overrides ``max_epochs``. With
        ``patience > 0`` each model stops when its ``valid`` loss has not improved by 1e-4
        (relative) for ``patience`` epochs, like skorch's ``EarlyStopping``.
    keep_states : bool
        Return each model's final weights as an ``MLP`` state_dict (see ``to_net``).
    continuation : bool
        Return in each outcome's ``continuation`` where the model stopped (weights, Adam/RMSprop
        moments, its batch-order generator, early stopping's counters, epochs): a ``FitSpec`` with
        that ``resume`` goes on from there. The models that resume must all have stopped at the
        same epoch (a rung's survivors), or have ended (early stopping: they are only scored).
        The weights and moments continue exactly. Dropout masks come from one generator per
        stack: a stack of one model (the CPU's chunks) owns it, so its state travels with the
        model and continuation is exact, dropout included; a wider stack's is seeded anew from
        ``dropout_seed`` and the epoch, so its masks differ from a straight run's (the same
        distribution, as the batched engine's masks always are).
    on_epoch : callable, optional
        ``on_epoch(epoch, stack, live)`` after every epoch's training step, ``live`` the specs still in
        the stack (in stack order); it may predict (``evaluate``), which draws nothing: the tabulated
        benchmarks score every epoch this way (``bench/_tables.py``).
    """
    device = torch.device(device)
    if isinstance(X, np.ndarray):  # on the device once per job (a view of X on the CPU), not per chunk
        X = resident(X, device)
    X = X.reshape(len(X), -1).to(device=device, dtype=torch.float32)
    y = torch.as_tensor(y).to(device=device, dtype=torch.int64)
    n_features = X.shape[1]
    modules = [_start_module(s, n_features, n_classes) for s in specs]
    stack = MLPStack(modules, [s.config for s in specs], device=device)
    rngs = [np.random.default_rng(s.order_seed) for s in specs]
    epochs_of = [int(s.config.get("max_epochs", max_epochs)) for s in specs]
    outcomes = [FitOutcome() for _ in specs]
    best = [math.inf] * len(specs)
    misses = [0] * len(specs)
    for i, spec in enumerate(specs):
        if spec.resume is not None:
            r = spec.resume
            stack.load_optimizer_state(i, r["optimizer"])
            rngs[i].bit_generator.state = r["order_rng"]
            best[i], misses[i] = r["best"], r["misses"]
            out = outcomes[i]
            out.epochs, out.train_loss, out.valid_loss = r["epochs"], list(r["train_loss"]), list(r["valid_loss"])
    ended = [i for i, s in enumerate(specs) if s.resume is not None
             and (s.resume["stopped"] or s.resume["epochs"] >= epochs_of[i])]
    going = {s.resume["epochs"] if s.resume is not None else 0 for i, s in enumerate(specs) if i not in ended}
    if len(going) > 1:
        raise ValueError(f"the models of a stack must go on from one epoch, got {sorted(going)}")
    start = going.pop() if going else 0
    generator = torch.Generator(device=device)
    own_generator = len(specs) == 1  # the model's own: its state is part of its continuation
    saved = specs[0].resume.get("dropout_rng") if own_generator and specs[0].resume is not None else None
    if saved is not None and saved["device"] == device.type:  # a CPU state does not fit a CUDA generator
        generator.set_state(saved["state"])
    else:
        generator.manual_seed(int(dropout_seed) + start)
    live = list(range(len(specs)))  # the specs still in the stack, in stack order
    use_valid = patience > 0

    def finish(positions):
        if continuation:
            for p in positions:
                i = live[p]
                out = outcomes[i]
                out.continuation = {
                    "module": stack.state_dict(p), "optimizer": stack.optimizer_state(p),
                    "order_rng": rngs[i].bit_generator.state, "best": best[i], "misses": misses[i],
                    "dropout_rng": {"device": device.type, "state": generator.get_state()} if own_generator else None,
                    "epochs": out.epochs, "stopped": bool(use_valid and misses[i] >= patience),
                    "train_loss": out.train_loss, "valid_loss": out.valid_loss}
        _finish(stack, X, y, [specs[live[p]] for p in positions], [outcomes[live[p]] for p in positions],
                positions, eval_batch, keep_states)

    if ended:  # ended at an earlier rung: scored as they are, never trained again
        finish(ended)
        stay = [p for p in range(len(live)) if p not in ended]
        live = [live[p] for p in stay]
        if live:
            stack.select(stay)
    for epoch in range(start + 1, max(epochs_of) + 1 if live else start + 1):
        lengths = np.array([len(specs[i].train) for i in live])
        steps = -(-lengths // batch_size)
        table, weight = _padded_table(
            [specs[i].train[rngs[i].permutation(len(specs[i].train))] for i in live], device,
            width=int(steps.max()) * batch_size)
        counts = weight.view(len(live), -1, batch_size).sum(2)  # (M, steps)
        loss_sum = torch.zeros(len(live), device=device)
        for s in range(int(steps.max())):
            idx = table[:, s * batch_size:(s + 1) * batch_size]
            w = weight[:, s * batch_size:(s + 1) * batch_size]
            logits = stack.forward(_rows(X, idx), train=True, generator=generator)
            ce = F.cross_entropy(logits.flatten(0, 1), _rows(y, idx).flatten(), reduction="none").view_as(w)
            count = counts[:, s]
            per_model = (ce * w).sum(1) / count.clamp(min=1)
            per_model.sum().backward()
            stack.step(None if s < steps.min() else count > 0)
            loss_sum += per_model.detach() * count
        train_loss = (loss_sum.cpu().numpy() / lengths)
        if on_epoch is not None:
            on_epoch(epoch, stack, list(live))
        if use_valid:
            valid_loss, _ = evaluate(stack, X, y, [specs[i].valid for i in live], eval_batch)
        done, stay = [], []
        for pos, i in enumerate(live):
            out = outcomes[i]
            out.epochs = epoch
            out.train_loss.append(float(train_loss[pos]))
            if not math.isfinite(train_loss[pos]):
                out.error = f"diverged: training loss became {train_loss[pos]} at epoch {epoch}"
                continue  # leaves the stack, not scored
            stop = epoch >= epochs_of[i]
            if use_valid:
                loss = float(valid_loss[pos])
                out.valid_loss.append(loss)
                if loss < best[i]:
                    best[i], misses[i] = loss - THRESHOLD * loss, 0
                else:
                    misses[i] += 1
                stop = stop or misses[i] == patience
            (done if stop else stay).append(pos)
        if done:
            finish(done)
        if len(stay) < len(live):
            live = [live[p] for p in stay]
            if not live:
                break
            stack.select(stay)
    return outcomes


def _start_module(spec: FitSpec, n_features: int, n_classes: int) -> MLP:
    """The weights a model starts from: its initial module, or those of the state it resumes."""
    if spec.resume is None:
        return spec.module or initial_module(spec.config, spec.seed, n_features, n_classes)
    module = initial_module(spec.config, spec.seed, n_features, n_classes)
    module.load_state_dict(spec.resume["module"])
    return module


def _finish(stack, X, y, specs, outcomes, positions, eval_batch, keep_states):
    """Score the stopped models on their test indices and keep their weights if asked."""
    if keep_states:
        for out, pos in zip(outcomes, positions, strict=False):
            out.state_dict = stack.state_dict(pos)
    with_test = [(s, o, p) for s, o, p in zip(specs, outcomes, positions, strict=False) if s.test is not None]
    if not with_test:
        return
    sub = _substack(stack, [p for _, _, p in with_test])
    _, probas = evaluate(sub, X, y, [s.test for s, _, _ in with_test], eval_batch, want_proba=True)
    for (_, out, _), proba in zip(with_test, probas, strict=False):
        out.proba = proba


def _substack(stack: MLPStack, positions: list[int]) -> MLPStack:
    """A view of some models of ``stack`` for evaluation (no optimizer state)."""
    sub = MLPStack.__new__(MLPStack)
    sub.__dict__.update(stack.__dict__)
    idx = torch.as_tensor(positions, dtype=torch.int64, device=stack.device)
    sub.params = [p.detach().index_select(0, idx) for p in stack.params]
    sub.keep = stack.keep.index_select(0, idx)
    return sub


def to_net(outcome: FitOutcome, config: dict, n_features: int, n_classes: int, **make_net_kwargs):
    """Model ``outcome`` (trained with ``keep_states=True``) as a fitted-like ``SeededNet``."""
    from ..training.net import make_net

    if outcome.state_dict is None:
        raise ValueError("this outcome holds no weights: train with keep_states=True")
    net = make_net(config, n_features, n_classes, **make_net_kwargs)
    net.initialize()
    net.module_.load_state_dict(outcome.state_dict)
    return net
