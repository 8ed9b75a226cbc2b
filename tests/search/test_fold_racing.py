"""Fold racing in a real halving run (``--fold-racing``): each rung's folds train in turn, a config
the rule stops is stored PRUNED with the folds it ran, and the run is what its replay on a table of
the same fits says (bench/_replay.py): the same configs at every rung, the same folds, the same
winner, the same compute. Run again, it trains nothing and ends the same."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from _replay import replay_strategy, trained  # noqa: E402
from _tables import build_table, load_table  # noqa: E402

from hpsearch.data import load_dataset  # noqa: E402
from hpsearch.rundir.store import load_records, load_results  # noqa: E402
from hpsearch.search.run import run_search  # noqa: E402
from hpsearch.settings import SearchSettings  # noqa: E402
from hpsearch.strategies import make_strategy  # noqa: E402

N, EPOCHS, CV, MARGIN = 9, 9, 4, 0.0


@pytest.fixture(scope="module", params=["batched", pytest.param("skorch", marks=pytest.mark.slow)])
def table(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("table") / "digits.npz"
    build_table(load_dataset("digits"), N, EPOCHS, cv=CV, seed=0, jobs=2, engine=request.param, out=path,
                provenance={"engine": request.param})
    return load_table(path)


def _search(out, engine):
    return run_search(SearchSettings(n=N, dataset="digits", cv=CV, max_epochs=EPOCHS, patience=0, seed=0, n_jobs=2,
                                     strategy="halving", factor=3, engine=engine, fold_racing=MARGIN, out=str(out),
                                     progress=False))


@pytest.mark.slow
def test_a_raced_run_is_its_replay_and_resumes_without_training(table, tmp_path):
    run = _search(tmp_path / "run", table.provenance["engine"])
    records = load_records(run)
    frame = load_results(run).set_index("trial")
    replay = replay_strategy(table, list(range(N)), "halving", EPOCHS, seed=0, fold_racing=MARGIN)
    assert {int(t): int(e) for t, e in frame["n_epochs"].items()} == replay.reached
    stopped = [rec for rec in records if rec["rungs"][-1].get("stopped")]
    assert stopped, "the rule stopped no config: the test would not exercise racing"
    for rec in stopped:  # PRUNED with the folds it ran, each the table's score bit for bit
        last = rec["rungs"][-1]
        assert rec["state"] == "PRUNED" and 2 <= len(last["split_test_scores"]) < CV
        assert last["stopped"].startswith(f"fold racing: after {len(last['split_test_scores'])} of {CV} folds")
        assert last["split_test_scores"] == table.score[rec["index"], :len(last["split_test_scores"]),
                                                        last["epochs"] - 1].tolist()
    assert trained(records, table.macs) == replay.compute
    plain = replay_strategy(table, list(range(N)), "halving", EPOCHS, seed=0)
    assert replay.compute < plain.compute
    assert int(frame.index[0]) == replay.chosen == plain.chosen  # the same winner as without racing
    winner = int(frame.index[0])
    assert frame.loc[winner, "mean_test_score"] == table.mean_score(winner, EPOCHS)
    # trials.csv says why (its ranking: tests/rundir/test_exports.py)
    assert set(frame.index[frame["stopped"] != ""]) == {rec["index"] for rec in stopped}

    again = load_results(_search(tmp_path / "run", table.provenance["engine"]))  # the same command: a resume
    assert np.array_equal(again["mean_test_score"], load_results(run)["mean_test_score"], equal_nan=True)
    assert load_records(run) == records  # no rung trained or stored twice


def test_fold_racing_needs_three_folds_and_halving(tmp_path):
    from hpsearch.errors import UsageError

    with pytest.raises(UsageError, match=r"fold_racing needs cv >= 3, got 2: racing decides after 2 folds"):
        SearchSettings(strategy="halving", cv=2, fold_racing=0.02).validate()
    with pytest.raises(UsageError, match=r"fold_racing applies only with strategy halving; strategy random"):
        SearchSettings(cv=4, fold_racing=0.02).validate()


def test_settling_the_default_margin():
    from hpsearch.strategies.halving import DEFAULT_FOLD_RACING, SuccessiveHalving

    settle = SuccessiveHalving.settle
    assert settle(SearchSettings(strategy="halving"), None).fold_racing == DEFAULT_FOLD_RACING == 0.02  # a new run
    assert settle(SearchSettings(strategy="halving", cv=2), None).fold_racing == "off"  # 2 folds: nothing to save
    assert settle(SearchSettings(strategy="halving"), {"name": "halving"}).fold_racing == "off"  # made without it
    assert settle(SearchSettings(strategy="halving"), {"name": "halving", "fold_racing": 0.05}).fold_racing == 0.05
    assert settle(SearchSettings(strategy="halving", fold_racing="off"), None).fold_racing == "off"  # as given
    assert settle(SearchSettings(strategy="halving", fold_racing=0.0), {"name": "halving"}).fold_racing == 0.0
    # a raced run resumed with --cv 2: not raced, so its fingerprint's refusal names what changed
    assert settle(SearchSettings(strategy="halving", cv=2), {"name": "halving", "fold_racing": 0.02}).fold_racing \
        == "off"
    for strategy in ("random", "hyperband", "tpe", "tpe-halving"):  # racing applies to halving alone
        settings = SearchSettings(strategy=strategy)
        assert make_strategy(settings).settle(settings, None).fold_racing is None, strategy


@pytest.mark.slow
def test_halving_races_by_default_and_a_run_made_without_racing_resumes_without(tmp_path, capsys):
    """The command line: a new halving run races at 0.02; a run made before that default (its
    settings.json without ``fold_racing``, its fingerprint without racing) resumes, by the same command
    or ``--resume``, as it began: every fold, nothing trained again."""
    import json

    from hpsearch.cli import main
    from hpsearch.rundir.store import run_fingerprint

    def search(out, *flags):
        return main(["search", "--dataset", "digits", "--strategy", "halving", "--n", "9", "--max-epochs", "3",
                     "--engine", "batched", "--no-retrain", "--no-progress", "--out", str(out), *flags])

    assert search(tmp_path / "new") == 0
    assert "halving: folds raced (--fold-racing 0.02): at every rung but the last" in capsys.readouterr().out
    assert json.loads((tmp_path / "new" / "settings.json").read_text())["fold_racing"] == 0.02
    assert run_fingerprint(tmp_path / "new")["strategy"]["fold_racing"] == 0.02
    assert any(rec["rungs"][-1].get("stopped") for rec in load_records(tmp_path / "new"))

    assert search(tmp_path / "new", "--fold-racing", "off") == 2  # another margin: refused, the setting named
    assert "other settings (--fold-racing: stored 0.02, now off)" in capsys.readouterr().err
    assert search(tmp_path / "new", "--n", "12") == 2  # halving's rungs were planned for its n: said why
    assert ("--n: stored 9, now 12 (halving's and Hyperband's rungs are planned for their --n: another is a new "
            "search)") in capsys.readouterr().err

    old = tmp_path / "old"
    assert search(old, "--fold-racing", "off") == 0
    assert "fold_racing" not in run_fingerprint(old)["strategy"]  # the fingerprint of a run made before racing
    settings = json.loads((old / "settings.json").read_text())
    settings["fold_racing"] = None  # as a run made with the flag, before its default, stored it
    (old / "settings.json").write_text(json.dumps(settings))
    records = load_records(old)
    assert not any(rec["rungs"][-1].get("stopped") for rec in records)
    capsys.readouterr()
    assert main(["search", "--resume", str(old), "--no-retrain", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "folds raced" not in out and "halving: every fold of every config trains (no fold racing" in out
    del settings["fold_racing"]  # as a run made before the flag stored it
    (old / "settings.json").write_text(json.dumps(settings))
    assert main(["search", "--resume", str(old), "--no-retrain", "--no-progress"]) == 0
    assert search(old) == 0  # the same command as it began, without the flag
    assert load_records(old) == records  # resumed without racing: nothing trained, nothing stopped
    assert json.loads((old / "settings.json").read_text())["fold_racing"] == "off"

    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:  # argparse's refusal: exit 2, the flag and what it takes
        search(tmp_path / "bad", "--fold-racing", "fast")
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert "argument --fold-racing: expected a margin (a number >= 0, such as 0.02) or off, got 'fast'" in err
    assert "Traceback" not in err and not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_a_tpe_halving_run_resumes_by_resume(tmp_path):
    """halving's racing default must not leak into tpe-halving's settings (which refuses the flag)."""
    import json

    from hpsearch.cli import main

    out = tmp_path / "run"
    flags = ["--dataset", "digits", "--strategy", "tpe-halving", "--n", "4", "--n-startup", "2", "--max-epochs", "3",
             "--min-epochs", "1", "--cv", "3", "--engine", "batched", "--no-retrain", "--no-progress"]
    assert main(["search", *flags, "--out", str(out)]) == 0
    assert json.loads((out / "settings.json").read_text())["fold_racing"] is None
    assert main(["search", "--resume", str(out), "--no-retrain", "--no-progress"]) == 0


def test_a_store_without_a_study_starts_afresh(tmp_path):
    """A trials.db killed while it was created (no study in it) is a new run, as before racing's default."""
    import sqlite3

    from hpsearch.rundir.store import stored_fingerprint

    (tmp_path / "run").mkdir()
    sqlite3.connect(tmp_path / "run" / "trials.db").execute("create table t (x)").connection.close()
    assert stored_fingerprint(tmp_path / "run") is None
    run = run_search(SearchSettings(n=3, dataset="digits", cv=3, max_epochs=1, strategy="halving", factor=3,
                                    engine="batched", out=str(tmp_path / "run"), progress=False))
    assert len(load_records(run)) == 3
