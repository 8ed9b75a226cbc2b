"""hpsearch export: every model kind's winner (and a three-digit net's) as ONNX and TorchScript, run in
onnxruntime and torch.jit on the test images: the winner's classes, probabilities within 1e-4."""

import json

import pytest

from hpsearch.cli import main
from hpsearch.training.net import make_net
from hpsearch.winner.bundle import save_winner
from hpsearch.winner.export import TOLERANCE, export_winner

pytest.importorskip("onnx", reason="the export extra is not installed: pip install -e '.[export]'")
pytest.importorskip("onnxruntime", reason="the export extra is not installed: pip install -e '.[export]'")

CONFIGS = {
    "mlp": {"model": "mlp", "hidden": [32], "optimizer": "adam", "lr": 3e-3},
    "cnn": {"model": "cnn", "filters": [8, 8], "block_size": 2, "dense": [16], "optimizer": "adam", "lr": 3e-3},
    "gapcnn": {"model": "gapcnn", "filters": [8, 16], "pool_after": [1], "optimizer": "adam", "lr": 3e-3},
}


def _winner(tmp_path, data, config, epochs=2):
    net = make_net(config, data, max_epochs=epochs, patience=0)
    net.fit(data.X_train, data.y_train)
    save_winner(net, tmp_path, data, config=config, test_accuracy=0.0, extra={"trial": 0, "cv_score": -1.0})
    return net


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_every_model_kind_exports_and_agrees_with_the_winner(kind, digits, tmp_path, capsys):
    _winner(tmp_path, digits, CONFIGS[kind])
    done = export_winner(tmp_path, dataset=digits)
    assert done["warnings"] == [] and capsys.readouterr().err == ""  # the tracer follows the built-in nets
    for fmt in ("onnx", "torchscript"):
        check = done["checks"][fmt]
        assert check["same_argmax"] and check["max_abs_diff"] < TOLERANCE and check["images"] == len(digits.y_test)
    card = json.loads(done["card"].read_text())
    assert card["input"]["shape"] == ["n", 1, 8, 8] and card["input"]["range"] == [0.0, 1.0]
    assert card["class_names"] == list(digits.class_names) and card["output"]["shape"] == ["n", 10]
    assert card["preprocess"]["image_shape"] == [1, 8, 8] and card["config"] == CONFIGS[kind]
    assert card["files"] == {"onnx": "model.onnx", "torchscript": "model.ts"}
    # every flag preprocess reads is on the card, and its "how" says what each does
    how = card["preprocess"]["how"]
    assert set(card["preprocess"]) == {"image_shape", "max_value", "invert", "center", "fit", "stretch", "levels",
                                       "how"}
    assert [k for k in card["preprocess"] if k != "how" and f"'{k}'" not in how] == []
    assert "LANCZOS" in how and "divide by the maximum" in how and "border pixels" in how
    assert export_winner(tmp_path, dataset=digits)["skipped"]  # the same winner: nothing to do


def test_a_three_digit_net_exports_its_positions(digit_triples, tmp_path):
    config = {"model": "cnn", "filters": [8, 8], "block_size": 2, "dense": [], "optimizer": "adam", "lr": 3e-3}
    _winner(tmp_path, digit_triples, config, epochs=1)
    done = export_winner(tmp_path, dataset=digit_triples)
    assert all(c["same_argmax"] and c["max_abs_diff"] < TOLERANCE for c in done["checks"].values())
    assert json.loads(done["card"].read_text())["output"]["shape"] == ["n", 3, 10]


