"""The command line as a user meets it: exit codes, messages, Ctrl-C, kill -9 and resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hpsearch.cli import main
from hpsearch.errors import UsageError
from hpsearch.rundir.lock import RunLock
from hpsearch.rundir.store import load_results

ROOT = Path(__file__).resolve().parent.parent
BASE = ["--dataset", "digits", "--cv", "2", "--max-epochs", "4", "--no-progress", "--no-retrain"]
FAST = [*BASE, "--patience", "0"]


def test_end_to_end_tiny_budget(tmp_path, capsys):
    # in this process: run_search.py is `sys.exit(main(["search", *argv]))`, and the tests below that
    # signal a search run it as a real process
    out = tmp_path / "run"
    assert main(["search", "--n", "3", "--out", str(out), "--n-jobs", "2", *FAST]) == 0
    printed = capsys.readouterr().out
    assert "3 configs in" in printed and "best: trial" in printed
    scores = np.loadtxt(out / "sorted_scores.dat", skiprows=1)
    assert scores.shape == (3, 5) and np.all(np.diff(scores[:, 2]) <= 0)
    settings = json.loads((out / "settings.json").read_text())
    assert settings["n"] == 3 and settings["cv"] == 2 and settings["dataset"] == "digits"


def _bad_idx_dir(tmp_path):
    folder = tmp_path / "corrupt"
    folder.mkdir()
    for stem in ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"]:
        (folder / stem).write_bytes(b"not an idx file at all")
    return folder


def _a_file(tmp_path):
    path = tmp_path / "a-file"
    path.write_text("a file, not a folder")
    return path


def _space(tmp_path, text):
    path = tmp_path / "space.toml"
    path.write_text(text)
    return str(path)


BAD_INPUTS = [
    (lambda t: ["--n", "0"], "--n must be a whole number >= 1, got 0"),
    (lambda t: ["--cv", "1"], "--cv must be a whole number >= 2, got 1"),
    (lambda t: ["--n-jobs", "0"], "--n-jobs must be a whole number >= 1, or -1 for one per core; got 0"),
    (lambda t: ["--dataset", "cifar"],
     "--dataset must be one of digits, mnist, fashion-mnist, cifar10, triple-mnist, npz, folder, got 'cifar'; did you mean 'cifar10'?"),
    (lambda t: ["--dataset", "mnist", "--data-dir", str(t)], "lacks the mnist idx files"),
    (lambda t: ["--dataset", "mnist", "--data-dir", str(t / "nope")], "does not exist"),
    (lambda t: ["--dataset", "mnist", "--data-dir", str(_bad_idx_dir(t))], "is not an idx file: it starts with"),
    (lambda t: ["--space", _space(t, "[lr]\ndistribution='log_uniform'\nlow=0.1\nhigh=0.001\n")],
     "must satisfy low < high, got (0.1, 0.001); did you swap them?"),
    (lambda t: ["--space", _space(t, "[lr]\ndistribution='log_uniform'\nlow=-1\nhigh=0.1\n")],
     "a log range needs 0 < low < high, got low = -1"),
    (lambda t: ["--space", _space(t, "[optimizer]\ndistribution='categorical'\nchoices=['adam','sgd']\n"
                                     "p=[0.5,0.6]\n")], "probabilities p must be >= 0 and sum to 1"),
    (lambda t: ["--space", _space(t, "dropuot = 0.1\n")], "unknown hyperparameter 'dropuot'"),
    (lambda t: ["--space", "nope"], "--space nope: no such file"),
    (lambda t: ["--space", str(t)], "is a folder; give the .toml file in it (a run folder keeps its space as space.toml)"),
    (lambda t: ["--out", str(_a_file(t) / "run")], "is not writable"),
    (lambda t: ["--out", str(_a_file(t))], "is a file, not a folder; name a new folder, or a run folder to resume"),
    (lambda t: ["--device", "tpu"], "--device must be cpu, cuda, cuda:N or auto, got 'tpu'"),
    (lambda t: ["--device", "cuda:x"], "--device must be cpu, cuda, cuda:N or auto, got 'cuda:x'"),
    (lambda t: ["--device", "cuda:01"], "--device must be cpu, cuda, cuda:N or auto, got 'cuda:01'"),  # torch's
    (lambda t: ["--max-models-per-chunk", "4"],
     "--max-models-per-chunk applies only with --engine batched; --engine skorch would ignore it"),
    (lambda t: ["--images", "0"], "--images must be a whole number >= 1, got 0"),
    (lambda t: ["--data-dir", str(t)], "--data-dir applies only with --dataset mnist or fashion-mnist or cifar10 or "
                                       "triple-mnist or npz or folder; --dataset digits would ignore it"),
    (lambda t: ["--resume", str(t)], "no settings.json there"),
    (lambda t: ["--resume", str(t / "nowhere")], "nowhere: no such folder; pass the folder a search wrote (its --out)"),
    (lambda t: ["--strategy", "halving", "--factor", "1"], "--factor must be a whole number >= 2, got 1"),
    (lambda t: ["--strategy", "halving", "--min-epochs", "9", "--max-epochs", "3"],
     "--min-epochs (9) must be <= --max-epochs (3)"),
    (lambda t: ["--strategy", "nosuch"], "--strategy must be one of random, halving, hyperband, tpe, tpe-halving, got 'nosuch'"),
    (lambda t: ["--strategy", "halving", "--n", "2"], "--n (2) must be >= --factor (3) for successive halving"),
    (lambda t: ["--strategy", "halving", "--space", _space(t, "max_epochs = 5\n")],
     "--strategy halving gives each rung its epochs, but the space"),
]


@pytest.mark.parametrize("make_args, message", BAD_INPUTS)
def test_bad_input_exits_2_with_message(tmp_path, capsys, make_args, message):
    code = main(["search", "--out", str(tmp_path / "run"), *make_args(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.startswith("hpsearch: error: ") and "Traceback" not in err
    assert len(err.splitlines()) == 1, err  # one line, as every bad input gets


@pytest.mark.parametrize("command", [["predict", "{run}", "x.png"], ["retrain", "{run}"], ["export", "{run}"],
                                     ["report", "{run}"], ["serve", "{run}"], ["plot", "all", "{run}"],
                                     ["compare", "{run}"]])
def test_a_run_folder_that_is_not_there_is_said_first(tmp_path, capsys, command):
    run = tmp_path / "nope"
    assert main([word.format(run=run) for word in command]) == 2
    err = capsys.readouterr()
    assert err.err == (f"hpsearch: error: RUN_DIR {run}: no such folder; give the folder hpsearch search wrote (its "
                       "--out, by default results/<dataset>_<space>[_<strategy>]_seed<seed>; ls results/)\n")
    assert err.out == ""  # nothing announced before it (retrain used to say what it would retrain)
    (tmp_path / "a_file").write_text("x")
    assert main([word.format(run=tmp_path / "a_file") for word in command]) == 2
    assert "is a file, not a run folder" in capsys.readouterr().err


def test_options_may_come_before_the_names_they_follow():
    from hpsearch.cli import parse_args

    args = parse_args(["predict", "RUN", "--explain", "--out-dir", "maps", "a.png", "b.png"])
    assert (args.run_dir, args.files, args.explain, args.out_dir) == ("RUN", ["a.png", "b.png"], True, "maps")
    args = parse_args(["plot", "grad-cam", "--layer", "features.2", "RUN", "--images", "2"])
    assert (args.method, args.run_dir, args.layer, args.images) == ("grad-cam", "RUN", "features.2", 2)
    with pytest.raises(SystemExit):  # a name nothing takes is still refused
        parse_args(["plot", "grad-cam", "RUN", "--images", "2", "OTHER"])
    with pytest.raises(SystemExit):
        parse_args(["search", "--n", "5", "stray"])


def test_a_choice_is_taken_in_any_case_and_a_near_miss_named_in_any_case(capsys):
    """--dataset Digits was taken while --strategy TPE, --engine Batched and export --format ONNX were refused,
    and TPE got no did-you-mean."""
    from hpsearch.cli import parse_args

    args = parse_args(["search", "--strategy", "TPE", "--engine", "Batched", "--schedule", "Cosine", "--winner-by",
                       "CV", "--backend", "Loky", "--scoring", "Accuracy"])
    assert (args.strategy, args.engine, args.schedule, args.winner_by, args.backend, args.scoring) == (
        "tpe", "batched", "cosine", "cv", "loky", "accuracy")
    assert parse_args(["export", "RUN", "--format", "ONNX"]).format == "onnx"
    assert parse_args(["plot", "Confusion-Matrix", "RUN"]).method == "confusion-matrix"
    assert main(["search", "--strategy", "TPX", "--n", "2"]) == 2
    assert "got 'tpx'; did you mean 'tpe'?" in capsys.readouterr().err
    assert main(["predict", "--model", "model.onnx"]) == 2  # no FILE: not "RUN_DIR is required"
    assert capsys.readouterr().err == "hpsearch: error: FILE is missing: hpsearch predict --model model.onnx FILE...\n"


def test_a_resume_that_changes_the_engine_is_named_by_the_engine(tmp_path):
    """--max-models-per-chunk with --engine batched on a skorch run was refused as "applies only with engine
    batched ... choose engine batched", which the user had done: the engine change is the reason."""
    from hpsearch.search_flags import _check_resume_keeps

    stored = {"engine": "skorch", "max_models_per_chunk": None, "strategy": "random", "dataset": "digits"}
    with pytest.raises(UsageError, match=r"engine batched, but the run was searched with engine skorch"):
        _check_resume_keeps(tmp_path, {"engine": "batched", "max_models_per_chunk": 4}, stored)


