"""bench/strategies.py's model-based peers, run for real (they cannot replay on a finite table):
Optuna's TPE with its successive-halving or Hyperband pruner, and DEHB (the ``dehb`` package:
differential evolution over Hyperband's brackets). Each trial trains its folds in lockstep in a
``FoldPool`` of worker processes, one epoch at a time, so a pruner can stop it after any epoch."""

from __future__ import annotations

import math
import multiprocessing
import time
import warnings

import numpy as np
import optuna
import torch
from _contest import CV, N_JOBS, SPACE, Bench, Outcome, compute_of, config_key

from hpsearch.engines.cv import make_folds, score_probabilities
from hpsearch.jobs.resources import threads_per_job
from hpsearch.space.optuna_bridge import stored_params, suggest_config
from hpsearch.space.search_space import load_space
from hpsearch.training.net import make_net
from hpsearch.training.seeds import trial_seed


def _fold_worker(conn, folds: dict, n_features: int, n_classes: int, threads: int) -> None:
    """One process owning some folds' nets; trains them one epoch per ``"epoch"`` command.

    Each fold keeps its own torch RNG state across epochs (restored before, saved after its
    ``partial_fit``, before scoring, whose DataLoader draws a seed), so e epochs here are exactly
    ``fit`` with ``max_epochs=e``: the same weights as hpsearch's nets of that config.
    """
    torch.set_num_threads(threads)
    data = {k: (torch.as_tensor(Xtr), torch.as_tensor(ytr), torch.as_tensor(Xte), yte)
            for k, (Xtr, ytr, Xte, yte) in folds.items()}
    nets: dict = {}
    while True:
        command, payload = conn.recv()
        if command == "close":
            conn.close()
            return
        if command == "start":
            config, random_state = payload
            nets = {k: {"net": make_net(config, n_features, n_classes, patience=0, random_state=random_state),
                        "rng": None, "error": None} for k in data}
            conn.send(True)
        elif command == "epoch":
            out = []
            for k, fold in nets.items():
                score = accuracy = math.nan
                if fold["error"] is None:
                    Xtr, ytr, Xte, yte = data[k]
                    try:
                        if fold["rng"] is not None:
                            torch.set_rng_state(fold["rng"])
                        fold["net"].partial_fit(Xtr, ytr, epochs=1)
                        fold["rng"] = torch.get_rng_state()
                        proba = fold["net"].predict_proba(Xte)
                        score, accuracy = score_probabilities(yte, proba, fold["net"].classes_, "neg_log_loss")
                    except Exception as exc:  # noqa: BLE001 - a diverged config is a result
                        fold["error"] = f"{type(exc).__name__}: {exc}"
                out.append((k, score, accuracy, len(fold["net"].history), fold["error"]))
            conn.send(out)


class FoldPool:
    """``jobs`` worker processes (spawned: torch and fork do not mix), fold k in worker k % jobs."""

    def __init__(self, X, y, folds, n_features, n_classes, jobs: int, threads: int):
        context = multiprocessing.get_context("spawn")
        self.conns, self.procs = [], []
        for j in range(jobs):
            owned = {k: (X[tr], y[tr], X[te], y[te]) for k, (tr, te) in enumerate(folds) if k % jobs == j}
            parent, child = context.Pipe()
            proc = context.Process(target=_fold_worker, args=(child, owned, n_features, n_classes, threads),
                                   daemon=True)
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)

    def start(self, config: dict, random_state: int) -> None:
        for conn in self.conns:
            conn.send(("start", (config, random_state)))
        for conn in self.conns:
            conn.recv()

    def epoch(self) -> list[tuple]:
        for conn in self.conns:
            conn.send(("epoch", None))
        return sorted(r for conn in self.conns for r in conn.recv())

    def close(self) -> None:
        for conn, proc in zip(self.conns, self.procs, strict=True):
            try:
                conn.send(("close", None))
            except (BrokenPipeError, OSError):
                pass
            proc.join(10)


