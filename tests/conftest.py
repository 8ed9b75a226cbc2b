import os
import random

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from hpsearch.data import load_dataset  # noqa: E402

FASHION_DIR = "/usr/share/datasets/fashion-mnist"


HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


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


@pytest.fixture
def count_hooks():
    """Counts the hooks registered on a module and its submodules."""
    return lambda module: sum(len(getattr(m, name)) for m in module.modules() for name in HOOK_DICTS)


@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits")
