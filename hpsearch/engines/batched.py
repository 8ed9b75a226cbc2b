"""The batched engine: many MLP configs x folds trained at once as one stack (``--engine batched``).

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
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from joblib import delayed
from skorch.dataset import ValidSplit

from ..errors import DivergedError, UsageError
from ..evaluate import CVResult, resident, score_probabilities, threads_per_job
from ..models import MLP
from .stack import OPTIMIZER_BETAS, MLPStack

__all__ = ["FitSpec", "FitOutcome", "train_stack", "batchable", "plan_chunks", "evaluate_batched",
           "to_net", "valid_split", "initial_module"]

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


@dataclass
class FitOutcome:
    """What training one model of a stack produced."""

    epochs: int = 0
    train_loss: list[float] = field(default_factory=list)
    valid_loss: list[float] = field(default_factory=list)
    proba: np.ndarray | None = None
    state_dict: dict | None = None
    error: str | None = None


def batchable(config: dict) -> bool:
    """Whether the batched engine can train ``config`` (else the skorch engine does)."""
    return (config.get("model", "mlp") == "mlp"
            and config.get("optimizer", "adam") in OPTIMIZER_BETAS
            and not config.get("momentum")
            and float(config.get("negative_slope", 0.01)) == 0.01)


def initial_module(config: dict, seed: int, n_features: int, n_classes: int) -> MLP:
    """The ``MLP`` that a ``SeededNet(random_state=seed)`` starts from for ``config``."""
    torch.manual_seed(seed)
    return MLP(n_features, tuple(config.get("hidden", (100,))), n_classes, float(config.get("dropout", 0.0)))


def valid_split(train: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """skorch's ``ValidSplit(5, stratified=True)`` of the training fold ``train``: its indices."""
    labels = y[train]
    cv = ValidSplit(5, stratified=True).check_cv(labels)
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
def _evaluate(stack, X, y, index_lists, eval_batch, want_proba=False):
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
                eval_batch: int = 2048, dropout_seed: int = 0) -> list[FitOutcome]:
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
    """
    device = torch.device(device)
    if isinstance(X, np.ndarray):  # on the device once per job (a view of X on the CPU), not per chunk
        X = resident(X, device)
    X = X.reshape(len(X), -1).to(device=device, dtype=torch.float32)
    y = torch.as_tensor(y).to(device=device, dtype=torch.int64)
    n_features = X.shape[1]
    modules = [s.module or initial_module(s.config, s.seed, n_features, n_classes) for s in specs]
    stack = MLPStack(modules, [s.config for s in specs], device=device)
    generator = torch.Generator(device=device)
    generator.manual_seed(int(dropout_seed))
    rngs = [np.random.default_rng(s.order_seed) for s in specs]
    epochs_of = [int(s.config.get("max_epochs", max_epochs)) for s in specs]
    outcomes = [FitOutcome() for _ in specs]
    best = [math.inf] * len(specs)
    misses = [0] * len(specs)
    live = list(range(len(specs)))  # the specs still in the stack, in stack order
    use_valid = patience > 0
    for epoch in range(1, max(epochs_of) + 1):
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
        if use_valid:
            valid_loss, _ = _evaluate(stack, X, y, [specs[i].valid for i in live], eval_batch)
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
            _finish(stack, X, y, [specs[live[p]] for p in done], [outcomes[live[p]] for p in done],
                    done, eval_batch, keep_states)
        if len(stay) < len(live):
            live = [live[p] for p in stay]
            if not live:
                break
            stack.select(stay)
    return outcomes


def _finish(stack, X, y, specs, outcomes, positions, eval_batch, keep_states):
    """Score the stopped models on their test indices and keep their weights if asked."""
    if keep_states:
        for out, pos in zip(outcomes, positions, strict=False):
            out.state_dict = stack.state_dict(pos)
    with_test = [(s, o, p) for s, o, p in zip(specs, outcomes, positions, strict=False) if s.test is not None]
    if not with_test:
        return
    sub = _substack(stack, [p for _, _, p in with_test])
    _, probas = _evaluate(sub, X, y, [s.test for s, _, _ in with_test], eval_batch, want_proba=True)
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
    from ..estimator import make_net

    if outcome.state_dict is None:
        raise ValueError("this outcome holds no weights: train with keep_states=True")
    net = make_net(config, n_features, n_classes, **make_net_kwargs)
    net.initialize()
    net.module_.load_state_dict(outcome.state_dict)
    return net


def plan_chunks(configs: dict[int, dict], n_folds: int, batch_size: int, max_models: int) -> list[list[int]]:
    """Group config indices into chunks of at most ``max_models`` models (configs x folds).

    A chunk holds one depth and one batch size; configs are sorted by widths so that neighbours
    (and so a chunk's padding) are alike; every config's folds stay in one chunk.
    """
    per_chunk = max(1, max_models // n_folds)
    groups: dict[tuple, list[int]] = {}
    for index, config in configs.items():
        hidden = tuple(config.get("hidden", (100,)))
        groups.setdefault((len(hidden), int(config.get("batch_size", batch_size))), []).append(index)
    chunks = []
    for key in sorted(groups):
        members = sorted(groups[key], key=lambda i: (tuple(configs[i].get("hidden", (100,))), i))
        chunks += [members[k:k + per_chunk] for k in range(0, len(members), per_chunk)]
    return chunks


def auto_models_per_chunk(configs: dict[int, dict], n_features: int, n_classes: int, batch_size: int,
                          device: str, n_folds: int, eval_batch: int) -> int:
    """Models per chunk: on the CPU one config's folds (equal shapes, no padding, cache-sized);
    on a GPU as many as half its free memory holds, at most 256 (more pads more: widths differ)."""
    if not str(device).startswith("cuda"):
        return n_folds
    hidden = [tuple(c.get("hidden", (100,))) for c in configs.values()]
    widest = [n_features, *[max(max(h) for h in hidden)] * max(len(h) for h in hidden), n_classes]
    params = sum(a * b + b for a, b in zip(widest[:-1], widest[1:], strict=False))
    activations = (batch_size * 4 + eval_batch) * sum(widest)
    per_model = 4 * (6 * params + 2 * activations)
    free, _ = torch.cuda.mem_get_info(torch.device(device))
    return int(max(n_folds, min(256, free // 2 // per_model)))


def _run_chunk(configs, seeds, X, y, folds, n_classes, settings, threads=None):
    """Train one chunk (configs x folds) and score each fold; returns ``[(index, CVResult)]``."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        start = time.perf_counter()
        splits = [valid_split(train, y) if settings["patience"] > 0 else (train, None)
                  for train, _ in folds]
        specs, owners = [], []
        n_features = int(np.prod(X.shape[1:]))
        for index, config in configs.items():
            module = initial_module(config, seeds[index], n_features, n_classes)
            for k, ((inner, valid), (_, test)) in enumerate(zip(splits, folds, strict=False)):
                specs.append(FitSpec(config, seeds[index], (seeds[index], k), inner, valid, test, module))
                owners.append(index)
        outcomes = train_stack(specs, X, y, n_classes, device=settings["device"],
                               max_epochs=settings["max_epochs"], batch_size=settings["batch_size"],
                               patience=settings["patience"], eval_batch=settings["eval_batch"],
                               dropout_seed=seeds[owners[0]])
        per_model = (time.perf_counter() - start) / len(specs)
        return [(index, _cv_result([o for o, w in zip(outcomes, owners, strict=False) if w == index],
                                   [s.test for s, w in zip(specs, owners, strict=False) if w == index],
                                   y, n_classes, settings["scoring"], per_model))
                for index in configs]
    finally:
        torch.set_num_threads(previous)


def _cv_result(outcomes, tests, y, n_classes, scoring, fit_time) -> CVResult:
    result = CVResult()
    for out, test in zip(outcomes, tests, strict=False):
        if out.error is not None:
            return CVResult(error=out.error)
        try:
            score, accuracy = score_probabilities(y[test], out.proba, np.arange(n_classes), scoring)
        except DivergedError as exc:
            return CVResult(error=f"diverged: {exc}")
        result.test_accuracies.append(accuracy)
        result.test_scores.append(score)
        result.fit_times.append(fit_time)
        result.epochs.append(out.epochs)
    return result


def evaluate_batched(configs: dict[int, dict], seeds: dict[int, int], X, y, folds, n_classes: int, *,
                     device="cpu", max_epochs=100, batch_size=128, patience=15, scoring="neg_log_loss",
                     max_models_per_chunk: int | None = None, parallel=None, n_jobs: int = 1,
                     eval_batch: int | None = None):
    """Cross-validate many MLP configs at once; yields ``[(index, CVResult), ...]`` per chunk.

    Parameters
    ----------
    configs : dict
        ``{trial index: config}``, every one ``batchable``.
    seeds : dict
        ``{trial index: torch seed}`` (the skorch engine's ``random_state``).
    folds : list of (train_idx, test_idx)
        As ``make_folds`` gives them.
    max_models_per_chunk : int, optional
        Models (configs x folds) trained together; default: ``auto_models_per_chunk``.
    parallel : joblib.Parallel, optional
        On the CPU, chunks run in it on ``n_jobs`` jobs, each with cores // jobs threads; with
        ``return_as="generator_unordered"`` (as the search uses) each chunk is yielded as soon as
        it is done, with a list-returning ``Parallel`` all at the end. On a GPU chunks run one
        after another in this process.
    """
    bad = [i for i, c in configs.items() if not batchable(c)]
    if bad:
        raise UsageError(f"the batched engine trains MLPs with adam or rmsprop (no momentum); "
                         f"trials {bad[:5]} are not; run them with --engine skorch")
    if not configs:
        return
    on_gpu = str(device).startswith("cuda")
    eval_batch = eval_batch or (4096 if on_gpu else 1024)
    if max_models_per_chunk is None:
        max_models_per_chunk = auto_models_per_chunk(configs, int(np.prod(X.shape[1:])), n_classes,
                                                     batch_size, device, len(folds), eval_batch)
    settings = dict(device=device, max_epochs=max_epochs, batch_size=batch_size, patience=patience,
                    scoring=scoring, eval_batch=eval_batch)
    chunks = plan_chunks(configs, len(folds), batch_size, max_models_per_chunk)

    def task(chunk, threads=None):
        return _run_chunk({i: configs[i] for i in chunk}, seeds, X, y, folds, n_classes, settings, threads)

    if on_gpu or parallel is None or n_jobs <= 1:
        for chunk in chunks:
            yield task(chunk)
        return
    # with a Parallel(return_as="generator_unordered") each chunk comes back as soon as it is done
    # and its job takes the next one (no wave waits for its slowest chunk)
    threads = threads_per_job(min(n_jobs, len(chunks)))  # the jobs that will be busy
    yield from parallel(delayed(_run_chunk)({i: configs[i] for i in chunk}, seeds, X, y, folds,
                                            n_classes, settings, threads) for chunk in chunks)
