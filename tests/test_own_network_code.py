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

SEARCH = ["--dataset", "digits", "--cv", "2", "--max-epochs", "1", "--patience", "0", "--no-progress", "--no-retrain"]


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
    assert main(["report", str(run)]) == 0  # a report reads what the run holds: its data too (it said they failed)
    assert "the data could not be loaded here" not in (run / "report.html").read_text()
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


def test_an_edited_neighbour_is_imported_anew_in_the_same_process(tmp_path):
    """Only the module the space names was stamped: an edit of the neighbour it imports kept the old neighbour in
    a notebook's process, while the run recorded the edited files' digest. A math.py beside it is not the math
    it imports: editing it is no edit of the code (it was refused as one)."""
    import os

    from hpsearch.training.models.code import code_digest, same_code
    from hpsearch.training.models.user import add_module_path, user_model

    (tmp_path / "edited_blocks.py").write_text("from torch import nn\n\n\ndef conv(c_in, c_out):\n"
                                               "    return nn.Conv2d(c_in, c_out, 3, padding=1)\n")
    (tmp_path / "edited_net.py").write_text("import math\n\nimport edited_blocks as b\nfrom torch import nn\n\n\n"
                                            "class Net(nn.Module):\n    def __init__(self, image_shape, n_classes):\n"
                                            "        super().__init__()\n        self.conv = b.conv(1, 2)\n")
    (tmp_path / "math.py").write_text("# a scratch file, never imported: the standard library's math is\n")
    add_module_path(tmp_path)
    before = code_digest("edited_net:Net")
    assert user_model("edited_net:Net")((1, 8, 8), 10).conv.bias is not None
    (tmp_path / "math.py").write_text("# edited\n")
    assert same_code(before, code_digest("edited_net:Net"))
    _edit(tmp_path / "edited_blocks.py", "padding=1)", "padding=1, bias=False)")
    os.utime(tmp_path / "edited_blocks.py", ns=(1, 10**18))  # another mtime, however fast the edit
    assert user_model("edited_net:Net")((1, 8, 8), 10).conv.bias is None  # the edited neighbour's conv
    assert not same_code(before, code_digest("edited_net:Net"))


def test_the_same_bytes_are_the_same_code_under_another_python_and_a_namespace_package_is_read(tmp_path):
    """The syntax digest (ast.dump) differs between Python versions: a shared winner.pt was refused as edited on a
    colleague's other Python. A namespace package (no __init__.py) was digested as nothing: an edit went unseen."""
    from hpsearch.training.models.code import code_digest, same_code
    from hpsearch.training.models.user import add_module_path

    raw, syntax, version = code_digest_of = "0123456789abcdef:fedcba9876543210:3.11".split(":")
    assert same_code(":".join(code_digest_of), f"{raw}:{'0' * 16}:3.99")  # the same bytes: any Python
    assert same_code(":".join(code_digest_of), f"{'1' * 16}:{syntax}:{version}")  # a comment edited: one Python
    assert not same_code(":".join(code_digest_of), f"{'1' * 16}:{syntax}:3.12")  # edited, read by another Python
    assert same_code(syntax, f"{'1' * 16}:{syntax}:{version}")  # a syntax digest alone (the first record's)
    assert not same_code(raw, f"{raw}:{syntax}:{version}") and not same_code(None, f"{raw}:{syntax}:{version}")

    (tmp_path / "pkgns").mkdir()
    module = tmp_path / "pkgns" / "tiny.py"
    module.write_text("from torch import nn\n\n\nclass Tiny(nn.Module):\n    def __init__(self, image_shape, "
                      "n_classes):\n        super().__init__()\n        self.act = nn.ReLU()\n")
    add_module_path(tmp_path)
    before = code_digest("pkgns.tiny:Tiny")
    assert before.split(":")[0] != __import__("hashlib").sha256(b"").hexdigest()[:16]  # not the digest of nothing
    _edit(module, "nn.ReLU()", "nn.Tanh()")
    assert not same_code(before, code_digest("pkgns.tiny:Tiny"))
    # an editor's lock link to nothing, and a file Python imports whose syntax is too deep to dump: read, no traceback
    (tmp_path / "pkgns" / ".#tiny.py").symlink_to(tmp_path / "nowhere")
    (tmp_path / "pkgns" / "table.py").write_text("TOTAL = " + " + ".join(["1"] * 3000) + "\n")
    assert code_digest("pkgns.tiny:Tiny").count(":") == 2


