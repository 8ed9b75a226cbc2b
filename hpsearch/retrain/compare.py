"""Compare groups of configs of a finished search on the test set: the Triple-MNIST seed's 2 x 2
study of output activation and loss (``hpsearch compare RUN --by head,loss``).

For each combination of the ``--by`` parameters the search drew, its best config (by the search's
ranking), or with ``--same-config`` the search's best config with each combination the space
allows (all else equal: the seed's own study), is retrained on the run's training set (its
``--max-train`` slice, if it searched one) for
``--retrain-epochs`` and scored on the test set, as ``hpsearch retrain`` retrains (same seeds, same
threads, checkpoints); the
table goes to ``<run>/compare.csv`` and to the terminal (as Markdown), one row per combination:
its best trial, CV score and accuracy, test accuracy (per position and exact match for labels
per position); a combination whose every config failed in the search is a row said failed, with its
reason, not retrained. The run's winner is left alone. Each finished row is written at once; running the
same command again trains only the combinations without one. It holds the run's lock
(``hpsearch.rundir.lock.RunLock``): refused while a search or a retraining writes the run.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import sys
from pathlib import Path

import pandas as pd
from joblib import delayed

from ..errors import UsageError, param
from ..jobs.backends import LokyBackend
from ..jobs.workers import check_missing
from ..rundir.atomic import atomic_write_text
from ..rundir.lock import RunLock
from ..rundir.names import COMPARE_FILE, SPACE_FILE
from ..rundir.run_info import check_code_of, read_settings, read_table, run_dataset
from ..rundir.store import load_records, load_results
from ..search.interrupt import InterruptFlag, SearchInterrupted
from ..setting_checks import MAX_EPOCHS, whole
from ..tasks import position_titles
from ..training.models.shipping import shipped
from ..training.net import DEFAULT_BATCH_SIZE
from .job import retrain_one
from .progress import EpochBar, fit_sink
from .top import LOCK_FIX, top_configs

__all__ = ["compare_groups", "markdown_table"]

DEFAULTS = {"head": "softmax", "loss": "ce"}  # what a config without the key trains with


# a whole-number range this short is a list of groups (depth 1..3), one this long a group per config
MAX_WHOLE_GROUPS = 10


def _listed(dist) -> tuple | None:
    """The values ``dist`` can give, where they are few enough to group by: its choices, its constant, a
    short whole-number range; None for a range of numbers."""
    from ..space.distributions import Categorical, Constant, IntUniform

    if isinstance(dist, Categorical):
        return dist.choices
    if isinstance(dist, Constant):
        return (dist.value,)
    if isinstance(dist, IntUniform) and dist.high - dist.low < MAX_WHOLE_GROUPS:
        return tuple(range(dist.low, dist.high + 1))
    return None


def _space_choices(run_dir: Path, name: str) -> tuple:
    """The values the run's space can give ``name``: its choices, its constant, a short whole-number range,
    or the default."""
    from ..space.search_space import load_space

    dist = load_space(run_dir / SPACE_FILE).params.get(name)
    if dist is None and name in DEFAULTS:
        return (DEFAULTS[name],)
    listed = _listed(dist)
    if listed is None:
        raise UsageError(f"{param('by')} {name}: the run's space does not choose {name} from a list; "
                         f"{param('same_config')} needs categorical (or constant) keys, or a whole-number range of "
                         f"at most {MAX_WHOLE_GROUPS} values")
    return listed


def _groups(run_dir: Path, by: list[str], same_config: bool) -> list[tuple[tuple, dict]]:
    """``(values of by, candidate)`` per group: the best finished config of each combination the
    search drew, or (``same_config``) the search's best config with each combination the space allows."""
    if len(set(by)) < len(by):
        twice = next(name for name in by if by.count(name) > 1)
        raise UsageError(f"{param('by')} {','.join(by)} names {twice} twice; name each key once")
    ranked = top_configs(run_dir, 10**9)  # every finished trial, best first
    if same_config:
        best = ranked[0]
        combos = _combinations(run_dir, by)
        if len(combos) == 1:
            raise UsageError(f"{param('by')} {','.join(by)}: the run's space allows only {_group_name(combos[0])}, so "
                             f"there is nothing to compare; group {param('by')} a key the space chooses from a list")
        return [(key, _variant(best, dict(zip(by, key, strict=True)))) for key in combos]
    listed = sorted({name for cand in ranked for name in by if isinstance(cand["config"].get(name), list | tuple)})
    if listed:
        raise UsageError(f"{param('by')} {listed[0]}: a list-valued parameter (a value per layer); group by "
                         "parameters with one value per config, such as head, loss, optimizer or model")
    _check_drawn_from_lists(run_dir, by)
    groups: dict[tuple, dict] = {}
    for cand in ranked:
        groups.setdefault(_key(cand["config"], by), cand)
    missing = [name for name in by if name not in DEFAULTS and all(name not in c["config"] for c in groups.values())]
    if missing:
        known = sorted({k for c in groups.values() for k in c["config"]})
        raise UsageError(f"{param('by')} {','.join(by)}: no config of {run_dir} has {missing[0]!r}; its keys are "
                         f"{', '.join(known)}")
    if len(groups) == 1 and len(ranked) > 0 and not _failed_groups(run_dir, by, groups):  # a comparison of nothing
        (only,) = groups
        fix = (f"add {param('same_config')} (the best config with each value the space allows), or group "
               f"{param('by')} a key the search drew several values of" if _space_allows_more(run_dir, by) else
               f"the space allows no other; group {param('by')} a key the search drew several values of")
        raise UsageError(f"{param('by')} {','.join(by)}: every config of {run_dir} has {_group_name(only)}, so there "
                         f"is nothing to compare; {fix}")
    return list(groups.items())