def test_a_misspelt_loader_option_lists_only_the_users_options():
    from hpsearch.data import load_dataset

    with pytest.raises(UsageError) as refused:
        load_dataset("mnist", None, colr=1)
    assert "takes no option 'colr'" in str(refused.value) and "class_names" not in str(refused.value)


def test_unknown_flag_exits_2_without_traceback(capsys):
    # argparse's own exit, as run_search.py (`sys.exit(main(["search", *argv]))`) passes it on: an
    # uncaught SystemExit(2) is exit status 2 and prints no traceback; any other exception would
    with pytest.raises(SystemExit) as exc:
        main(["search", "--nn", "5"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized argument --nn" in err and "Traceback" not in err


def test_unknown_flag_names_the_subcommand_and_suggests_its_closest_flags(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["search", "--epochs", "5"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("hpsearch search: error: unrecognized argument --epochs; did you mean --max-epochs")
    assert err.rstrip().endswith("(see hpsearch search --help)") and "5" not in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exc:  # the subcommand's own flags: retrain has --top
        main(["retrain", "RUN", "--topp", "3"])
    assert exc.value.code == 2
    assert capsys.readouterr().err == ("hpsearch retrain: error: unrecognized argument --topp; did you mean --top? "
                                       "(see hpsearch retrain --help)\n")
    with pytest.raises(SystemExit):  # --flag=value, and several at once: a hint for each that has one
        main(["plot", "grad-cam", "RUN", "--imgs=3", "--layr", "x", "--zzz"])
    err = capsys.readouterr().err
    assert err == ("hpsearch plot: error: unrecognized arguments --imgs, --layr, --zzz; did you mean --images for "
                   "--imgs, --layer for --layr? (see hpsearch plot --help)\n")


@pytest.mark.parametrize("argv, said", [
    (["search", "--resume", ""], "hpsearch search: error: --resume is empty (''); give a value, or leave the flag out"),
    (["search", "--out", ""], "--out is empty"),
    (["search", "--dataset", "mnist", "--data-dir", ""], "--data-dir is empty"),
    (["retrain", ""], "hpsearch retrain: error: RUN_DIR is empty (''); give a value (see hpsearch retrain --help)"),
    (["predict", "RUN", "a.png", ""], "FILE is empty"),
    (["serve", "RUN", "--host", ""], "--host is empty"),
])
def test_an_empty_value_is_refused_not_taken_for_none(argv, said, tmp_path, monkeypatch, capsys):
    """--resume "$RUN" with RUN unset started a new search, --out '' wrote to the default folder, --data-dir ''
    was named as '.', serve --host '' would bind every address: an empty word is refused by its flag."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and said in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no run folder started


def _help(command: str, capsys) -> str:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_help_says_where_a_retraining_flag_takes_its_default(capsys):
    """search --help said "(default: the run's stored --top, else 15)", but a search (or the same command
    again) takes 15; only --resume and hpsearch retrain take the stored one. --schedule named two defaults."""
    search, retrain = _help("search", capsys), _help("retrain", capsys)
    assert "retrain the best TOP configs (default 15; with --resume, the run's stored --top)" in search
    assert "retrain the best TOP configs (default: the run's stored --top, else 15)" in retrain
    assert search.count("default each config's own: none unless the space searched one; with --resume, the run's "
                        "stored --schedule") == 1
    assert retrain.count("(default: the run's stored --schedule, else each config's own") == 1


def test_bad_picture_counts_are_refused_with_no_retrain_too(tmp_path, capsys):
    """--no-retrain ran with --units 0 --images -3 (plot refuses them): checked before any search."""
    assert main(["search", "--no-retrain", "--units", "0", "--n", "1", "--out", str(tmp_path / "run")]) == 2
    assert "--units must be" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_an_abbreviated_flag_is_not_taken_for_the_flag_it_starts(capsys):
    """argparse would take --max-epoch for --max-epochs (and --re for nothing, being ambiguous): a flag
    added later could change what an old command means, so only whole flags are taken."""
    for command in (["search", "--max-epoch", "3"], ["retrain", "RUN", "--retrain-epoch", "3"]):
        with pytest.raises(SystemExit) as exc:
            main(command)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert f"unrecognized argument {command[-2]}; did you mean {command[-2]}s?" in err, err


def test_unknown_flag_without_a_close_one_suggests_nothing(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["search", "--frobnicate", "1"])
    assert exc.value.code == 2
    assert capsys.readouterr().err == ("hpsearch search: error: unrecognized argument --frobnicate "
                                       "(see hpsearch search --help)\n")
    with pytest.raises(SystemExit) as exc:  # a stray word: no flag to suggest
        main(["search", "--n", "5", "stray"])
    assert exc.value.code == 2
    assert capsys.readouterr().err == "hpsearch search: error: unrecognized argument stray (see hpsearch search --help)\n"


def test_resume_with_other_settings_is_refused(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["search", "--n", "1", "--out", out, "--n-jobs", "2", *FAST]) == 0
    code = main(["search", "--n", "2", "--out", out, "--space", "mlp_deep", "--n-jobs", "2", *FAST])
    err = capsys.readouterr().err
    assert code == 2 and "holds a search with other settings (space." in err and "space.hidden.high: stored 600, now 512" in err
    code = main(["search", "--n", "2", "--out", out, "--n-jobs", "2", *BASE, "--patience", "9"])
    err = capsys.readouterr().err
    assert code == 2 and "--patience: stored 0, now 9" in err
    code = main(["search", "--n", "2", "--out", out, "--n-jobs", "2", *FAST, "--engine", "batched"])
    err = capsys.readouterr().err
    assert code == 2 and "--engine: stored skorch, now batched" in err
    assert len(load_results(out)) == 1


def test_a_space_file_changed_only_in_its_comments_resumes(tmp_path, capsys):
    from hpsearch.space.search_space import load_space

    out, space = str(tmp_path / "run"), tmp_path / "mine.toml"
    space.write_text(load_space("mlp_mnist").source)
    assert main(["search", "--n", "1", "--out", out, "--space", str(space), "--n-jobs", "2", *FAST]) == 0
    space.write_text("# my copy, commented\n" + load_space("mlp_mnist").source.replace("\n", "\n\n", 3))
    assert main(["search", "--n", "2", "--out", out, "--space", str(space), "--n-jobs", "2", *FAST]) == 0
    assert len(load_results(out)) == 2
    space.write_text(load_space("mlp_mnist").source.replace("high = 1e-1", "high = 0.5", 1))
    assert main(["search", "--n", "3", "--out", out, "--space", str(space), "--n-jobs", "2", *FAST]) == 2
    assert "other settings (space.lr.high: stored 0.1, now 0.5)" in capsys.readouterr().err


def test_second_writer_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    with RunLock(out):
        code = main(["search", "--n", "1", "--out", str(out), *FAST])
    err = capsys.readouterr().err
    assert code == 2 and "is in use by another hpsearch command (pid" in err
    assert "wait for it to finish, then run the same command again (it goes on from what is stored)" in err
    assert not (out / "trials.db").exists()
    assert main(["search", "--n", "1", "--out", str(out), *FAST]) == 0  # free again: it runs
    with RunLock(out):  # a --resume is told the same, not to pass --out (which --resume refuses)
        assert main(["search", "--resume", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "then run the same command again" in err and "a new search beside it needs its own --out" in err


def _wait_for_trials(out: Path, count: int, proc, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        path = out / "sorted_scores.dat"
        if path.exists() and len(path.read_text().splitlines()) - 1 >= count:
            return
        if proc.poll() is not None:
            raise AssertionError(f"search ended early: {proc.communicate()}")
        time.sleep(0.2)
    raise AssertionError("no trials finished in time")


def _search_args(out, n, jobs=1):
    return ["--n", str(n), "--out", str(out), "--n-jobs", str(jobs), "--dataset", "digits", "--cv", "2",
            "--max-epochs", "20", "--patience", "0", "--no-progress", "--no-retrain"]


def _start(out, n, jobs=1):
    """The search as a real process (it gets the signals). 20 epochs make a config take 0.4-2 s, and
    the signal is sent once sorted_scores.dat (rewritten at most every 2 s) shows the trials waited
    for: the configs left must outlast that lag."""
    return subprocess.Popen([sys.executable, str(ROOT / "run_search.py"), *_search_args(out, n, jobs)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))


def _resume(out, n, capsys):
    """The same command again, in this process (nothing of the killed process is in it either): the
    resume is what is checked here, not its process."""
    assert main(["search", *_search_args(out, n)]) == 0
    assert "configs in" in capsys.readouterr().out


def _stored(out):
    return load_results(out).set_index("trial").sort_index()


@pytest.mark.slow
def test_kill_9_then_resume_loses_nothing_finished(tmp_path, capsys):
    out, n = tmp_path / "run", 6  # sorted_scores.dat follows the store up to 2 s late: 2 rows there may be 4 trials
    proc = _start(out, n)
    _wait_for_trials(out, 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    before = _stored(out)
    assert 2 <= len(before) < n
    _resume(out, n, capsys)
    after = _stored(out)
    assert list(after.index) == list(range(n))
    cols = ["mean_test_score", "split0_test_score", "split1_test_score", "mean_fit_time", "param_hidden"]
    pd.testing.assert_frame_equal(before[cols], after.loc[before.index, cols])


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_kill_9_of_a_search_leaves_no_worker_behind(tmp_path):
    out = tmp_path / "run"
    proc = _start(out, 40, jobs=2)
    _wait_for_trials(out, 1, proc)
    workers = _children(proc.pid)
    assert workers, "the search runs its folds in job processes"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.2)
    assert not [pid for pid in workers if _alive(pid)], "job processes outlived their search"


@pytest.mark.slow
def test_ctrl_c_exits_130_keeps_trials_and_resumes(tmp_path, capsys):
    out, n = tmp_path / "run", 4
    proc = _start(out, n)
    _wait_for_trials(out, 1, proc)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "interrupted:" in stderr and "run the same command again" in stderr and "Traceback" not in stderr
    kept = _stored(out)
    assert 1 <= len(kept) < n
    assert kept["error"].eq("").all()  # the cut-short fit was discarded, not stored as a result
    _resume(out, n, capsys)
    assert list(_stored(out).index) == list(range(n))


@pytest.mark.slow
def test_the_command_line_says_what_it_does(tmp_path, capsys):
    """plot with a run folder but no METHOD names the missing METHOD; Hyperband's plan is said per
    bracket; a tpe run that cannot propose anything says it is random search."""
    (tmp_path / "run").mkdir()
    assert main(["plot", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"METHOD is missing before {tmp_path / 'run'}: hpsearch plot all" in err and "grad-cam" in err
    assert main(["search", "--strategy", "hyperband", "--n", "9", "--min-epochs", "1", "--max-epochs", "3",
                 "--cv", "2", "--patience", "0", "--no-progress", "--no-retrain", "--out", str(tmp_path / "hb")]) == 0
    assert "configs x epochs per rung, bracket 1: 5 x 1, 2 x 3; bracket 2: 4 x 3 (x 2 folds)" in capsys.readouterr().out
    # a resume the run folder refuses says why, and not a plan it will never train
    assert main(["search", "--strategy", "hyperband", "--n", "6", "--min-epochs", "1", "--max-epochs", "3",
                 "--cv", "2", "--patience", "0", "--no-progress", "--no-retrain", "--out", str(tmp_path / "hb")]) == 2
    said = capsys.readouterr()
    # the setting first and alone: Hyperband's brackets follow from --n (they were dumped before it)
    assert "holds a search with other settings (--n: stored 9, now 6 (halving's and Hyperband's rungs" in said.err
    assert "brackets" not in said.err
    assert "per rung" not in said.out
    # another strategy: named first and alone, not with the settings only the stored strategy has
    assert main(["search", "--strategy", "random", "--n", "9", "--max-epochs", "3", "--cv", "2", "--patience", "0",
                 "--no-progress", "--no-retrain", "--out", str(tmp_path / "hb")]) == 2
    assert "holds a search with other settings (--strategy: stored hyperband, now random); resume it" in \
        capsys.readouterr().err
    assert main(["search", "--strategy", "tpe", "--n", "2", "--n-startup", "5", "--max-epochs", "1", "--cv", "2",
                 "--no-progress", "--no-retrain", "--out", str(tmp_path / "tpe")]) == 0
    assert "every config is drawn at random and TPE proposes none: this is random search" in capsys.readouterr().err
    # a resume keeps its --n-startup: the note does not advise lowering it
    assert main(["search", "--resume", str(tmp_path / "tpe"), "--no-progress", "--no-retrain"]) == 0
    err = capsys.readouterr().err
    assert "this is random search; raise --n" in err and "--n-startup\n" not in err and "lower" not in err, err


def test_a_run_searched_without_retraining_is_resumed_without_it(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["search", "--n", "1", "--cv", "2", "--max-epochs", "1", "--no-progress", "--no-retrain",
                 "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["search", "--resume", str(run), "--n", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "was searched with --no-retrain: resuming it does not retrain either" in out
    assert not (run / "retrain.csv").exists() and "retraining the best" not in out
    assert f"retrain later with: hpsearch retrain {run}" in out
    # retrained since: a resume names that winner instead of asking for a retraining as if there were none
    assert main(["retrain", str(run), "--top", "1", "--retrain-epochs", "1", "--no-progress"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    winner = summary["winner"]["trial"]
    # a --resume reads the stored space.toml: the run kept its space's name (it became that file's path)
    assert summary["search"]["space"] == json.loads((run / "settings.json").read_text())["space"] == "mlp_mnist"
    capsys.readouterr()
    assert main(["search", "--resume", str(run), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"the winner retrained earlier is trial {winner} (summary.json); hpsearch retrain {run} brings it up to " \
           "date" in out and "retrain later" not in out
    # --resume with a flag that makes other trials: refused by that flag, before any data are loaded
    # (not by --fold-racing, which it would clash with, nor after downloading another dataset)
    before = (run / "settings.json").read_text()
    assert main(["search", "--resume", str(run), "--strategy", "halving", "--dataset", "mnist",
                 "--data-dir", str(tmp_path / "nowhere")]) == 2
    assert f"--resume {run}: --dataset mnist, --strategy halving, but the run was searched with --dataset digits, " \
           "--strategy random; leave --dataset and --strategy out to resume it" in capsys.readouterr().err
    assert (run / "settings.json").read_text() == before
    # a flag this run's strategy ignores: said so, as a new search says it (it was "searched with --factor None")
    assert main(["search", "--resume", str(run), "--factor", "3"]) == 2
    assert "--factor applies only with --strategy halving or hyperband or tpe-halving; --strategy random would " \
           "ignore it: leave it out" in capsys.readouterr().err


@pytest.mark.slow
def test_a_resume_keeps_the_command_that_began_the_run(tmp_path, monkeypatch):
    """settings.json's argv stays the first command (what made the trials); a resume by another
    command is kept beside it, and the report shows both."""
    from hpsearch.report.content import run_section

    out = str(tmp_path / "run")
    first = ["hpsearch", "search", "--n", "2", "--out", out, *FAST, "--max-epochs", "1"]
    monkeypatch.setattr(sys, "argv", first)
    assert main(first[1:]) == 0
    resume = ["hpsearch", "search", "--resume", out, "--no-progress"]
    monkeypatch.setattr(sys, "argv", resume)
    assert main(resume[1:]) == 0
    settings = json.loads((Path(out) / "settings.json").read_text())
    assert (settings["argv"], settings["resumed_argv"], settings["n"]) == (first, resume, 2)
    assert f"{' '.join(first)}  (last resumed by: {' '.join(resume)})" in run_section(Path(out), settings)
    monkeypatch.setattr(sys, "argv", first)  # the first command again: nothing left to say beside it
    assert main(first[1:]) == 0
    settings = json.loads((Path(out) / "settings.json").read_text())
    assert settings["argv"] == first and "resumed_argv" not in settings


def test_the_winner_line_shows_its_config_as_the_best_line_does(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["search", "--n", "2", "--out", out, *FAST, "--max-epochs", "1"]) == 0
    searched = capsys.readouterr().out.splitlines()
    best = next(i for i, line in enumerate(searched) if line.startswith("best: trial"))
    assert main(["retrain", out, "--top", "1", "--retrain-epochs", "1", "--no-progress"]) == 0
    retrained = capsys.readouterr().out.splitlines()
    winner = next(i for i, line in enumerate(retrained) if line.startswith("winner: trial"))
    assert searched[best].split()[2] == retrained[winner].split()[2]  # --top 1: the same trial
    params = searched[best + 1].split()
    assert params == retrained[winner + 1].split() and any(p.startswith("lr=") for p in params)
    assert all(len(p.split("=")[1]) <= 12 for p in params if p.startswith(("lr=", "dropout="))), params  # 6 digits


@pytest.mark.slow
def test_a_tpe_resume_with_other_jobs_says_its_configs_change(tmp_path, capsys):
    """TPE asks one config per job at a time: a resume that asks with another number of jobs proposes
    other configs than an uninterrupted run would, and says so; the same number says nothing."""
    out = str(tmp_path / "run")
    tpe = ["search", "--strategy", "tpe", "--n-startup", "2", "--out", out, *FAST, "--max-epochs", "1"]
    assert main([*tpe, "--n", "3", "--n-jobs", "2"]) == 0
    assert json.loads((Path(out) / "settings.json").read_text())["proposal_batch"] == 2
    assert "note" not in capsys.readouterr().err
    assert main([*tpe, "--n", "4", "--n-jobs", "1"]) == 0  # one proposal left, asked alone
    assert ("hpsearch: note: this run's TPE proposed 2 configs at a time and now proposes 1 (--n-jobs 1), so the "
            "configs it proposes from here differ from an uninterrupted run's; --n-jobs 2 proposes as it did"
            ) in capsys.readouterr().err
    assert json.loads((Path(out) / "settings.json").read_text())["proposal_batch"] == 1
    assert main([*tpe, "--n", "4", "--n-jobs", "2"]) == 0  # nothing left to propose: nothing to say
    assert "note" not in capsys.readouterr().err


def test_a_run_that_stored_a_setting_it_ignores_resumes(tmp_path):
    """Runs made before halving's factor became automatic stored factor 3 with random search too; a
    --resume drops a stored setting that its own run ignores instead of refusing it."""
    out = tmp_path / "run"
    assert main(["search", "--n", "2", "--out", str(out), *FAST, "--max-epochs", "1"]) == 0
    settings = json.loads((out / "settings.json").read_text())
    assert settings["factor"] is None and settings["strategy"] == "random"
    (out / "settings.json").write_text(json.dumps({**settings, "factor": 3}))  # as an older version wrote it
    assert main(["search", "--resume", str(out), "--n", "3", "--no-progress"]) == 0
    assert len(load_results(out)) == 3 and json.loads((out / "settings.json").read_text())["factor"] is None