def test_a_neighbours_digest_is_its_own_folders_whatever_else_is_loaded(tmp_path):
    """Two folders in one process, each with a neighbour of one name: the digest of one module followed the
    neighbour loaded last (another folder's), so it changed with the lookup order and with the other's edits."""
    from hpsearch.training.models.code import code_digest, same_code
    from hpsearch.training.models.user import add_module_path, user_model

    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "shared_blocks.py").write_text(f"WHO = {name!r}\n")
        (tmp_path / name / f"net_{name}.py").write_text(
            "import shared_blocks\nfrom torch import nn\n\n\nclass Net(nn.Module):\n"
            "    def __init__(self, image_shape, n_classes):\n        super().__init__()\n")
    add_module_path(tmp_path / "one")
    alone = code_digest("net_one:Net")
    add_module_path(tmp_path / "two")
    user_model("net_two:Net")
    assert code_digest("net_one:Net") == alone
    (tmp_path / "two" / "shared_blocks.py").write_text("WHO = 'edited'\n")
    assert code_digest("net_one:Net") == alone
    (tmp_path / "one" / "shared_blocks.py").write_text("WHO = 'edited'\n")
    assert not same_code(alone, code_digest("net_one:Net"))


def test_an_edit_of_a_packages_submodule_is_imported_anew(tmp_path):
    """A package's submodule was imported after its __init__ was stamped: an edit of it kept the old code running
    in the process, while the digest read the edited file."""
    import os

    from hpsearch.training.models.user import add_module_path, user_model

    (tmp_path / "editpkg").mkdir()
    (tmp_path / "editpkg" / "__init__.py").write_text("")
    nets = tmp_path / "editpkg" / "nets.py"
    nets.write_text("from torch import nn\n\n\nclass Net(nn.Module):\n    def __init__(self, image_shape, "
                    "n_classes):\n        super().__init__()\n        self.tag = 1\n")
    add_module_path(tmp_path)
    assert user_model("editpkg.nets:Net")((1, 8, 8), 10).tag == 1
    _edit(nets, "self.tag = 1", "self.tag = 2")
    os.utime(nets, ns=(1, 10**18))
    assert user_model("editpkg.nets:Net")((1, 8, 8), 10).tag == 2


def test_an_edit_during_a_search_stops_it_before_a_rung_trains_on_the_edited_code(nets, tmp_path, capsys,
                                                                                 monkeypatch):
    """Each rung built the class anew from the files: an edit made while a halving search ran was trained by
    its later rungs, under the digest the run recorded at its start (nothing refused it after). The run stops
    at the next rung, keeping what it finished; put back, the same command goes on."""
    from hpsearch.rundir.store import TrialStore

    run, module = tmp_path / "run", nets.parent / "mynets.py"
    prune = TrialStore.prune

    def prune_then_edit(store, index):  # the user edits the file between two rungs
        prune(store, index)
        if "2 * self.head" not in module.read_text():
            _edit(module, "return self.head(", "return 2 * self.head(")

    monkeypatch.setattr(TrialStore, "prune", prune_then_edit)
    halving = ["--strategy", "halving", "--factor", "3", "--min-epochs", "1", "--max-epochs", "3",
               "--fold-racing", "off", "--n-jobs", "1"]
    args = ["search", "--space", str(nets), "--out", str(run), "--n", "3", *SEARCH, *halving]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "the code of mynets:SmallCNN (its module and the modules beside it that it imports) was edited while " \
           "the run went on; its finished work is kept" in err and "Traceback" not in err
    records = load_records(run)
    assert len(records) == 3 and {r["epochs"] for rec in records for r in rec["rungs"]} == {1}  # none of 3 epochs
    monkeypatch.undo()
    _edit(module, "return 2 * self.head(", "return self.head(")
    assert main(args) == 0
    assert {r["epochs"] for rec in load_records(run) for r in rec["rungs"]} == {1, 3}


def test_a_library_installed_inside_your_modules_folder_is_not_your_code(tmp_path, monkeypatch):
    """A project's own .venv beside its module: every library under it (torch, scikit-learn) counted as a
    neighbour, and its every file was parsed (a scikit-learn door's first fit did not end in minutes)."""
    from hpsearch.training.models.code import code_digest, module_digest
    from hpsearch.training.models.user import add_module_path

    folder = tmp_path / "venvproj"
    lib = folder / ".venv" / "lib" / "python3" / "site-packages" / "venvlib"
    lib.mkdir(parents=True)
    (lib / "__init__.py").write_text("WIDTH = 8\n")
    (folder / "venvnets.py").write_text(
        "import venvlib\nfrom torch import nn\n\n\nclass VenvNet(nn.Module):\n"
        "    def __init__(self, image_shape, n_classes):\n        super().__init__()\n"
        "        self.layer = nn.Linear(64, n_classes)\n\n    def forward(self, x):\n"
        "        return self.layer(x.flatten(1))\n")
    monkeypatch.syspath_prepend(str(lib.parent))
    add_module_path(folder)
    before, module_before = code_digest("venvnets:VenvNet"), module_digest("venvnets")
    (lib / "__init__.py").write_text("WIDTH = 16\n")  # an upgrade of the library: not an edit of your code
    assert code_digest("venvnets:VenvNet") == before and module_digest("venvnets") == module_before
    assert module_digest("venvlib") is None