def test_the_command_line_exports_and_refuses_clearly(retrained_run, tmp_path, capsys):
    out = tmp_path / "exported"
    assert main(["export", str(retrained_run), "--format", "onnx", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "onnx: same class as the winner on all 360 test images" in printed and (out / "model.onnx").is_file()
    assert not (out / "model.ts").exists()
    from hpsearch.jobs.resources import threads_per_job
    from hpsearch.winner.exported import onnx_session

    options = onnx_session(out / "model.onnx").get_session_options()  # its own pool ignored OMP_NUM_THREADS
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (threads_per_job(1), 1)
    assert main(["export", str(retrained_run), "--format", "onnx", "--out", str(out)]) == 0
    assert "already exported for this winner" in capsys.readouterr().out
    # the other format into the same folder: the card lists both, and predict --model finds either
    assert main(["export", str(retrained_run), "--format", "torchscript", "--out", str(out)]) == 0
    card = json.loads((out / "model.json").read_text())
    assert card["files"] == {"onnx": "model.onnx", "torchscript": "model.ts"} and set(card["checks"]) == {
        "onnx", "torchscript"}
    assert main(["export", str(retrained_run), "--format", "both", "--out", str(out)]) == 0
    assert "already exported for this winner" in capsys.readouterr().out
    assert main(["export", str(tmp_path)]) == 2
    assert f"RUN_DIR {tmp_path} is not a run folder (no settings.json, no winner.pt)" in capsys.readouterr().err
    (tmp_path / "settings.json").write_text("{}")  # a search not yet retrained
    assert main(["export", str(tmp_path)]) == 2
    assert "holds no winner.pt; retrain first" in capsys.readouterr().err


def test_predict_with_the_exported_file_alone_agrees_with_the_run(retrained_run, digits, tmp_path, capsys):
    import os
    import subprocess
    import sys

    import numpy as np
    from PIL import Image

    out = tmp_path / "exported"
    out.mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    killed = out / f".model.onnx.{int(gone.stdout)}.staged"  # an export killed before it put its file in place
    running = out / f".model.ts.{os.getppid()}.staged"  # one under way (a live process): kept
    yours = out / ".notes.1.staged"  # a name that is not an export's: a folder of your own is not swept
    for path in (killed, running, yours):
        path.write_bytes(b"x")
    export_winner(retrained_run, out=out, check=False)
    assert not killed.exists() and running.exists() and yours.exists()
    running.unlink()
    files = []
    for i in range(8):  # test images as a user has them: 64 px, dark ink on white
        path = tmp_path / f"digit{i}.png"
        Image.fromarray(255 - (digits.X_test[i][0] * 255).round().astype(np.uint8)).resize((64, 64)).save(path)
        files.append(str(path))
    noise = tmp_path / "noise.png"  # nothing like a digit: flagged beside its class, by the run and the export
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(noise)
    files.append(str(noise))
    capsys.readouterr()
    assert main(["predict", str(retrained_run), *files]) == 0

    def said(printed):  # each file's class and "unlike the training images (score S > 1)", if said
        return [(line.split("\t")[1], line.split("\t")[3:]) for line in printed.splitlines()]

    by_run = said(capsys.readouterr().out)
    assert by_run[-1][1][0].startswith("unlike the training images (score ") and not by_run[0][1]
    with np.load(out / "familiarity.npz", allow_pickle=False) as kept:  # plain arrays, no pickle
        assert kept["reference"].dtype == np.uint8 and float(kept["threshold"]) > 0
    for model in (out, out / "model.onnx", out / "model.ts"):
        assert main(["predict", "--model", str(model), *files]) == 0
        assert said(capsys.readouterr().out) == by_run, model
    import json  # an export made before the reference was kept beside it gets it on the next export
    card = json.loads((out / "model.json").read_text())
    del card["familiarity"]
    (out / "model.json").write_text(json.dumps(card))
    (out / "familiarity.npz").unlink()
    assert not export_winner(retrained_run, out=out, check=False)["skipped"] and (out / "familiarity.npz").is_file()
    assert export_winner(retrained_run, out=out, check=False)["skipped"]  # and then it is up to date
    assert main(["predict", "--model", str(tmp_path), *files]) == 2
    assert "no model.onnx or model.ts there" in capsys.readouterr().err


def _own_winner(tmp_path, digits, module: str, source: str, cls: str, **arguments):
    """A run folder whose winner (1 epoch on digits) is ``module:cls``, written from ``source`` into
    ``tmp_path/nets`` (built with ``arguments``)."""
    from hpsearch.training.models.user import add_module_path

    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / f"{module}.py").write_text(source)
    add_module_path(tmp_path / "nets")
    run = tmp_path / "run"
    run.mkdir()
    _winner(run, digits, {"model": f"{module}:{cls}", **arguments, "optimizer": "adam", "lr": 1e-3}, epochs=1)
    return run


HISTOGRAM = """
import torch
from torch import nn


class Histogram(nn.Module):
    def __init__(self, image_shape, n_classes):
        super().__init__()
        self.linear = nn.Linear(64, n_classes)

    def forward(self, x):
        return self.linear(x.flatten(1)) + torch.histc(x, bins=4).sum() * 0
"""


def test_a_module_the_exporter_cannot_follow_is_one_line(digits, tmp_path):
    """torch.histc has no ONNX operator: the export says so in one line (TorchScript traces it)."""
    from hpsearch.errors import UsageError

    run = _own_winner(tmp_path, digits, "histnets", HISTOGRAM, "Histogram")
    with pytest.raises(UsageError) as exc:
        export_winner(run, formats=("onnx",), dataset=digits)
    message = str(exc.value)
    assert "the winner (Histogram) cannot be exported as onnx: UnsupportedOperatorError" in message
    assert "\n" not in message and "histc" in message
    assert export_winner(run, formats=("torchscript",), dataset=digits)["checks"]["torchscript"]["same_argmax"]


BRANCHY = """
from torch import nn


class Branchy(nn.Module):
    def __init__(self, image_shape, n_classes):
        super().__init__()
        self.linear = nn.Linear(64, n_classes)

    def forward(self, x):
        if float(x.mean()) > 2.0:  # never on images in [0, 1]: the trace keeps the other path
            return -self.linear(x.flatten(1))
        return self.linear(x.flatten(1))
"""


def test_a_python_branch_on_a_tensor_value_is_said_once_per_format(digits, tmp_path, capsys):
    """The tracer's warning is not swallowed: a user's module the tracer follows on one path only."""
    run = _own_winner(tmp_path, digits, "branchnets", BRANCHY, "Branchy")
    capsys.readouterr()
    assert main(["export", str(run), "--no-check"]) == 0
    said = ": branchnets.py:11: Converting a tensor to a Python float might cause the trace to be incorrect: the " \
        "export follows only the path taken on the example input; check it, or avoid Python branches on tensor values"
    assert capsys.readouterr().err.splitlines() == [f"onnx{said}", f"torchscript{said}"]


def test_the_example_own_network_exports_silently(digits, tmp_path, capsys):
    from pathlib import Path

    from hpsearch.training.models.user import add_module_path

    add_module_path(Path(__file__).parents[2] / "examples" / "own_network")
    _winner(tmp_path, digits, {"model": "mynets:SmallCNN", "width": 8, "depth": 1, "optimizer": "adam",
                               "lr": 3e-3}, epochs=1)
    done = export_winner(tmp_path, dataset=digits)
    assert done["warnings"] == [] and capsys.readouterr().err == ""
    assert all(c["same_argmax"] for c in done["checks"].values())


WIDE = """
from torch import nn


class Wide(nn.Module):
    def __init__(self, image_shape, n_classes, width=16):
        super().__init__()
        self.hidden, self.out = nn.Linear(64, width), nn.Linear(width, n_classes)

    def forward(self, x):
        return self.out(self.hidden(x.flatten(1)).relu())
"""


@pytest.mark.parametrize("edit, said", [
    (("self.hidden", "self.first"), r"no longer fits widenets:Wide: RuntimeError: Error\(s\) in loading state_dict "
                                    r"for Wide: Missing key\(s\) in state_dict: \"first.weight\""),
    (("width", "units"), r"the winner was trained with width=24, which widenets:Wide no longer takes \(it takes units\)"),
])
def test_a_module_changed_since_the_retraining_is_one_line(digits, tmp_path, edit, said):
    """A layer renamed, or an argument the winner was trained with renamed (it would be dropped and
    the net built with its default), is said in one line: put the module back, or retrain."""
    import importlib
    import shutil
    import sys

    from hpsearch import load_winner
    from hpsearch.errors import UsageError

    run = _own_winner(tmp_path, digits, "widenets", WIDE, "Wide", width=24)
    assert load_winner(run).module_.hidden.out_features == 24
    (tmp_path / "nets" / "widenets.py").write_text(WIDE.replace(*edit))  # edited after the retraining
    sys.modules.pop("widenets", None)
    shutil.rmtree(tmp_path / "nets" / "__pycache__", ignore_errors=True)
    importlib.invalidate_caches()
    with pytest.raises(UsageError, match=said + r".*put it back as it was, or retrain: hpsearch retrain"):
        load_winner(run)


BATCH_OF_TWO = """
from torch import nn


class BatchOfTwo(nn.Module):
    def __init__(self, image_shape, n_classes):
        super().__init__()
        self.linear = nn.Linear(64, n_classes)

    def forward(self, x):
        return self.linear(x.reshape(len(x), -1))  # len(x): a constant to the tracer
"""


def test_a_file_fixed_at_the_traced_batch_is_refused_and_leaves_the_folder_as_it_was(digits, tmp_path, capsys):
    """len(x) in a forward is traced as the example's 2: such a file used to be written, said checked
    (--no-check) or fail with a runtime's traceback (the check). Now both are one line with the fix, and
    the folder keeps what it held (here an earlier winner's export, still on its card)."""
    run = _own_winner(tmp_path, digits, "twonets", BATCH_OF_TWO, "BatchOfTwo")
    out = tmp_path / "exported"
    (tmp_path / "other").mkdir()
    _winner(tmp_path / "other", digits, CONFIGS["mlp"], epochs=1)
    export_winner(tmp_path / "other", out=out, check=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    for flags in ([], ["--no-check"]):
        assert main(["export", str(run), "--out", str(out), *flags]) == 2
        err = capsys.readouterr().err.splitlines()[-1]
        assert "the winner exported as onnx fails on a batch of 1 image (" in err, err
        assert "is traced as a fixed batch of 2: write x.flatten(1)" in err and f"nothing written, {out} is as it" in err
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no staged file left either


def test_a_later_export_checks_what_no_check_skipped_and_replaces_a_damaged_file(retrained_run, tmp_path, capsys):
    out = tmp_path / "exported"
    assert main(["export", str(retrained_run), "--out", str(out), "--no-check"]) == 0
    assert json.loads((out / "model.json").read_text())["checks"] == {}
    capsys.readouterr()
    assert main(["export", str(retrained_run), "--out", str(out)]) == 0  # the check asked for now is run
    printed = capsys.readouterr().out
    assert "already exported" not in printed and "onnx: same class as the winner on all 360 test images" in printed
    (out / "model.ts").write_bytes(b"junk")  # damaged, or replaced by another file
    assert main(["predict", "--model", str(out / "model.ts"), str(out / "model.json")]) == 2
    err = capsys.readouterr().err
    # a replaced file is not one this machine's export wrote: TorchScript is a program, so it is never loaded
    assert f"{out / 'model.ts'} is TorchScript, a program: loading it runs the code it holds, and it is not a file " \
           "hpsearch export wrote on this machine" in err, err
    assert err.count("\n") == 1
    assert main(["export", str(retrained_run), "--out", str(out)]) == 0
    assert "already exported" not in capsys.readouterr().out and (out / "model.ts").read_bytes() != b"junk"
    assert main(["export", str(retrained_run), "--out", str(out / "model.json")]) == 2
    assert f"--out {out / 'model.json'} is a file; give a folder" in capsys.readouterr().err


@pytest.fixture(scope="module")
def card_export(digits, tmp_path_factory):
    """One export (an MLP of 1 epoch on digits, both formats, no check) and a picture of a digit, shared by
    the card tests: each edits its own copy of the folder."""
    import numpy as np
    from PIL import Image

    run = tmp_path_factory.mktemp("card")
    _winner(run, digits, CONFIGS["mlp"], epochs=1)
    export_winner(run, check=False)
    picture = run / "digit.png"  # dark ink on white, 32 px: inverted and resized by the card's preprocess
    Image.fromarray(255 - (digits.X_test[0][0] * 255).round().astype(np.uint8)).resize((32, 32)).save(picture)
    return run / "export", picture


def _edited_copy(card_export, tmp_path, edit):
    import shutil

    out = tmp_path / "export"
    shutil.copytree(card_export[0], out)
    card = json.loads((out / "model.json").read_text())
    edit(card)
    (out / "model.json").write_text(json.dumps(card))
    return out


def _set(*keys_and_value):
    """An edit of the card: the field at ``keys`` set to ``value``."""
    *keys, last, value = keys_and_value

    def edit(card):
        for key in keys:
            card = card[key]
        card[last] = value
    return edit


AGAIN = "; export the run again: hpsearch export RUN_DIR"
SHAPE = ("preprocess.image_shape must be [channels, height, width]: channels 1 (grey) or 3 (RGB), height and width "
         "whole numbers >= 1, at most 50,331,648 values, got ")
BAD_CARDS = {  # an edit of model.json -> what predict --model says of it, after "model.json: " (FILE: the model)
    "levels": (_set("preprocess", "levels", "abc"),
               'preprocess.levels must be a whole number >= 2, or null (no quantizing), got "abc"'),
    "levels-1": (_set("preprocess", "levels", 1),
                 "preprocess.levels must be a whole number >= 2, or null (no quantizing), got 1"),
    "shape-2d": (_set("preprocess", "image_shape", [3, 16]), SHAPE + "[3, 16]"),
    "shape-2-channels": (_set("preprocess", "image_shape", [2, 8, 8]), SHAPE + "[2, 8, 8]"),
    "shape-floats": (_set("preprocess", "image_shape", [1, 8.0, 8]), SHAPE + "[1, 8.0, 8]"),
    "invert": (_set("preprocess", "invert", "yes"), 'preprocess.invert must be true, false or "auto", got "yes"'),
    "center": (_set("preprocess", "center", 1), "preprocess.center must be true or false, got 1"),
    "fit": (_set("preprocess", "fit", 2), "preprocess.fit must be a number above 0 and at most 1, got 2"),
    "familiarity": (_set("familiarity", 5),
                    'familiarity must be an object ({"file": "familiarity.npz", ...}) or null, got 5'),
    "familiarity-file": (_set("familiarity", "file", "../familiarity.npz"),
                         "familiarity.file must be a file name beside model.json (familiarity.npz), got "
                         '"../familiarity.npz"'),
    "class-names-numbers": (_set("class_names", list(range(10))),
                            "class_names must be a list of strings, one per class, got [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"),
    "class-names-one": (_set("class_names", ["circle"]),
                        'class_names must hold one name per output of FILE (10), got 1 name (["circle"])'),
    "class-names-too-many": (_set("class_names", [str(c) for c in range(11)]),
                             "class_names must hold one name per output of FILE (10), got 11 names (["
                             '"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10"])'),
    # another export's card beside this model: the shape it declares, or (TorchScript declares none) reads
    "colour-card": (_set("preprocess", "image_shape", [3, 8, 8]), {
        "model.onnx": "preprocess.image_shape must be the input shape model.onnx declares, [1, 8, 8], got [3, 8, 8]",
        "model.ts": "preprocess.image_shape must be an input shape model.ts reads, got [3, 8, 8] (a batch of 2 such "
                    "images fails: RuntimeError: mat1 and mat2 shapes cannot be multiplied (2x192 and 64x32))"}),
    "larger-card": (_set("preprocess", "image_shape", [1, 16, 16]), {
        "model.onnx": "preprocess.image_shape must be the input shape model.onnx declares, [1, 8, 8], got [1, 16, 16]",
        "model.ts": "preprocess.image_shape must be an input shape model.ts reads, got [1, 16, 16] (a batch of 2 "
                    "such images fails: RuntimeError: mat1 and mat2 shapes cannot be multiplied (2x256 and 64x32))"}),
}


@pytest.mark.parametrize("model", ["model.onnx", "model.ts"])
@pytest.mark.parametrize("case", list(BAD_CARDS))
def test_a_card_predict_cannot_use_is_one_line_naming_its_field(card_export, case, model, tmp_path, capsys):
    """A card edited by hand, or another export's beside this model, used to end in a traceback inside the
    preprocessing (levels "abc", a 2-number image_shape, familiarity 5), an IndexError or a wrong class name
    (fewer class names than outputs), or the advice to fix a batch size the module never fixed (a card of
    another shape). Now: one line naming model.json's field, what it may be, what it is, and the fix."""
    edit, said = BAD_CARDS[case]
    out = _edited_copy(card_export, tmp_path, edit)
    said = said[model] if isinstance(said, dict) else said.replace("FILE", model)
    assert main(["predict", "--model", str(out / model), str(card_export[1])]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"hpsearch: error: {out / 'model.json'}: {said}{AGAIN}\n" and captured.out == ""


def test_a_familiarity_file_of_another_shape_is_one_line(card_export, tmp_path, capsys):
    import numpy as np

    out = _edited_copy(card_export, tmp_path, lambda card: None)
    np.savez_compressed(out / "familiarity.npz", reference=np.zeros((4, 1, 16, 16), np.uint8),
                        threshold=np.float64(0.2), quantile=np.float64(0.99))  # a 16x16 export's
    assert main(["predict", "--model", str(out / "model.onnx"), str(card_export[1])]) == 2
    assert capsys.readouterr().err == (f"hpsearch: error: {out / 'familiarity.npz'}: its reference images are "
                                       f"[1, 16, 16], not the [1, 8, 8] of model.json's preprocess.image_shape{AGAIN}\n")


def test_the_card_as_exported_still_predicts(card_export, tmp_path, capsys):
    """The checks pass the cards the export writes: this one (levels 17, a reference beside it), and one
    without a reference (an export from before it was kept) of data without grey levels."""
    out, picture = card_export
    said = []
    for model in ("model.onnx", "model.ts"):
        assert main(["predict", "--model", str(out / model), str(picture)]) == 0
        captured = capsys.readouterr()
        assert captured.err == "" and captured.out.startswith(f"{picture}\t")
        said.append(captured.out)
    assert said[0] == said[1]
    def plain(card):
        card["familiarity"], card["preprocess"]["levels"] = None, None

    quiet = _edited_copy(card_export, tmp_path, plain)
    assert main(["predict", "--model", str(quiet / "model.onnx"), str(picture)]) == 0
    assert capsys.readouterr().out.split("\t")[1] in [str(c) for c in range(10)]


def test_a_model_file_beside_another_exports_card_is_refused(card_export, digits, tmp_path, capsys):
    """Another export's model.onnx (or .ts) of the same shape beside this card: predict --model answered with
    that net and this card's classes and preprocessing, unsaid (the card's digests were checked only by export)."""
    import shutil

    other = tmp_path / "other"
    other.mkdir()
    _winner(other, digits, CONFIGS["mlp"], epochs=2)  # the same shape, other weights
    export_winner(other, check=False)
    out = _edited_copy(card_export, tmp_path, lambda card: None)
    for model in ("model.onnx", "model.ts"):
        shutil.copy(other / "export" / model, out / model)
        assert main(["predict", "--model", str(out / model), str(card_export[1])]) == 2
        captured = capsys.readouterr()
        assert captured.err == (f"hpsearch: error: --model {out / model} is not the file {out / 'model.json'} "
                                "describes (another export's, or changed since): export again, or keep each model "
                                "file beside its own card\n") and captured.out == ""


ODD_MODULES = """
import torch
from torch import nn


class _Square(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * x

    @staticmethod
    def backward(ctx, grad):
        return grad


class SquareFn(nn.Module):
    def __init__(self, image_shape, n_classes):
        super().__init__()
        self.linear = nn.Linear(64, n_classes)

    def forward(self, x):
        return self.linear(_Square.apply(x.flatten(1)))


class InPlace(nn.Module):
    def __init__(self, image_shape, n_classes):
        super().__init__()
        self.linear = nn.Linear(64, n_classes)

    def forward(self, x):
        return self.linear(x.mul_(0.5).flatten(1))
"""


def test_odd_modules_are_said_as_their_own_fault_and_a_failed_export_makes_no_folder(digits, tmp_path, capsys):
    """A custom autograd Function, which TorchScript cannot save, was said as a full or read-only disk (its
    traceback named _write_staged, and "writ" read as a failed write); a forward that changes its input in place
    was refused as a batch-size trace (the check ran the files on the input the winner had halved); a failed
    export left the --out folders it made."""
    run = _own_winner(tmp_path, digits, "oddnets", ODD_MODULES, "SquareFn")
    out = tmp_path / "new" / "deeper"
    capsys.readouterr()
    assert main(["export", str(run), "--out", str(out), "--format", "torchscript", "--no-check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hpsearch: error: the winner (SquareFn) cannot be exported as torchscript: ") and \
        "free space" not in err, err
    assert not (tmp_path / "new").exists()  # the folders it made are gone again
    assert main(["export", str(run), "--out", str(out), "--format", "onnx", "--no-check"]) == 0
    (tmp_path / "inplace").mkdir()
    run = _own_winner(tmp_path / "inplace", digits, "inplacenets", ODD_MODULES, "InPlace")
    done = export_winner(run, dataset=digits)
    assert all(c["same_argmax"] and c["max_abs_diff"] < 1e-4 for c in done["checks"].values())


def test_a_winner_whose_output_is_nan_is_said_as_such(digits, tmp_path):
    import torch

    from hpsearch.errors import UsageError

    net = _winner(tmp_path, digits, CONFIGS["mlp"], epochs=1)
    with torch.no_grad():  # finite weights (a damaged winner.pt of NaN is refused on loading), logits of inf
        for parameter in net.module_.parameters():
            parameter.fill_(3e38)
    save_winner(net, tmp_path, digits, config=CONFIGS["mlp"], test_accuracy=0.0, extra={"trial": 0, "cv_score": -1.0})
    for check in (True, False):
        with pytest.raises(UsageError, match=r"the winner's own output is not finite \(NaN or inf\): its weights "
                                             r"diverged; retrain it"):
            export_winner(tmp_path, dataset=digits, check=check)