def optuna_tpe_sha(bench: Bench, pruner: str = "sha", equal_compute: bool = False) -> Outcome:
    """Optuna's TPE with its successive-halving pruner (``sha``) or its ``HyperbandPruner``; with
    ``equal_compute`` the study stops once it has trained halving's fold-epochs (``_halving_fold_epochs``):
    its best complete trial then is what it found at equal compute, the same as the full study's at
    that point (trials run one at a time)."""
    outcome = Outcome(f"optuna-tpe-{pruner}")
    data = bench.dataset
    space = load_space(SPACE)
    pool = FoldPool(data.X_train, data.y_train, make_folds(data.y_train, CV, bench.seed), data.n_features,
                    data.n_classes, N_JOBS, threads_per_job(N_JOBS))
    try:
        pool.start({"hidden": [32]}, 0)  # warm the workers: imports and a first epoch, not timed
        pool.epoch()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(
            study_name=f"tpe-{pruner}-seed{bench.seed}",  # HyperbandPruner's brackets hash the name: reproducible
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=bench.seed, n_startup_trials=bench.n_startup),
            pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=bench.first_rung, reduction_factor=bench.factor)
            if pruner == "sha" else optuna.pruners.HyperbandPruner(
                min_resource=bench.first_rung, max_resource=bench.max_epochs, reduction_factor=bench.factor))
        for config in bench.configs[:min(bench.n_startup, bench.n)]:
            study.enqueue_trial(stored_params(space, config)[0])
        fold_epochs, compute = 0, 0.0
        spent = {}  # trial number -> fold-epochs trained when it ended
        equal = _halving_fold_epochs(bench)
        stop_at = equal if equal_compute else None

        def objective(trial: optuna.Trial) -> float:
            nonlocal fold_epochs, compute
            config = suggest_config(space, trial)  # hpsearch's own define-by-run encoding
            trial.set_user_attr("config", config)
            pool.start(config, trial_seed(bench.seed, trial.number))
            results = []
            try:
                for epoch in range(1, bench.max_epochs + 1):
                    results = pool.epoch()
                    errors = [r[4] for r in results if r[4]]
                    if errors:
                        trial.set_user_attr("error", errors[0])
                        return math.nan  # a FAIL trial, as hpsearch stores a diverged config
                    score, accuracy = float(np.mean([r[1] for r in results])), float(np.mean([r[2] for r in results]))
                    trial.set_user_attr("accuracy", accuracy)
                    trial.report(score, epoch)
                    if epoch < bench.max_epochs and trial.should_prune():
                        raise optuna.TrialPruned()
                return score
            finally:
                trained = sum(r[3] for r in results)
                fold_epochs += trained
                compute += compute_of(trained, config, data)
                spent[trial.number] = fold_epochs
                if stop_at is not None and fold_epochs >= stop_at:
                    trial.study.stop()  # after this trial

        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            study.optimize(objective, n_trials=bench.n)
        outcome.wall_s = time.perf_counter() - start
    finally:
        pool.close()
    outcome.fold_epochs, outcome.compute = float(fold_epochs), compute
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    best = study.best_trial
    outcome.config = best.user_attrs["config"]
    outcome.cv_score, outcome.cv_accuracy = float(best.value), float(best.user_attrs["accuracy"])
    outcome.budget = float(bench.max_epochs)
    outcome.full_budget = len(complete)
    outcome.full_scores = {config_key(t.user_attrs["config"]): float(t.value) for t in complete}
    states = [t.state.name for t in study.trials]
    outcome.note = ", ".join(f"{states.count(s)} {s.lower()}" for s in ("COMPLETE", "PRUNED", "FAIL")
                             if states.count(s)) + _incumbent_at(complete, spent, equal)
    return outcome


def _incumbent_at(complete: list, spent: dict, budget: float) -> str:
    """The best complete trial by then, when the study had trained ``budget`` fold-epochs (equal compute)."""
    done = [t for t in complete if spent[t.number] <= budget]
    if not done:
        return f"; none complete within halving's {budget:,.0f} fold-epochs"
    best = max(done, key=lambda t: (t.value, -t.number))
    return (f"; at halving's {budget:,.0f} fold-epochs: {len(done)} complete, the best trial {best.number} "
            f"CV acc {100 * best.user_attrs['accuracy']:.2f}%, neg-log-loss {best.value:.4f}")


