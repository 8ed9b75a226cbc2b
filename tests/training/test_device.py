"""The device, as the Python API and the scikit-learn door take it: a name no device has, or a GPU this
machine lacks, is one UsageError before anything is written (it was torch's error once a run folder
stood, and a retraining's error rows replaced retrain.csv's); auto that finds no GPU says so and the
run keeps auto; a resumed run's stored device that is not here is named as the run's."""

import json
import shutil

import numpy as np
import pytest
import torch
from skorch import NeuralNetClassifier
from torch import nn

from hpsearch import HalvingRandomSearchCV
from hpsearch.cli import main
from hpsearch.errors import UsageError
from hpsearch.retrain.top import retrain_top
from hpsearch.search.run import run_search
from hpsearch.settings import SearchSettings

TINY = dict(dataset="digits", n=2, cv=2, max_epochs=1, patience=0, n_jobs=1, progress=False)
no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="on a machine with a GPU, cuda is there")


@pytest.mark.parametrize("device, message", [
    ("gpu", "device must be cpu, cuda, cuda:N or auto, got 'gpu'"),
    ("mps", "device must be cpu, cuda, cuda:N or auto, got 'mps'"),
    pytest.param("cuda", "device cuda asked for CUDA, but no CUDA GPU is visible", marks=no_gpu),
])
def test_the_api_refuses_a_device_before_the_run_folder_appears(tmp_path, digits, device, message):
    with pytest.raises(UsageError, match=message):
        run_search(SearchSettings(out=str(tmp_path / "run"), device=device, **TINY), digits)
    assert not (tmp_path / "run").exists()


@no_gpu
def test_a_retraining_on_a_gpu_not_here_is_refused_and_retrain_csv_kept(retrained_run, tmp_path, digits):
    run = tmp_path / "run"
    shutil.copytree(retrained_run, run)
    before = (run / "retrain.csv").read_bytes()
    with pytest.raises(UsageError, match="device cuda asked for CUDA"):
        retrain_top(run, top=1, retrain_epochs=3, dataset=digits, device="cuda", progress=False, n_jobs=1)
    assert (run / "retrain.csv").read_bytes() == before


@no_gpu
def test_auto_says_it_trains_on_the_cpu_and_the_run_keeps_auto(tmp_path, capsys):
    run = tmp_path / "run"
    flags = ["--n", "2", "--cv", "2", "--max-epochs", "1", "--n-jobs", "1", "--no-progress", "--no-retrain"]
    assert main(["search", *flags, "--device", "auto", "--out", str(run)]) == 0
    assert "--device auto: no CUDA GPU is visible, so the configs train on the CPU" in capsys.readouterr().err
    settings = json.loads((run / "settings.json").read_text())
    assert settings["device"] == "auto"  # resumed on a machine with a GPU, it trains there
    settings["device"] = "cuda"  # as a run searched on a GPU machine keeps it
    (run / "settings.json").write_text(json.dumps(settings))
    assert main(["search", "--resume", str(run), "--no-progress", "--no-retrain"]) == 2
    err = capsys.readouterr().err
    assert f"(--resume {run} was searched with --device cuda, kept in its settings.json; pass --device cpu" in err
    assert main(["search", "--resume", str(run), "--device", "cpu", "--no-progress", "--no-retrain"]) == 0


class _Linear(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(64, 10)

    def forward(self, x):
        return self.layer(x)


@pytest.mark.parametrize("device, message", [
    ("auto", "the net's device='auto' is hpsearch's command-line word, not one skorch knows"),
    ("gpu", "the net's device='gpu' is not a device torch knows; pass 'cpu', 'cuda' or 'cuda:N'"),
    ("meta", "the net's device='meta': hpsearch trains on 'cpu' or 'cuda'"),
    pytest.param("cuda", "the net's device='cuda' asks for CUDA, but no CUDA GPU is visible", marks=no_gpu),
])
def test_the_door_refuses_the_nets_device_before_any_fit(digits, device, message):
    """Every fit failed on it, and scikit-learn said so in a many-line traceback."""
    X, y = digits.X_train[:100].reshape(100, -1), digits.y_train[:100]
    net = NeuralNetClassifier(_Linear, max_epochs=3, device=device, train_split=None, verbose=0,
                              criterion=nn.CrossEntropyLoss)  # (logits under the default NLLLoss: a diverged fit)
    search = HalvingRandomSearchCV(net, {"lr": [0.1, 0.01]}, n_candidates=2, cv=2, random_state=0, n_jobs=1)
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        search.fit(X, y)
    assert np.isfinite(search.set_params(estimator=net.set_params(device="cpu")).fit(X, y).best_score_)
