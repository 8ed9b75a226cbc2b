"""Your network's code as a run records it: a digest of your module and the neighbours it imports (as syntax,
comments and layout aside) in the run's fingerprint and in the winner. An edit made between a search and its
resume, its retraining or a prediction used to mix trials of two codes and crown a winner under scores the
edited code never earned; each is now refused in one line, and the run is kept as it was."""

import pytest
from fixtures.folders import write_own_network

from hpsearch.cli import main
from hpsearch.errors import UsageError
from hpsearch.rundir.store import load_records, open_study
from hpsearch.winner.bundle import load_winner

SEARCH = ["--dataset", "digits", "--cv", "2", "--max-epochs", "1", "--patience", "0", "--no-progress",
          "--top", "1", "--retrain-epochs", "1", "--images", "2", "--units", "2"]


@pytest.fixture
def nets(tmp_path):
    return write_own_network(tmp_path / "nets")


def _search(space, out, n):
    return main(["search", "--space", str(space), "--out", str(out), "--n", str(n), *SEARCH])


def _edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_an_edit_of_your_code_is_refused_by_a_resume_a_retraining_and_the_winner(nets, tmp_path, capsys):
    run = tmp_path / "run"
    assert _search(nets, run, 1) == 0
    module, neighbour = nets.parent / "mynets.py", nets.parent / "blocks.py"
    _edit(module, "class SmallCNN(nn.Module):", "# a comment, and the layout changed\n\n\nclass SmallCNN(  nn.Module ):")
    assert _search(nets, run, 2) == 0  # comments and layout are not the code
    assert len(load_records(run)) == 2

    _edit(neighbour, "padding=1)", "padding=1, bias=False)")  # the neighbour it imports: code too
    capsys.readouterr()
    assert _search(nets, run, 3) == 2
    err = capsys.readouterr().err
    assert "holds a search with other settings (the code of mynets:SmallCNN: stored " in err
    assert "put that code back, or search the edited one in a new folder" in err and "Traceback" not in err
    assert len(load_records(run)) == 2  # no trial of the edited code joined them
    assert main(["retrain", str(run), "--top", "1", "--retrain-epochs", "1"]) == 2
    out, err = capsys.readouterr()
    assert f"{run}: the code of mynets:SmallCNN (its module and the modules beside it that it imports) changed " \
           "since the run's search" in err and "retraining the best" not in out  # refused before it is announced

    _edit(neighbour, "padding=1, bias=False)", "padding=1)")  # put back: it retrains, and its winner loads
    assert main(["retrain", str(run), "--top", "1", "--retrain-epochs", "1", "--no-progress"]) == 0
    assert load_winner(run).winner_["module"]["code"]
    _edit(module, "return self.head(self.features(x).flatten(1))", "return 2 * self.head(self.features(x).flatten(1))")
    with pytest.raises(UsageError, match="winner.pt: the winner's network mynets:SmallCNN changed since the "
                                         "retraining: put it back as it was"):
        load_winner(run)  # the same weights under another forward: predict, serve and export refuse it


def test_a_run_made_before_the_code_was_recorded_resumes(nets, tmp_path):
    run = tmp_path / "run"
    assert _search(nets, run, 1) == 0
    study = open_study(run)
    fingerprint = study.user_attrs["fingerprint"]
    assert set(fingerprint["module_code"]) == {"mynets:SmallCNN"}
    study.set_user_attr("fingerprint", {k: v for k, v in fingerprint.items() if k != "module_code"})
    assert _search(nets, run, 2) == 0 and len(load_records(run)) == 2
