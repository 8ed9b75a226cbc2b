"""Your module where the jobs run: a process without your files (a Dask worker elsewhere) builds the class it
was sent, neighbours imported inside a method included; a job that cannot import a module stops the search in
one line, marking no config failed (a stored failure is never retried: fixing the worker changed nothing)."""

import subprocess
import sys
import textwrap
import types

import cloudpickle
import pytest

from hpsearch.cli import main
from hpsearch.engines.cv import _score_fold
from hpsearch.errors import JobEnvironmentError
from hpsearch.rundir.store import load_records
from hpsearch.training.models.shipping import shipped
from hpsearch.training.models.user import add_module_path, user_model

MODULE = textwrap.dedent("""
    from torch import nn

    from late_blocks import width_of


    class LateNet(nn.Module):
        def __init__(self, image_shape, n_classes, width=8):
            super().__init__()
            import late_helpers  # a neighbour imported only here: not sent by value with the class

            self.layers = nn.Sequential(nn.Flatten(), nn.Linear(late_helpers.size(image_shape), width_of(width)),
                                        nn.ReLU(), nn.Linear(width_of(width), n_classes))

        def forward(self, x):
            if x.shape[0] > 2:  # a path the search's own check never takes: never imported there
                import late_extra

                x = late_extra.same(x)
            return self.layers(x)
""")


def test_a_process_without_your_files_builds_the_class_with_the_neighbours_it_imports_late(tmp_path):
    folder = tmp_path / "nets"
    folder.mkdir()
    (folder / "latenets.py").write_text(MODULE)
    (folder / "late_blocks.py").write_text("def width_of(width):\n    return 2 * width\n")
    (folder / "late_helpers.py").write_text("import math\n\n\ndef size(shape):\n    return math.prod(shape)\n")
    (folder / "late_extra.py").write_text("def same(x):\n    return x\n")
    add_module_path(folder)
    cls = user_model("latenets:LateNet")
    cls((1, 8, 8), 10)  # the search builds it once before its jobs (the contract's check): late_helpers is imported
    assert "late_extra" not in sys.modules
    sent = cloudpickle.dumps(shipped({"model": "latenets:LateNet"})["module"])
    worker = textwrap.dedent("""
        import sys

        import cloudpickle
        import torch

        cls = cloudpickle.loads(sys.stdin.buffer.read()).load()
        net = cls((1, 8, 8), 10, width=4)
        print(tuple(net(torch.zeros(4, 1, 8, 8)).shape), net.layers[1].out_features)
    """)
    done = subprocess.run([sys.executable, "-c", worker], input=sent, capture_output=True, cwd=tmp_path / "elsewhere"
                          if (tmp_path / "elsewhere").mkdir() is None else tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-600:]
    assert done.stdout.decode().split() == ["(4,", "10)", "8"]  # its neighbours as the folder holds them


def test_a_job_that_cannot_import_a_module_stops_the_search_and_fails_no_config(tmp_path, monkeypatch, capsys):
    """A module the search's process has that a job's has not (a Dask worker without the package; here one made in
    memory, as a notebook may): every config was stored as failed for good, ModuleNotFoundError as its reason,
    and a resume after the worker was fixed retried none."""
    helperlib = types.ModuleType("helperlib")
    helperlib.WIDTH = 8
    monkeypatch.setitem(sys.modules, "helperlib", helperlib)
    nets = tmp_path / "nets"
    nets.mkdir()
    (nets / "extnets.py").write_text(MODULE.replace("from late_blocks import width_of", "import helperlib")
                                     .replace("            import late_helpers  # a neighbour imported only here: not "
                                              "sent by value with the class\n", "")
                                     .replace("late_helpers.size(image_shape)", "64")
                                     .replace("width_of(width)", "helperlib.WIDTH"))
    (nets / "space.toml").write_text('model = "extnets:LateNet"\nwidth = { distribution = "categorical", '
                                     'choices = [4, 8] }\nlr = 0.01\noptimizer = "adam"\n')
    run = tmp_path / "run"
    assert main(["search", "--dataset", "digits", "--space", str(nets / "space.toml"), "--n", "2", "--cv", "2",
                 "--max-epochs", "1", "--patience", "0", "--n-jobs", "2", "--no-progress", "--no-retrain",
                 "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert "a job process on this machine cannot import helperlib (ModuleNotFoundError: No module named " \
           "'helperlib'), which this process can; no config is marked failed for it, and everything finished is " \
           "kept: make helperlib importable there" in err and "Traceback" not in err
    assert not [r for r in load_records(run) if r["state"] == "FAIL"]


def test_a_module_a_job_lacks_is_the_machines_fault_only_where_this_process_has_it():
    from hpsearch.jobs.workers import check_missing

    def make(exc):
        def build():
            raise exc
        return build

    elsewhere = {"error": "ModuleNotFoundError: No module named 'json'", "missing": "json",
                 "where": "the Dask worker at tcp://10.0.0.2:4000"}
    with pytest.raises(JobEnvironmentError, match="the Dask worker at tcp://10.0.0.2:4000 cannot import json .*, "
                                                  "which this process can; no config is marked failed for it"):
        check_missing(dict(elsewhere))
    nowhere = {**elsewhere, "missing": "fancy_acts", "error": "ModuleNotFoundError: No module named 'fancy_acts'"}
    check_missing(nowhere)  # installed nowhere here either: the config's failure, as before
    assert nowhere == {"error": "ModuleNotFoundError: No module named 'fancy_acts'"}
    # in the search's own process, or a name a module lacks ("cannot import name"): the config's code, always
    for exc in (ModuleNotFoundError("No module named 'json'", name="json"),
                ImportError("cannot import name 'FancyNorm' from 'torch.nn'", name="torch.nn")):
        outcome = _score_fold(make(exc), None, None, None, None, "neg_log_loss", 1)
        check_missing(outcome)
        assert set(outcome) == {"error"}


def test_a_package_only_some_configs_import_fails_those_configs_and_the_search_goes_on(tmp_path, capsys):
    """Every ImportError of a job stopped the search, on every resume: a config that imports a package installed
    nowhere failed the whole run, and the advice spoke of workers."""
    nets = tmp_path / "nets"
    nets.mkdir()
    (nets / "optnets.py").write_text(textwrap.dedent("""
        from torch import nn


        class OptNet(nn.Module):
            def __init__(self, image_shape, n_classes, act="relu"):
                super().__init__()
                if act == "swishy":
                    from fancy_acts import Swishy  # installed nowhere
                self.layers = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, n_classes))

            def forward(self, x):
                return self.layers(x)
    """))
    (nets / "space.toml").write_text('model = "optnets:OptNet"\nact = { distribution = "categorical", choices = '
                                     '["relu", "swishy"] }\nlr = 0.01\noptimizer = "adam"\n')
    run = tmp_path / "run"
    with pytest.warns(RuntimeWarning, match="configs failed"):
        assert main(["search", "--dataset", "digits", "--space", str(nets / "space.toml"), "--n", "6", "--cv", "2",
                     "--max-epochs", "1", "--patience", "0", "--n-jobs", "1", "--no-progress", "--no-retrain",
                     "--out", str(run), "--seed", "1"]) == 0
    records = load_records(run)
    failed = [r for r in records if r["state"] == "FAIL"]
    assert len(records) == 6 and 0 < len(failed) < 6
    assert all(r["config"]["act"] == "swishy" and "No module named 'fancy_acts'" in r["rungs"][-1]["error"]
               for r in failed)
