"""Bad flags are refused before any work (no run folder appears), and a damaged run folder or
winner is named with what to do, never a SQLAlchemy or torch traceback."""

import shutil

import pytest

from hpsearch import load_results, load_winner
from hpsearch.cli import main
from hpsearch.errors import UsageError

QUICK = ["--dataset", "digits", "--n", "2", "--cv", "2", "--max-epochs", "1", "--no-progress"]


@pytest.mark.parametrize("flags, message", [
    (["--seed", str(2**40)], "--seed must be at most 4294967295"),
    (["--seed", "-1"], "--seed must be a whole number >= 0"),
    (["--cv", "2000"], "--cv 2000 is more folds than the rarest class (8) has images"),
    (["--top", "0"], "--top must be"),
    (["--retrain-epochs", "0"], "--retrain-epochs must be"),
    (["--images", "0"], "--images must be"),
    (["--units", "-1"], "--units must be"),
    (["--images", str(10**10)], "--images must be at most 1,000 (one panel each), got 10,000,000,000"),
    (["--max-train", "0"], "--max-train must be"),
    (["--max-train", "5"], "--max-train 5 is too small"),
    (["--n", str(10**12), "--strategy", "halving"], "--n must be at most 1,000,000"),
    (["--n", "abc"], "argument --n: must be a whole number, got 'abc' (see hpsearch search --help)"),
    (["--test-size", "half"], "argument --test-size: must be a number, got 'half'"),
    (["--n", "-1x"], "argument --n: must be a whole number, got '-1x'"),  # was "expected one argument"
    (["--max-epochs", str(10**20)], "--max-epochs must be at most 1,000,000, got 100,000,000,000,000,000,000"),
    (["--batch-size", str(10**20)], "--batch-size must be at most 1,000,000,000"),  # every config failed
    (["--retrain-epochs", str(10**7)], "--retrain-epochs must be at most 1,000,000"),  # trained without end
    (["--fold-racing", "0.1"], "--fold-racing applies only with --strategy halving; --strategy random would ignore "
                               "it: leave it out, or choose --strategy halving"),
    (["--strategy", "halving", "--factor", "1"], "--factor must be a whole number >= 2"),
])
def test_bad_flags_are_refused_before_the_run_folder_exists(flags, message, tmp_path, capsys):
    out = tmp_path / "run"
    try:
        code = main(["search", *QUICK, "--out", str(out), *flags])
    except SystemExit as exc:  # argparse's own exit, as the console script sees it
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # nothing created, nothing trained


@pytest.fixture
def run_copy(retrained_run, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(retrained_run, target)
    return target


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _overwrite(path):
    path.write_bytes(b"not what it should be\n" * 50)


@pytest.mark.parametrize("damage", [_truncate, _overwrite, lambda p: p.write_bytes(b"")])
def test_a_damaged_trials_db_is_named_with_what_to_do(damage, run_copy, capsys):
    damage(run_copy / "trials.db")
    assert main(["search", "--resume", str(run_copy), "--no-progress", "--no-retrain"]) == 2
    err = capsys.readouterr().err
    assert f"{run_copy / 'trials.db'} is damaged" in err and "trials.csv" in err and "mv " in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    if (run_copy / "trials.db").stat().st_size:  # an empty file is only suspicious when a search opens it
        with pytest.raises(UsageError, match="trials.db is damaged"):
            load_results(run_copy)
        assert main(["retrain", str(run_copy), "--no-progress"]) == 2


def test_a_winner_with_weights_that_are_not_finite_is_refused(run_copy, capsys):
    """Every prediction was the argmax of NaN ("pred 0" on every panel) and the pictures exited 0."""
    import torch

    good = (run_copy / "winner.pt").read_bytes()
    bundle = torch.load(run_copy / "winner.pt", weights_only=True)
    first = next(iter(bundle["state_dict"]))
    bundle["state_dict"][first] = bundle["state_dict"][first] * float("nan")
    torch.save(bundle, run_copy / "winner.pt")
    assert main(["plot", "confusion-matrix", str(run_copy)]) == 2
    err = capsys.readouterr().err
    assert f"winner.pt is damaged: its weights {first} are not finite (NaN or inf); retrain" in err, err
    # an MLP: the layer's methods do not apply, said before the layer is looked up (it said "name a convolution (none)")
    (run_copy / "winner.pt").write_bytes(good)
    assert main(["plot", "all", str(run_copy), "--layer", "layers.1"]) == 2
    assert "--layer applies to grad-cam and hires-cam, which do not apply to this winner" in capsys.readouterr().err


@pytest.mark.parametrize("damage", [_truncate, _overwrite])
def test_a_damaged_winner_is_named_with_what_to_do(damage, run_copy, capsys):
    damage(run_copy / "winner.pt")
    with pytest.raises(UsageError, match=r"winner.pt is damaged .*hpsearch retrain"):
        load_winner(run_copy)
    assert main(["plot", "all", str(run_copy)]) == 2
    err = capsys.readouterr().err
    assert "winner.pt is damaged" in err and "Traceback" not in err
    if damage is _overwrite:  # text, not an archive: said as such, not as "possibly crafted" (nor "EOFError")
        assert "(not a file torch.save wrote: empty, cut short or replaced by another kind of file)" in err, err
    else:  # cut short: said in our words, not torch's cut-off "internal miniz error. If you are seeing this..."
        assert "(a torch.save archive cut short or damaged (its zip directory or a record cannot be read))" in err
