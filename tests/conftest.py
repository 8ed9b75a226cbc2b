import os
import random
import shutil
import tempfile

os.environ.setdefault("MPLBACKEND", "Agg")
# the modules a run may import are trusted in the user's state folder: the tests keep their own
os.environ.setdefault("HPSEARCH_STATE_DIR", tempfile.mkdtemp(prefix="hpsearch-test-state-"))
# The environment as the tests were started, for a subprocess that must see exactly that.
STARTING_ENVIRON = dict(os.environ)
# One torch thread everywhere, as _one_thread below gives each test: in the steps that place their
# own threads (the pictures take one per core), in the job processes and Dask workers, and in the
# subprocesses. hpsearch caps its threads by $OMP_NUM_THREADS ("on a machine shared with other work,
# 1 thread per job avoids OpenMP's spin-waits"); a value set before the tests start is kept.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from hpsearch.data import load_dataset  # noqa: E402

FASHION_DIR = "/usr/share/datasets/fashion-mnist"


HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


@pytest.fixture(autouse=True)
def _not_on_a_run():
    """Each test starts as a fresh command: not working on any run folder (``trust.on_a_run``)."""
    from hpsearch.training.models import trust

    trust.forget_runs()
    yield
    trust.forget_runs()


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _one_thread():
    """Tests run torch on one thread: small nets gain nothing from two, and on a busy machine
    OpenMP's spin-waits make two threads many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def starting_environ():
    """``os.environ`` as it was before this conftest capped ``$OMP_NUM_THREADS``."""
    return dict(STARTING_ENVIRON)


def _short_ascents(patch: pytest.MonkeyPatch) -> None:
    from hpsearch.viz import plots

    options = plots.PlotOptions
    patch.setattr(plots, "PlotOptions", lambda **kw: options(**{"extra": {"steps": 20}, **kw}))


@pytest.fixture
def short_ascents(monkeypatch):
    """``plot all`` (and the search's pictures) with 20 gradient-ascent steps for the maximizers and
    conv maximizers (200 and 100 by default; DeepDream's 20 as ever), as the registry tests pass
    ``PlotOptions(extra={"steps": 3})``: for tests of which files and lines a run gets. What the
    ascents compute is tested on the functions themselves (test_viz_neurons, test_viz_conv)."""
    _short_ascents(monkeypatch)


@pytest.fixture(scope="module")
def short_ascents_module():
    """``short_ascents`` for a module's fixtures (undone at the module's end)."""
    with pytest.MonkeyPatch.context() as patch:
        _short_ascents(patch)
        yield


@pytest.fixture
def count_hooks():
    """Counts the hooks registered on a module and its submodules."""
    return lambda module: sum(len(getattr(m, name)) for m in module.modules() for name in HOOK_DICTS)


@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits")


README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def _triples(X, y, n, rng):
    """``n`` images of three digits side by side (24x24), each at a random height: (images, labels)."""
    picks = rng.integers(0, len(y), (n, 3))
    images = np.zeros((n, 1, 24, 24), np.float32)
    for k in range(3):
        for i, top in enumerate(rng.integers(0, 17, n)):
            images[i, 0, top:top + 8, 8 * k:8 * k + 8] = X[picks[i, k], 0]
    return images, y[picks]


@pytest.fixture(scope="session")
def digit_triples(digits):
    """A Triple-MNIST-like dataset in memory: 1,500 training and 300 test images of three digits
    (train triples from digits' training images, test ones from its test images)."""
    from hpsearch.data.dataset import Dataset

    rng = np.random.default_rng(0)
    return Dataset("triple-mnist", *_triples(digits.X_train, digits.y_train, 1500, rng),
                   *_triples(digits.X_test, digits.y_test, 300, rng))


@pytest.fixture(scope="session")
def readme_snippets():
    """The README's ```python blocks in order, as ``(heading, code, skip)``: ``heading`` is the
    section's title, ``skip`` the reason of a ``<!-- readme-test: skip REASON -->`` line standing
    just before the block (None without one)."""
    blocks, heading, skip, fence, code = [], "", None, None, []
    with open(README) as fh:
        for line in fh.read().splitlines():
            if fence is not None:
                if line.startswith("```"):
                    if fence == "python":
                        blocks.append((heading, "\n".join(code) + "\n", skip))
                    fence, code, skip = None, [], None
                else:
                    code.append(line)
            elif line.startswith("```"):
                fence = line[3:].strip()
            elif line.startswith("<!-- readme-test: skip"):
                skip = line.removeprefix("<!-- readme-test: skip").removesuffix("-->").strip() or "marked"
            elif line.startswith("#"):
                heading = line.lstrip("#").strip()
            elif line.strip():
                skip = None
    return blocks


@pytest.fixture(scope="session")
def retrained_run(tmp_path_factory, digits):
    """A finished digits search (2 MLP configs of the Lab 3 space, 2 folds, 2 epochs) whose best
    config is retrained (2 epochs): a run folder with every file, ``winner.pt`` included."""
    from hpsearch.retrain.top import retrain_top
    from hpsearch.search.run import run_search
    from hpsearch.settings import SearchSettings

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = run_search(SearchSettings(n=2, dataset="digits", cv=2, max_epochs=2, patience=0, n_jobs=1,
                                        out=str(tmp_path_factory.mktemp("retrained") / "run"), progress=False),
                         digits)
        retrain_top(run, top=1, retrain_epochs=2, dataset=digits, progress=False)
    finally:
        torch.set_num_threads(threads)
    return run


CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium through Selenium (1000x760), shared by the browser tests; they skip, saying
    why, where Chromium or chromedriver is missing (``.ci/run`` installs Debian's ``chromium`` and
    ``chromium-driver``)."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip(f"headless browser test needs chromium and chromedriver on PATH (found chromium={CHROMIUM}, "
                    f"chromedriver={CHROMEDRIVER}); on Debian: apt-get install chromium chromium-driver")
    pytest.importorskip("selenium", reason="selenium is not installed: pip install -e '.[test]'")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, read by browser_errors
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1000,760"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()
