"""The command line starts light: ``--help`` and usage errors never import torch, scikit-learn, skorch
or matplotlib (``hpsearch`` exports its names lazily, the commands import what they need), while
``from hpsearch import X`` works for every public name. The plain name lists that let the help say
the choices without importing their registries are checked against those registries here."""

import subprocess
import sys
from pathlib import Path

import pytest

import hpsearch

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "sklearn", "skorch", "matplotlib")

STARTUP = """
import contextlib, io, sys
import hpsearch.cli as cli

parser = cli.build_parser()
subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
commands = list(subparsers.choices)
assert {"search", "retrain", "plot", "predict", "compare"} <= set(commands), commands
argvs = [["--help"], *([c, "--help"] for c in commands),
         ["search", "--n", "abc"], ["search", "--epochs", "5"], ["retrain", "RUN", "--topp", "3"], []]
for argv in argvs:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            cli.parse_args(argv)
        except SystemExit as exc:
            assert exc.code == (0 if "--help" in argv else 2), (argv, exc.code, out.getvalue())
        else:
            raise AssertionError(f"{argv} did not exit")
    assert out.getvalue(), argv
print(" ".join(sorted(m for m in %r if m in sys.modules)) or "-")
"""


def _imported(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_help_and_usage_errors_import_no_heavy_library():
    assert _imported(STARTUP % (HEAVY,)) == "-"


def test_import_hpsearch_is_light():
    assert _imported(f"import sys, hpsearch; print(' '.join(m for m in {HEAVY!r} if m in sys.modules) or '-')") == "-"


@pytest.mark.parametrize("name", hpsearch.__all__)
def test_every_public_name_imports(name):
    namespace = {}
    exec(f"from hpsearch import {name}", namespace)
    assert namespace[name] is getattr(hpsearch, name)
    assert name in dir(hpsearch)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        hpsearch.nothing  # noqa: B018
    with pytest.raises(ImportError):
        exec("from hpsearch import nothing", {})


def test_light_name_lists_match_their_registries():
    from hpsearch import cli, setting_checks, settings
    from hpsearch.engines import ENGINES
    from hpsearch.engines.cv import SCORINGS
    from hpsearch.jobs.backends import BACKENDS
    from hpsearch.training import net
    from hpsearch.training.schedules import SCHEDULES
    from hpsearch.viz.plots import REGISTRY

    assert setting_checks.SCORINGS == tuple(SCORINGS)
    assert setting_checks.ENGINES == tuple(ENGINES)
    assert setting_checks.BACKENDS == tuple(BACKENDS)
    assert setting_checks.SCHEDULES == SCHEDULES and list(setting_checks.SCHEDULES) == list(SCHEDULES)
    assert cli.PLOT_METHODS == tuple(REGISTRY)
    assert set(settings.FILE_DATASETS) == set(setting_checks.datasets()) - {"digits"}  # every loader but bundled
    assert (settings.DEFAULT_MAX_EPOCHS, settings.DEFAULT_BATCH_SIZE, settings.DEFAULT_PATIENCE) == \
        (net.DEFAULT_MAX_EPOCHS, net.DEFAULT_BATCH_SIZE, net.DEFAULT_PATIENCE)
