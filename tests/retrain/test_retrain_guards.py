"""A retraining as a user meets it around the search: refused with the fix on a run that holds no scored
trial or that another command is writing, the count it says before it starts, and a Ctrl-C that names
only what exists."""

import json
import os
import shutil
from datetime import datetime

import pandas as pd
import pytest

from hpsearch import commands
from hpsearch.cli import main
from hpsearch.errors import UsageError
from hpsearch.retrain import top
from hpsearch.retrain.top import retrain_top
from hpsearch.rundir.lock import RunLock
from hpsearch.rundir.store import TrialStore, load_records, load_results, run_fingerprint
from hpsearch.search.interrupt import SearchInterrupted
from hpsearch.search.run import run_search
from hpsearch.settings import SearchSettings
from hpsearch.winner.bundle import load_winner

TINY = dict(dataset="digits", cv=2, max_epochs=2, patience=0, n_jobs=1, progress=False)


@pytest.fixture(scope="module")
def searched(tmp_path_factory, digits):
    return run_search(SearchSettings(n=4, out=str(tmp_path_factory.mktemp("searched") / "run"), **TINY), digits)


def _copy(run, tmp_path):
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run"


def test_a_run_stopped_before_its_first_trial_finished_says_to_resume_it(searched, tmp_path, capsys):
    run = tmp_path / "early"  # as a search stopped by Ctrl-C during its first trials leaves it
    run.mkdir()
    for name in ("settings.json", "space.toml"):
        shutil.copy(searched / name, run / name)
    TrialStore(run, run_fingerprint(searched)).create(0, load_records(searched)[0]["config"], {}, {}, datetime.now())
    said = f"hpsearch: error: {run} holds no scored trial yet; resume the search first (hpsearch search --resume {run})\n"
    for command in (["retrain", str(run)], ["compare", str(run), "--by", "optimizer"], ["plot", "search", str(run)]):
        assert main(command) == 2, command
        assert capsys.readouterr() == ("", said), command  # said first: nothing announced before it
    assert sorted(p.name for p in run.iterdir()) == [".lock", "settings.json", "space.toml", "trials.db"]


def test_a_run_in_use_is_refused_and_left_as_it_was(searched, tmp_path, capsys):
    run = _copy(searched, tmp_path)
    settings = (run / "settings.json").read_text()
    said = (f"hpsearch: error: {run} is in use by another hpsearch command (pid {os.getpid()}: a search, retraining, "
            "comparison, plot or export); wait for it to finish (or stop it), then run this command again\n")
    with RunLock(run):  # as a running search holds it (flock: another open file is refused, in this process too)
        for command in (["retrain", str(run), "--top", "2", "--retrain-epochs", "1", "--no-progress"],
                        ["compare", str(run), "--by", "optimizer", "--retrain-epochs", "1", "--no-progress"]):
            assert main(command) == 2, command
            assert capsys.readouterr() == ("", said), command
        with pytest.raises(UsageError, match="is in use by another hpsearch command"):
            retrain_top(run, top=1, retrain_epochs=1, progress=False)
    assert (run / "settings.json").read_text() == settings  # the refused flags are not kept
    assert not (run / "retrain.csv").exists() and not (run / "compare.csv").exists()


