"""TorchScript is a program: loading a model.ts runs what it holds (a crafted one wrote a file outside on
hpsearch predict --model). Only a file this machine's hpsearch export wrote is loaded; a received one is
refused in one line naming the ONNX file beside it, and its code never runs."""

import shutil

import numpy as np
import torch
from PIL import Image
from torch import nn

from hpsearch.cli import main


class _Writes(nn.Module):
    """A model whose forward overwrites ``marker`` (8 bytes) as it classifies: what a shared model.ts can do."""

    def __init__(self, marker: str):
        super().__init__()
        self.marker = marker

    def forward(self, x):
        target = torch.from_file(self.marker, shared=True, size=8, dtype=torch.uint8)
        target.fill_(66)
        return torch.softmax(x.flatten(1)[:, :10], dim=1)


def test_a_received_torchscript_file_is_never_run(retrained_run, tmp_path, capsys):
    picture = tmp_path / "digit.png"
    Image.fromarray(np.full((8, 8), 128, np.uint8)).save(picture)
    mine = tmp_path / "mine"
    assert main(["export", str(retrained_run), "--out", str(mine), "--no-check"]) == 0
    assert main(["predict", "--model", str(mine / "model.ts"), str(picture)]) == 0  # made here: loaded
    received = tmp_path / "received"
    shutil.copytree(mine, received)
    marker = tmp_path / "marker.bin"
    marker.write_bytes(b"AAAAAAAA")
    torch.jit.save(torch.jit.script(_Writes(str(marker))), str(received / "model.ts"))
    capsys.readouterr()
    assert main(["predict", "--model", str(received / "model.ts"), str(picture)]) == 2
    err = capsys.readouterr().err
    assert f"{received / 'model.ts'} is TorchScript, a program" in err and "predict with the model.onnx beside it" in err
    assert marker.read_bytes() == b"AAAAAAAA"
    assert main(["predict", "--model", str(received), str(picture)]) == 0  # the folder: its ONNX file


def test_exporting_a_received_run_here_makes_its_torchscript_loadable(retrained_run, tmp_path, capsys, monkeypatch):
    """The refusal says to export the run here; that export said 'already exported' (the card's digests
    matched) and left the model.ts this machine does not trust, so predict refused it again."""
    picture = tmp_path / "digit.png"
    Image.fromarray(np.full((8, 8), 128, np.uint8)).save(picture)
    run = tmp_path / "run"
    shutil.copytree(retrained_run, run)
    assert main(["export", str(run), "--no-check"]) == 0  # on the machine that sends it
    monkeypatch.setenv("HPSEARCH_STATE_DIR", str(tmp_path / "receiver"))  # the colleague's machine
    assert main(["predict", "--model", str(run / "export" / "model.ts"), str(picture)]) == 2
    capsys.readouterr()
    assert main(["export", str(run), "--no-check"]) == 0
    assert "already exported" not in capsys.readouterr().out
    assert main(["predict", "--model", str(run / "export" / "model.ts"), str(picture)]) == 0