def _halving_fold_epochs(bench: Bench) -> float:
    """The fold-epochs hpsearch's halving trained in this bench, else (halving not among the
    contenders) what it trains on the bench's settings with every fold (``--fold-racing off``)."""
    from hpsearch.strategies.halving import SuccessiveHalving

    if bench.halving_fold_epochs is not None:
        return bench.halving_fold_epochs
    plan = SuccessiveHalving(bench.n, bench.max_epochs, bench.seed, bench.factor, bench.min_epochs).plan()
    return sum(n * (epochs - before) * CV for (n, epochs), before in zip(plan, [0] + [e for _, e in plan],
                                                                          strict=False))


def _lab3_configspace(seed: int):
    """searches/mlp_mnist.toml in ConfigSpace's form; the decreasing second width as a share."""
    from ConfigSpace import Categorical, ConfigurationSpace, Float, Integer

    space = ConfigurationSpace(seed=seed)
    space.add([Integer("hidden_1", (51, 600)), Float("hidden_2_share", (0.0, 1.0)), Float("dropout", (0.0, 0.5)),
               Float("lr", (1e-4, 1e-1), log=True), Float("weight_decay", (1e-6, 1e-2), log=True),
               Categorical("optimizer", ["adam", "rmsprop"], weights=[0.8, 0.2])])
    return space


def _lab3_config(values: dict) -> dict:
    first = int(values["hidden_1"])
    second = min(first - 1, 50 + int(values["hidden_2_share"] * (first - 50)))
    return {"model": "mlp", "hidden": [first, second], "dropout": float(values["dropout"]), "lr": float(values["lr"]),
            "weight_decay": float(values["weight_decay"]), "optimizer": str(values["optimizer"])}


def dehb_search(bench: Bench) -> Outcome:
    """DEHB, asked and told until it has trained ``halving``'s fold-epochs; its incumbent at the
    full budget is the chosen config (see bench/strategies.py's text)."""
    from dehb import DEHB

    outcome = Outcome("dehb")
    data = bench.dataset
    budget = _halving_fold_epochs(bench)
    pool = FoldPool(data.X_train, data.y_train, make_folds(data.y_train, CV, bench.seed), data.n_features,
                    data.n_classes, N_JOBS, threads_per_job(N_JOBS))
    evaluations = []  # (config, epochs, score, accuracy)
    try:
        pool.start({"hidden": [32]}, 0)  # warm the workers, not timed
        pool.epoch()
        optimizer = DEHB(cs=_lab3_configspace(bench.seed), min_fidelity=bench.first_rung,
                         max_fidelity=bench.max_epochs, eta=bench.factor, n_workers=1, seed=bench.seed,
                         output_path=str(bench.tmp / "dehb"), log_level="ERROR")
        fold_epochs, compute = 0, 0.0
        start = time.perf_counter()
        while fold_epochs < budget:
            job = optimizer.ask()
            config, epochs = _lab3_config(dict(job["config"])), int(round(job["fidelity"]))
            pool.start(config, trial_seed(bench.seed, len(evaluations)))
            results = []
            for _ in range(epochs):
                results = pool.epoch()
                if any(r[4] for r in results):
                    break
            trained = sum(r[3] for r in results)
            fold_epochs += trained
            compute += compute_of(trained, config, data)
            failed = any(r[4] for r in results)
            score = math.nan if failed else float(np.mean([r[1] for r in results]))
            accuracy = math.nan if failed else float(np.mean([r[2] for r in results]))
            evaluations.append((config, epochs, score, accuracy))
            optimizer.tell(job, {"fitness": math.inf if failed else -score, "cost": float(epochs)})
        outcome.wall_s = time.perf_counter() - start
    finally:
        pool.close()
    outcome.fold_epochs, outcome.compute = float(fold_epochs), compute
    full = [e for e in evaluations if e[1] == bench.max_epochs and np.isfinite(e[2])]
    top = max(full or [e for e in evaluations if np.isfinite(e[2])], key=lambda e: (e[1], e[2]))
    outcome.config, outcome.budget, outcome.cv_score, outcome.cv_accuracy = top[0], float(top[1]), top[2], top[3]
    outcome.full_budget = len(full)
    outcome.full_scores = {config_key(c): s for c, _, s, _ in full}
    outcome.note = (f"{len(evaluations)} evaluations (from scratch) until >= {budget:,.0f} fold-epochs; "
                    f"{len(full)} at the full budget")
    return outcome