def _variant(best: dict, values: dict) -> dict:
    """The search's best config with ``values``: its trial, and its CV figures only where it is that very
    config (a variant was never cross-validated: compare.csv gave it the best config's)."""
    config = {**best["config"], **values}
    if config == best["config"]:
        return {**best, "config": config}
    return {**best, "config": config, "search_rank": None, "cv_score": float("nan"), "cv_accuracy": float("nan"),
            "cv_epochs": None}


def _key(config: dict, by: list[str]) -> tuple:
    return tuple(config.get(name, DEFAULTS.get(name)) for name in by)


def _failed_groups(run_dir: Path, by: list[str], scored) -> list[tuple[tuple, int, str]]:
    """``(values of by, trial, error)`` of each combination the search drew whose every config failed (none
    of ``scored``'s): a row of its own, said failed, never left out of the table as if never drawn."""
    frame = load_results(run_dir)
    configs = {record["index"]: record["config"] for record in load_records(run_dir)}
    failed: dict[tuple, tuple[int, str]] = {}
    for row in frame[frame["mean_test_score"].isna()].itertuples():
        key = _key(configs.get(int(row.trial), {}), by)
        if int(row.trial) in configs and all(isinstance(v, str | int | float | bool) for v in key) \
                and key not in scored:
            failed.setdefault(key, (int(row.trial), str(getattr(row, "error", "") or "failed")))
    return [(key, trial, error) for key, (trial, error) in failed.items()]


def _failed_rows(run_dir: Path, by: list[str], groups, same_config: bool, epochs: int) -> list[dict]:
    """The rows of ``_failed_groups``: not retrained, said failed (none with --same-config: one config)."""
    if same_config:
        return []
    return [{"group": _group_name(key), **dict(zip(by, key, strict=True)), "by": ",".join(by), "same_config": False,
             "trial": trial, "retrain_epochs": epochs, "test_accuracy": float("nan"),  # this call's: replaced
             "error": f"every config of the group failed in the search (trial {trial}: {error}); not retrained"}
            for key, trial, error in _failed_groups(run_dir, by, dict(groups))]


def _check_drawn_from_lists(run_dir: Path, by: list[str]) -> None:
    """A key the space draws from a range (dropout, lr) makes a group of each config: refused, naming the keys
    this space does draw a few values of."""
    from ..space.search_space import load_space

    params = load_space(run_dir / SPACE_FILE).params if (run_dir / SPACE_FILE).is_file() else {}
    ranged = [name for name in by if name in params and _listed(params[name]) is None]
    if ranged:
        groupable = [name for name, dist in params.items() if len(_listed(dist) or ()) > 1]
        offer = (f"such as {', '.join(groupable)}" if groupable else
                 "but this space draws none with several values")
        raise UsageError(f"{param('by')} {ranged[0]}: the run's space draws it from a range "
                         f"({type(params[ranged[0]]).__name__}), so each config would be a group of its own; group "
                         f"by a key the space chooses from a list or a short whole-number range, {offer}")


def _combinations(run_dir: Path, by: list[str]) -> list[tuple]:
    """Every combination of values the run's space allows the keys ``by`` (what --same-config compares)."""
    return list(itertools.product(*(_space_choices(run_dir, name) for name in by)))


def _space_allows_more(run_dir: Path, by: list[str]) -> bool:
    try:
        return len(_combinations(run_dir, by)) > 1
    except UsageError:  # a key the space does not choose from a list
        return False


def _group_name(key: tuple) -> str:
    return "-".join(str(v) for v in key)