def test_compare_says_what_it_trained_on_and_what_learned_nothing(searched, tmp_path, capsys):
    """compare said nothing of a group at chance, nor what it retrained on; a key drawn from a range
    (dropout) made one group per config without a word."""
    run = _copy(searched, tmp_path)
    assert main(["compare", str(run), "--by", "dropout", "--retrain-epochs", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--by dropout: the run's space draws it from a range (Uniform), so each config would be a group of its " \
           "own" in err and err.rstrip().endswith("short whole-number range, such as optimizer")
    settings = json.loads((run / "settings.json").read_text())
    settings["chance"]["accuracy"] = 1.0  # every group at or under it: each is named
    (run / "settings.json").write_text(json.dumps(settings))
    assert main(["compare", str(run), "--by", "optimizer", "--retrain-epochs", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    groups = pd.read_csv(run / "compare.csv")["group"].tolist()
    either = ", or CV log-loss no better than the class shares'"
    assert settings["chance"]["scoring"] == "neg_log_loss"
    assert f"at chance (CV accuracy <= 100.00%, the majority class's share{either}): {', '.join(groups)};" in out
    assert f"({len(groups)} groups, 1 epoch each on the whole training set;" in out
    # the search's own rule: a log-loss no better than the class shares' is at chance whatever the accuracy
    # (compare named a group the search called at chance by its accuracy only, and without the search's tolerance)
    settings["chance"].update(accuracy=0.0, neg_log_loss=0.0)
    (run / "settings.json").write_text(json.dumps(settings))
    assert main(["compare", str(run), "--by", "optimizer", "--retrain-epochs", "1", "--no-progress"]) == 0
    assert f"at chance (CV accuracy <= 0.00%, the majority class's share{either}): {', '.join(groups)};" \
        in capsys.readouterr().out


def test_a_retraining_holds_the_run_against_a_search(searched, tmp_path, digits, monkeypatch):
    run = _copy(searched, tmp_path)
    real, refused = top.retrain_one, []

    def meanwhile(*args, **kwargs):  # a search started while the config trains (one job: in this process)
        with pytest.raises(UsageError, match=r"in use by another hpsearch command \(pid \d+: a search, retraining, comparison, plot or export\); wait") as exc:
            with RunLock(run):
                pass
        refused.append(str(exc.value))
        return real(*args, **kwargs)

    monkeypatch.setattr(top, "retrain_one", meanwhile)
    assert retrain_top(run, top=1, retrain_epochs=1, dataset=digits, progress=False, n_jobs=1).trained == 1
    assert len(refused) == 1
    with RunLock(run):  # released once it is done
        pass


def test_a_search_keeps_the_lock_through_its_own_retraining_and_pictures(tmp_path, monkeypatch):
    """No gap between the search and its retraining where another command could write the run."""
    held = []

    def pictures(run_dir, *args, **kwargs):  # (drawn after the retraining; not drawn here)
        with pytest.raises(UsageError, match="is in use by another hpsearch command"), RunLock(run_dir):
            pass
        held.append(run_dir)
        return 0

    monkeypatch.setattr(commands, "_plot", pictures)
    out = tmp_path / "run"
    assert main(["search", "--n", "2", "--out", str(out), "--dataset", "digits", "--cv", "2", "--max-epochs", "1",
                 "--patience", "0", "--n-jobs", "1", "--no-progress", "--top", "1", "--retrain-epochs", "1"]) == 0
    assert len(pd.read_csv(out / "retrain.csv")) == 1 and (out / "winner.pt").is_file()
    assert held == [out]  # still held after the retraining, from the same process
    with RunLock(out):  # and free once the command is done
        pass


def test_ctrl_c_names_the_best_so_far_only_when_there_is_one(searched, tmp_path, digits, capsys, monkeypatch):
    run = _copy(searched, tmp_path)
    real, finishes = top.retrain_one, []

    def ctrl_c(cand, *args, **kwargs):  # one job: the configs train in turn, in this process
        if not finishes:
            raise KeyboardInterrupt  # Ctrl-C during this fit
        finishes.pop()
        return real(cand, *args, **kwargs)

    monkeypatch.setattr(top, "retrain_one", ctrl_c)
    # one config: one job, in this process, whatever the cores
    assert main(["retrain", str(run), "--top", "1", "--retrain-epochs", "3", "--no-progress"]) == 130
    assert capsys.readouterr().err == (
        f"\nretraining interrupted: no config is retrained yet; run the same command again (or hpsearch retrain {run} "
        "--top 1 --retrain-epochs 3 --winner-by cv) to retrain them\n")
    assert not (run / "winner.pt").exists() and not (run / "retrain.csv").exists()
    finishes.append(1)  # the first config finishes, the second is cut short
    with pytest.raises(SearchInterrupted) as info:
        retrain_top(run, top=2, retrain_epochs=3, dataset=digits, progress=False, n_jobs=1)
    assert str(info.value) == (
        f"retraining interrupted: 1 of 2 configs are retrained (retrain.csv) and the best so far is in "
        f"{run / 'winner.pt'}; run the same command again (or hpsearch retrain {run} --top 2 --retrain-epochs 3 "
        "--winner-by cv) to retrain the rest")
    assert (run / "winner.pt").is_file() and len(pd.read_csv(run / "retrain.csv")) == 1
    # summary.json names winner.pt's config, not a winner from before, and says the retraining is not done
    summary = json.loads((run / "summary.json").read_text())
    retrained = pd.read_csv(run / "retrain.csv").iloc[0]
    assert summary["winner"]["trial"] == retrained["trial"] and summary["retrain"]["complete"] is False
    assert load_winner(run).winner_["config"] == summary["winner"]["config"]
    from hpsearch.report.winner_section import winner_section
    assert (summary["retrain"]["top"], summary["retrain"]["retrained"]) == (2, 1)  # "top" said 1: the ones done
    assert "the retraining stopped (Ctrl-C) after 1 of the top 2 configs" in winner_section(run, summary)
    from hpsearch.report.content import retrain_section
    assert f"1 of the best 2 configs of the search so far (the retraining stopped; hpsearch retrain {run} retrains " \
           "the rest)" in retrain_section(run, {}, summary)  # it said "The best 1 config of the search"
    monkeypatch.setattr(top, "retrain_one", real)
    retrain_top(run, top=2, retrain_epochs=3, dataset=digits, progress=False, n_jobs=1)  # the rest
    summary = json.loads((run / "summary.json").read_text())
    assert summary["retrain"]["complete"] is True and summary["retrain"]["top"] == summary["retrain"]["retrained"] == 2
    assert "stopped" not in winner_section(run, summary)


def test_the_count_said_is_the_count_retrained_and_why_fewer(searched, tmp_path, digits, capsys):
    space = tmp_path / "space.toml"
    space.write_text("hidden = [32]\noptimizer = 'sgd'\n[lr]\ndistribution = 'categorical'\nchoices = [1e6, 0.05]\n")
    with pytest.warns(RuntimeWarning, match="configs failed"):
        run = run_search(SearchSettings(n=8, space=str(space), out=str(tmp_path / "mixed"), **TINY), digits)
    scores = load_results(run)["mean_test_score"]
    scored, failed = int(scores.notna().sum()), int(scores.isna().sum())
    assert (scored, failed) == (6, 2)
    assert main(["retrain", str(run), "--top", "8", "--retrain-epochs", "1", "--no-progress"]) == 0
    assert capsys.readouterr().out.startswith("retraining the best 6 (the run has 6 scored configs; 2 failed) for 1 "
                                              "epoch each")
    assert len(pd.read_csv(run / "retrain.csv")) == 6
    # a --top past every config of a run where none failed
    run = _copy(searched, tmp_path)
    assert main(["retrain", str(run), "--top", "50", "--retrain-epochs", "1", "--no-progress"]) == 0
    assert capsys.readouterr().out.startswith("retraining the best 4 (the run has 4 scored configs) for 1 epoch each")
    assert len(pd.read_csv(run / "retrain.csv")) == 4


def test_compare_offers_same_config_where_the_space_allows_more_than_the_search_drew(tmp_path, digits):
    from hpsearch.retrain.compare import compare_groups

    space = tmp_path / "space.toml"
    space.write_text("hidden = [8]\n[optimizer]\ndistribution = 'categorical'\nchoices = ['adam', 'rmsprop']\n")
    run = run_search(SearchSettings(n=1, space=str(space), out=str(tmp_path / "one"), **TINY), digits)
    drawn = load_results(run)["param_optimizer"].iloc[0]
    with pytest.raises(UsageError, match=rf"by optimizer: every config of .* has {drawn}, so there is nothing to "
                                         r"compare; add same_config \(the best config with each value the space "
                                         r"allows\), or group by a key the search drew several values of"):
        compare_groups(run, ["optimizer"], 1, progress=False)
    table = compare_groups(run, ["optimizer"], 1, progress=False, same_config=True, n_jobs=1)  # the offer works
    assert sorted(table["optimizer"]) == ["adam", "rmsprop"] and table["trial"].nunique() == 1


def test_compare_keeps_other_calls_rows_and_retrains_a_group_whose_best_changed(searched, tmp_path, capsys):
    """Another mode's rows were dropped from compare.csv (and trained again on the next call); a group whose
    best config changed (a resumed search) kept its old row, presented as the search's best."""
    from hpsearch.retrain.compare import compare_groups

    run = _copy(searched, tmp_path)
    same = compare_groups(run, ["optimizer"], 1, progress=False, same_config=True, n_jobs=1)
    own = compare_groups(run, ["optimizer"], 1, progress=False, n_jobs=1)
    stored = pd.read_csv(run / "compare.csv")
    assert len(stored) == len(same) + len(own) and set(stored["same_config"]) == {True, False}
    assert set(stored["by"]) == {"optimizer"}
    again = compare_groups(run, ["optimizer"], 1, progress=False, same_config=True, n_jobs=1)  # nothing trained
    key = ["group", "trial", "test_accuracy"]
    assert again[key].values.tolist() == same[key].values.tolist()
    table = pd.read_csv(run / "compare.csv")
    stale = table.index[~table["same_config"]][0]
    group, trial = table.loc[stale, "group"], int(table.loc[stale, "trial"])
    table.loc[stale, "trial"] = trial + 100  # as a row of a config that was best before the search resumed
    table.to_csv(run / "compare.csv", index=False)
    capsys.readouterr()
    fresh = compare_groups(run, ["optimizer"], 1, progress=False, n_jobs=1)
    assert (f"best config changed since the last comparison for {group} (trial {trial + 100} -> {trial}); trained "
            "again") in capsys.readouterr().out
    assert int(fresh.set_index("group").loc[group, "trial"]) == trial
    assert len(pd.read_csv(run / "compare.csv")) == len(same) + len(own)


def test_compare_same_config_says_a_variant_at_chance_by_its_own_test_accuracy(searched, tmp_path, capsys):
    """With --same-config every group shares one config's CV accuracy: each variant at chance is said by
    its own test accuracy (every group was named from the one CV figure)."""
    run = _copy(searched, tmp_path)
    command = ["compare", str(run), "--by", "optimizer", "--same-config", "--retrain-epochs", "1", "--no-progress"]
    assert main(command) == 0
    table = pd.read_csv(run / "compare.csv").sort_values("test_accuracy")
    low, high = table["test_accuracy"].iloc[0], table["test_accuracy"].iloc[-1]
    assert low < high, table
    # only the search's own config was cross-validated: a variant carried its CV figures and rank
    assert table["cv_accuracy"].notna().sum() == table["search_rank"].notna().sum() == 1
    settings = json.loads((run / "settings.json").read_text())
    settings["chance"]["accuracy"] = float(low)  # the worse variant at chance, the better above it
    (run / "settings.json").write_text(json.dumps(settings))
    capsys.readouterr()
    assert main(command) == 0  # the rows are kept: said again, nothing trained
    assert f"at chance (test accuracy <= {low:.2%}, the majority class's share): {table['group'].iloc[0]}; the " \
           "variant learned nothing in these epochs" in capsys.readouterr().out


def test_a_dataset_without_test_images_is_refused_before_training(searched, tmp_path, digits):
    """Every retraining failed on it after its training ('need at least one array to concatenate'), then the
    error advised fewer epochs; it is named first, and nothing is written."""
    run = _copy(searched, tmp_path)
    with pytest.raises(UsageError, match="dataset 'digits' holds no test images; the retrained configs are scored"):
        retrain_top(run, top=1, retrain_epochs=2, dataset=digits.subset(None, 0), progress=False, n_jobs=1)
    assert not (run / "retrain.csv").exists() and not (run / "winner.pt").exists()


def test_compare_groups_by_a_short_whole_number_range(tmp_path, digits, capsys):
    """--by batch_size, drawn from 32..33 (int_uniform), was refused as "a range", naming keys the space
    did not draw (head, loss, model); a short whole-number range is a list of groups."""
    space = tmp_path / "space.toml"
    space.write_text('model = "mlp"\nhidden = [32]\nlr = 0.05\noptimizer = "adam"\n'
                     'batch_size = { distribution = "int_uniform", low = 32, high = 33 }\n')
    run = run_search(SearchSettings(n=6, space=str(space), out=str(tmp_path / "run"), **TINY), digits)
    assert main(["compare", str(run), "--by", "batch_size", "--retrain-epochs", "1", "--no-progress"]) == 0
    table = pd.read_csv(run / "compare.csv")
    assert sorted(table["batch_size"]) == [32, 33]
    # beside a row of another --by (no batch_size: the column reads back as 32.0), a kept row is as given
    other = {**table.iloc[0].to_dict(), "group": "adam", "by": "optimizer", "optimizer": "adam", "batch_size": None}
    pd.concat([table, pd.DataFrame([other])]).to_csv(run / "compare.csv", index=False)
    capsys.readouterr()
    assert main(["compare", str(run), "--by", "batch_size", "--retrain-epochs", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "| 32 | " in out and "| 33 | " in out and "32.0" not in out


def test_summary_names_the_device_the_winner_was_trained_on_not_this_calls(searched, tmp_path, digits):
    """A retraining that reuses every row trains nothing, yet summary.json's retraining named its device."""
    run = _copy(searched, tmp_path)
    retrain_top(run, top=1, retrain_epochs=1, dataset=digits, progress=False, n_jobs=1)
    table = pd.read_csv(run / "retrain.csv")
    assert list(table["device"]) == ["cpu"]
    table["device"] = "cuda:1"  # as a retraining on a GPU machine wrote it
    table.to_csv(run / "retrain.csv", index=False)
    result = retrain_top(run, top=1, retrain_epochs=1, dataset=digits, progress=False, n_jobs=1)
    assert result.trained == 0
    assert json.loads((run / "summary.json").read_text())["retrain"]["device"] == "cuda:1"


def test_plot_and_export_wait_for_a_retraining_that_may_replace_the_winner(retrained_run, tmp_path, capsys):
    """plot all took no lock: beside a retraining that chose another winner it overwrote the new winner's
    pictures with the old one's and summary.json's list of them; two exports at once unlinked each other's
    staged files (a traceback). Both now hold the run; plot search (drawn while a search runs) and an export
    elsewhere do not need to."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(retrained_run, run)
    with RunLock(run):  # as a retraining holds it
        for command in (["plot", "confusion-matrix", str(run)], ["export", str(run), "--no-check"]):
            assert main(command) == 2, command
            assert f"{run} is in use by another hpsearch command" in capsys.readouterr().err
        assert main(["plot", "search", str(run)]) == 0
        assert main(["export", str(run), "--out", str(tmp_path / "elsewhere"), "--no-check"]) == 0
    assert main(["plot", "confusion-matrix", str(run)]) == 0 and main(["export", str(run), "--no-check"]) == 0


def test_a_kept_comparison_row_carries_the_groups_rank_as_the_search_ranks_it_now():
    """A resumed search that ranked other configs above a group's best kept compare.csv's old search_rank (its
    config unchanged, its row kept)."""
    from hpsearch.retrain.compare import _still_best

    row = {"group": "sgd", "trial": 0, "search_rank": 2, "cv_score": -0.5, "cv_accuracy": 0.8, "test_accuracy": 0.9}
    cand = {"trial": 0, "search_rank": 4, "cv_score": -0.5, "cv_accuracy": 0.8, "config": {"optimizer": "sgd"}}
    kept, changed = _still_best({"sgd": row}, [(("sgd",), cand)], ["optimizer"])
    assert changed == [] and kept == {"sgd": {**row, "optimizer": "sgd", "search_rank": 4}}


def test_compare_says_a_group_whose_every_config_failed_and_a_retraining_that_failed(tmp_path, digits, capsys):
    """A group whose every config diverged in the search was left out of the table (and with one scored
    group compare said every config had that value); a retraining that diverged printed 'nan%' with no
    word. Each is now a row said failed, with its reason."""
    space = tmp_path / "space.toml"
    space.write_text('model = "mlp"\nhidden = [16]\noptimizer = "sgd"\n'
                     'lr = { distribution = "categorical", choices = [0.05, 1e6] }\n')
    run = run_search(SearchSettings(n=6, space=str(space), out=str(tmp_path / "run"), **TINY), digits)
    frame = pd.read_csv(run / "trials.csv")
    assert frame.loc[frame["param_lr"] == 1e6, "mean_test_score"].isna().all() and (frame["param_lr"] == 1e6).any()
    capsys.readouterr()
    assert main(["compare", str(run), "--by", "lr", "--retrain-epochs", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    failed = int(frame.loc[frame["param_lr"] == 1e6, "trial"].min())
    assert f"| 1000000.0 | {failed} | failed | failed |" in out
    assert f"failed: 1000000.0: every config of the group failed in the search (trial {failed}: diverged" in out
    assert "(2 groups," in out
    assert main(["compare", str(run), "--by", "lr", "--retrain-epochs", "1", "--no-progress"]) == 0  # again
    assert f"| 1000000.0 | {failed} | failed | failed |" in capsys.readouterr().out
    table = pd.read_csv(run / "compare.csv")  # the failed row replaced, not written once more
    assert table["test_accuracy"].notna().sum() == 1 and table["error"].fillna("").str.startswith("every").sum() == 1
    assert main(["compare", str(run), "--by", "lr", "--retrain-epochs", "1", "--no-progress", "--same-config"]) == 0
    out = capsys.readouterr().out
    assert "| 1000000.0 | " in out and "| failed |" in out and "failed: 1000000.0: " in out and "nan%" not in out