def _earlier(path: Path, by: list[str], epochs: int, same_config: bool) -> tuple[list[dict], dict[str, dict]]:
    """compare.csv's rows of other calls (another ``--by``, ``--retrain-epochs`` or mode: kept in the file as
    they are) and, by group name, the finished rows of a call like this one."""
    if not path.is_file():
        return [], {}
    table = read_table(path, ("group", "trial", "retrain_epochs", "same_config"), "its groups are trained again",
                       keep_default_na=False, na_values=[""], dtype={"group": str})
    if table is None:
        return [], {}
    if "error" not in table:
        table["error"] = ""
    if "by" not in table:  # written before the file said its grouping: kept as they are, never taken for this call's
        table["by"] = ""
    table["error"] = table["error"].astype(object).fillna("").astype(str)
    _unreadable_rows_failed(table, path)
    alike = ((table["retrain_epochs"] == epochs) & (table["same_config"] == same_config)
             & (table["by"] == ",".join(by))).fillna(False).astype(bool)
    others = table[~alike].to_dict("records")
    return others, {row["group"]: row for row in table[alike].to_dict("records") if row["error"] == ""}


def _unreadable_rows_failed(table: pd.DataFrame, path: Path) -> None:
    """Rows whose numbers do not read (a trial of "9x", an accuracy of "abc" or 1.7: edited or damaged by
    hand) get an error, so they are trained again, not printed as they are or a traceback."""
    numbers = ["trial", "retrain_epochs", *(c for c in table if c.startswith(("test_", "cv_", "search_rank")))]
    bad = pd.Series(False, index=table.index)
    for column in numbers:
        raw = table[column]
        values = pd.to_numeric(raw.replace("", float("nan")), errors="coerce")
        bad |= values.isna() & raw.notna() & (raw.astype(str).str.strip() != "")  # text where a number belongs
        if column in ("trial", "retrain_epochs"):
            wrong = values.isna() | (values % 1 != 0) | (values < 0)
            bad |= wrong
            values = values.where(~wrong).astype("Int64")  # written back as 4, not 4.0
        elif column.endswith(("accuracy", "exact_match")):
            bad |= (values < 0) | (values > 1)
        table[column] = values
    unsaid = bad & (table["error"] == "")
    if unsaid.any():
        print(f"hpsearch: warning: {path}: {unsaid.sum()} row(s) hold values that are not what compare writes "
              f"(groups {', '.join(map(str, table['group'][unsaid]))}); those groups are trained again",
              file=sys.stderr, flush=True)
        table.loc[unsaid, "error"] = "unreadable values"


def _still_best(done: dict[str, dict], groups: list[tuple[tuple, dict]],
                by: list[str]) -> tuple[dict[str, dict], list[str]]:
    """The finished rows whose trial is still the group's candidate, and the groups whose candidate changed
    (a resumed search found a better config): those are trained again."""
    kept, changed = {}, []
    for key, cand in groups:
        row = done.get(_group_name(key))
        if row is None:
            continue
        if int(row["trial"]) == int(cand["trial"]):  # its rank and CV scores as the search ranks them now
            kept[_group_name(key)] = {**row, **dict(zip(by, key, strict=True)),  # as given, not as read back (32.0)
                                      **{k: cand[k] for k in ("search_rank", "cv_score", "cv_accuracy", "cv_epochs")
                                         if k in cand}}
        else:
            changed.append(f"{_group_name(key)} (trial {int(row['trial'])} -> {int(cand['trial'])})")
    return kept, changed


def compare_groups(run_dir, by: list[str], retrain_epochs: int = 30, *, device: str = "cpu",
                   n_jobs: int = -1, progress: bool = True, same_config: bool = False) -> pd.DataFrame:
    """Retrain one config per combination of ``by`` and return the table (see the module).

    Parameters
    ----------
    run_dir : path
        A finished (or partly finished) search's run folder.
    by : list of str
        Config keys to group by, e.g. ``["head", "loss"]``; a key the search kept constant makes
        one group.
    retrain_epochs : int
        Epochs of each retraining (no early stopping).
    same_config : bool
        Retrain the search's best config with every combination of ``by`` its space allows (all
        else equal, the seed's 2 x 2), instead of each combination's own best config.
    """
    run_dir = Path(run_dir)
    whole(1, MAX_EPOCHS)("retrain_epochs", retrain_epochs)
    if not by or any(not isinstance(name, str) or not name for name in by):
        raise UsageError(f"{param('by')} needs config keys separated by commas, e.g. {param('by')} head,loss; "
                         f"got {by!r}")
    settings = read_settings(run_dir)
    recorded = check_code_of(run_dir)  # its groups are retrained from your module: the code the search scored
    with RunLock(run_dir, fix=LOCK_FIX):  # it writes into the run: never beside a search or a retraining
        return _compare(run_dir, settings, by, retrain_epochs, device=device, n_jobs=n_jobs, progress=progress,
                        same_config=same_config, recorded=recorded)


def _compare(run_dir: Path, settings: dict, by: list[str], retrain_epochs: int, *, device, n_jobs, progress,
             same_config, recorded) -> pd.DataFrame:
    """``compare_groups``'s work, its arguments checked and the run locked."""
    groups = _groups(run_dir, by, same_config)
    dataset = run_dataset(run_dir)
    path = run_dir / COMPARE_FILE
    others, earlier = _earlier(path, by, retrain_epochs, same_config)
    done, changed = _still_best(earlier, groups, by)
    if changed:
        print(f"compare: the search's best config changed since the last comparison for {', '.join(changed)}; "
              "trained again")
    rows = [done[_group_name(key)] for key, _ in groups if _group_name(key) in done]
    failed = _failed_rows(run_dir, by, groups, same_config, retrain_epochs)
    rows += failed
    todo = [(key, cand) for key, cand in groups if _group_name(key) not in done]
    states = run_dir / "compare_states"  # not the retraining's checkpoints: those are its own
    backend = LokyBackend()
    jobs = 1 if str(device).startswith("cuda") else backend.jobs(n_jobs, max(1, len(todo)))
    bar = EpochBar(len(todo) * retrain_epochs, len(todo), desc="compare", enabled=progress and bool(todo))
    try:
        with InterruptFlag() as flag, fit_sink(bar, jobs, False) as sink, \
                backend.parallel(jobs, dataset) as (parallel, data):
            results = parallel(delayed(_retrain_group)(
                key, cand, data, device=device, epochs=retrain_epochs,
                batch_size=int(settings.get("batch_size", DEFAULT_BATCH_SIZE)), seed=int(settings.get("seed", 0)),
                monitor_test=False, threads=backend.threads(jobs), sink=sink, run_dir=states / _group_name(key),
                **shipped(cand["config"], recorded)) for key, cand in todo)
            for key, row in results:
                if flag.raised or row["error"] == "interrupted":
                    raise KeyboardInterrupt
                check_missing(row)  # a job's machine without a module this process has: stop
                rows.append({"group": _group_name(key), **dict(zip(by, key, strict=True)), "by": ",".join(by),
                             "same_config": same_config, **row})
                bar.finished(None)
                _write(path, others, _ordered(rows, by))
                shutil.rmtree(states / _group_name(key), ignore_errors=True)  # its row is kept
    except KeyboardInterrupt:
        raise SearchInterrupted(f"comparison interrupted: {len(rows)} of {len(groups) + len(failed)} groups are in "
                                f"{path}; run the same command again to train the rest") from None
    finally:
        bar.close()
    with contextlib.suppress(OSError):
        states.rmdir()  # empty once every group is done
    table = _ordered(rows, by)
    _write(path, others, table)
    return table


def _write(path: Path, others: list[dict], table: pd.DataFrame) -> None:
    """compare.csv: the other calls' rows as they were, then this call's."""
    atomic_write_text(path, pd.concat([pd.DataFrame(others), table], ignore_index=True).to_csv(index=False))


def _retrain_group(key, cand, data, **kwargs):
    row, _ = retrain_one(cand, data, **kwargs)
    return key, row


def _ordered(rows: list[dict], by: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows).sort_values(by, kind="stable").reset_index(drop=True)


def markdown_table(table: pd.DataFrame, by: list[str]) -> str:
    """The comparison as a Markdown table: the groups, the trial, CV accuracy, test accuracies (%)."""
    tests = [c for c in table if c.startswith("test_") and c.endswith(("accuracy", "exact_match"))
             and c != "test_accuracy"]
    columns = [*by, "trial", "cv_accuracy", "test_accuracy", *tests]
    if table.get("same_config", pd.Series([False])).any():  # one config: its CV accuracy says nothing per group
        columns.remove("cv_accuracy")
    titles = position_titles(tests)
    names = [*by, "trial", *(["CV acc."] if "cv_accuracy" in columns else []), "test acc.", *(titles[c] for c in tests)]
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for row in table.to_dict("records"):
        cells = [str(row[c]) for c in by] + [str(int(row["trial"]))]
        failed = isinstance(row.get("error"), str) and bool(row["error"].strip())
        cells += ["failed" if failed else f"{100 * row[c]:.2f}%" for c in columns[len(by) + 1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
