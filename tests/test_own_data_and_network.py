"""Your images and your network, end to end: a tree of image folders written from digits (class
folders named by words, PNG and JPEG, two sizes, half on a white background) searched with halving on
a small CNN that the test writes as a module file beside its space; retrained; the winner reloaded in
a fresh process, ``predict`` on image files and the page's API agree with it; a survivor's
continuation is exact; Grad-CAM explains the module's last convolution."""

import json
import os
import re
import subprocess
import sys
import warnings
from functools import partial
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
import torch
from fixtures.folders import WORDS, write_own_network, write_tree
from joblib import Parallel
from PIL import Image

from hpsearch.cli import main
from hpsearch.engines.cv import evaluate_configs, make_folds
from hpsearch.errors import UsageError
from hpsearch.rundir.run_info import run_dataset
from hpsearch.rundir.states import load_state, owner_of, state_path
from hpsearch.training.models.shipping import shipped
from hpsearch.training.net import make_net
from hpsearch.training.seeds import trial_seed
from hpsearch.viz.attribution import gradcam_layer
from hpsearch.winner.bundle import load_winner

SEARCH = ["--strategy", "halving", "--n", "6", "--cv", "2", "--min-epochs", "2", "--max-epochs", "6", "--patience",
          "0", "--seed", "3", "--no-progress"]


@pytest.fixture(scope="module")
def own(tmp_path_factory, digits):
    root = tmp_path_factory.mktemp("own")
    write_tree(root / "tree", digits.X_train[:600], digits.y_train[:600])
    write_own_network(root / "nets")
    return root


@pytest.fixture(scope="module")
def own_run(own):
    run = own / "run"
    code = main(["search", "--dataset", "folder", "--data-dir", str(own / "tree"), "--space",
                 str(own / "nets" / "space.toml"), *SEARCH, "--out", str(run), "--top", "1", "--retrain-epochs",
                 "25", "--images", "4", "--units", "4"])
    assert code == 0
    return run


def test_the_search_retraining_and_winner_of_your_module_on_your_folders(own_run):
    settings = json.loads((own_run / "settings.json").read_text())
    assert settings["module_path"] == str((own_run.parent / "nets").resolve())
    source = json.loads((own_run / "dataset.json").read_text())
    assert source["image_size"] == [8, 8] and source["color"] == "grey" and len(source["test_files"]) == 120
    net = load_winner(own_run)
    assert type(net.module_).__name__ == "SmallCNN"
    entry = net.winner_["module"]
    assert entry["import"] == "mynets:SmallCNN" and set(entry["args"]) == {"width", "depth"}
    data = run_dataset(own_run)
    accuracy = float((net.predict(data.X_test) == data.y_test).mean())
    assert accuracy > 0.8, accuracy
    summary = json.loads((own_run / "summary.json").read_text())
    assert summary["figures"]["skipped"]["receptive-fields"].startswith("receptive fields and maximizers need an MLP")
    assert "grad-cam" in summary["figures"]["methods"]
    # Grad-CAM explains the module's last convolution
    convs = [m for m in net.module_.modules() if isinstance(m, torch.nn.Conv2d)]
    assert gradcam_layer(net.module_) is convs[-1]


@pytest.fixture(scope="module")
def npz_run(own, digits):
    """The same digits as uint8 arrays in an .npz, searched with halving on the built-in MLP space."""
    arrays = {k: np.rint(getattr(digits, k)[:600 if "train" in k else 120] * 255).astype(np.uint8)
              for k in ("X_train", "X_test")}
    np.savez(own / "digits.npz", **arrays, y_train=digits.y_train[:600], y_test=digits.y_test[:120],
             class_names=np.array(WORDS))
    for i, x in enumerate(arrays["X_test"][:12]):  # image files of the test images, as a user has them
        (own / "npz_files").mkdir(exist_ok=True)
        Image.fromarray(x[0]).save(own / "npz_files" / f"{i:02d}.png")
    run = own / "npz_run"
    assert main(["search", "--dataset", "npz", "--data-dir", str(own / "digits.npz"), *SEARCH, "--out", str(run),
                 "--top", "1", "--retrain-epochs", "30", "--images", "4", "--units", "4"]) == 0
    return run, sorted((own / "npz_files").iterdir())


def _agree(run, files, tmp_path, capsys):
    """The classes of ``files`` by ``hpsearch predict``, by the page's API, by a fresh process that
    reloads the winner (from another folder, without PYTHONPATH), and by the winner on the run's own
    test arrays: one list, four times."""
    pytest.importorskip("fastapi")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from hpsearch.web import create_app
    from hpsearch.winner.predict import Predictor

    capsys.readouterr()
    assert main(["predict", str(run), *map(str, files)]) == 0
    by_predict = [line.split("\t")[1] for line in capsys.readouterr().out.splitlines()]
    predictor = Predictor.from_run(run)
    with TestClient(create_app(predictor)) as client:
        by_page = [client.post("/api/predict", files={"file": (f.name, f.read_bytes(), "image/png")}).json()["class_name"]
                   for f in files]
        assert len(client.get("/api/examples").json()) > 0  # the page's examples: the run's own data
    script = ("import sys, json; from hpsearch.winner.predict import Predictor; p = Predictor.from_run(sys.argv[1]); "
              "print(json.dumps([p.class_names[int(p.net.predict(p.prepare(open(f, 'rb').read())[None])[0])] "
              "for f in sys.argv[2:]]))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    fresh = subprocess.run([sys.executable, "-c", script, str(run), *map(str, files)], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    assert fresh.returncode == 0, fresh.stderr
    data = run_dataset(run)
    by_arrays = [data.class_names[k] for k in predictor.net.predict(data.X_test[:len(files)])]
    assert by_predict == by_page == json.loads(fresh.stdout) == by_arrays
    return by_arrays, data


def test_predict_the_page_and_a_fresh_process_agree_on_your_folders(own_run, own, capsys, tmp_path):
    files = [own / "tree" / name for name in json.loads((own_run / "dataset.json").read_text())["test_files"][:12]]
    assert {f.suffix for f in files} == {".png", ".jpg"}
    classes, _ = _agree(own_run, files, tmp_path, capsys)
    assert sum(c == f.parent.name for c, f in zip(classes, files, strict=True)) >= 9  # and mostly right


@pytest.mark.slow
def test_predict_the_page_and_a_fresh_process_agree_on_your_arrays(npz_run, tmp_path, capsys):
    run, files = npz_run
    classes, data = _agree(run, files, tmp_path, capsys)
    assert sum(c == data.class_names[k] for c, k in zip(classes, data.y_test, strict=False)) >= 9


def test_a_survivor_continues_exactly_as_a_straight_run(own, digits, tmp_path):
    """A fold of your module brought to 2 epochs, saved, and continued to 5 (in job processes, which get
    the class shipped by value) ends with the weights and scores of a fold trained straight for 5."""
    from hpsearch.space.search_space import load_space

    load_space(own / "nets" / "space.toml")  # makes mynets known, as the search does
    config = {"model": "mynets:SmallCNN", "width": 8, "depth": 2, "lr": 5e-3, "optimizer": "adam"}
    X, y = digits.X_train[:300], digits.y_train[:300]
    folds = make_folds(y, 2, 1)

    def scores(epochs, states=None):
        make = partial(make_net, config, 64, 10, image_shape=(1, 8, 8), max_epochs=epochs, patience=0,
                       random_state=trial_seed(1, 4), **shipped(config))
        with Parallel(n_jobs=2, return_as="generator_unordered") as parallel:
            [(_, result)] = evaluate_configs({4: make}, X, y, folds, parallel=parallel, threads=1,
                                             states={4: states} if states else None)
        return result

    states = [(state_path(tmp_path, 4, k), True, owner_of("run", 4, k, config)) for k in range(2)]
    scores(2, states)
    continued, straight = scores(5, states), scores(5)
    assert continued.error is None and continued.test_scores == straight.test_scores
    net = make_net(config, 64, 10, image_shape=(1, 8, 8), max_epochs=5, patience=0, random_state=trial_seed(1, 4))
    net.fit(X[folds[0][0]], y[folds[0][0]])
    saved = load_state(states[0][0], states[0][2])["module"]
    assert all(torch.equal(saved[k], v) for k, v in net.module_.state_dict().items())


@pytest.mark.slow
def test_the_class_travels_by_value_to_a_worker_that_cannot_import_it(own, tmp_path):
    from hpsearch.space.search_space import load_space

    load_space(own / "nets" / "space.toml")
    config = {"model": "mynets:SmallCNN", "width": 8, "depth": 1}
    make = partial(make_net, config, 64, 10, image_shape=(1, 8, 8), **shipped(config))
    script = ("import sys, pickle; make = pickle.loads(sys.stdin.buffer.read()); net = make(); net.initialize(); "
              "print(type(net.module_).__name__, sum(p.numel() for p in net.module_.parameters()))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    worker = subprocess.run([sys.executable, "-c", script], input=cloudpickle.dumps(make), cwd=tmp_path, env=env,
                            capture_output=True, timeout=120)
    assert worker.returncode == 0, worker.stderr.decode()[-2000:]
    assert worker.stdout.decode().split() == ["SmallCNN", str(8 * 9 + 8 + 8 * 16 * 10 + 10)]


@pytest.mark.parametrize("model, extra, message", [
    ("mynetz:SmallCNN", "", "no module mynetz (no mynetz.py in"),
    ("mynet:SmallCNN", "", "and none installed); did you mean 'mynets'? Or put mynet.py (or the package mynet/)"),
    ("mynets:TupleOut", "", "returns tuple, not a tensor, for 2 images; hpsearch needs logits (n, 10): return only the "
                            "logits from forward"),
    ("mynets:SmallCN", "", "mynets has no SmallCN; did you mean 'SmallCNN'?"),
    ("mynets:not_a_module", "", "not_a_module is a function, not an nn.Module class"),
    ("mynets:NoClasses", "", "NoClasses's constructor lacks n_classes"),
    ("mynets:SmallCNN", "widht = 8\n", "unknown hyperparameter 'widht'"),
    ("mynets:SmallCNN", "hidden = [10]\n", "hidden is a parameter of mlp models"),
    ("mynets:Fussy", "", "fails on the first config ({'width': 8, 'depth': 1}) with (1, 8, 8) images: ValueError: "
                         "width 8 is too narrow for me"),
    ("mynets:WrongOutput", "", "returns a tensor of shape (2, 3) for 2 images; hpsearch needs logits (n, 10)"),
    ("mynets:IntOut", "", "returns torch.int64 values; hpsearch needs float logits (n, 10)"),
    ("mynets:Clash", "lr = 0.01\n", "lr is a training setting, and 'mynets:Clash' also takes an argument 'lr'"),
    ("mynets.py:SmallCNN", "", 'names a file; write the module\'s name without .py: "mynets:SmallCNN"'),
    ("mynets SmallCNN", "", 'or your module as "module:Class"), got \'mynets SmallCNN\''),
])
def test_a_bad_module_is_refused_before_the_search_in_one_line(own, tmp_path, capsys, model, extra, message):
    space = own / "nets" / f"bad_{abs(hash((model, extra)))}.toml"
    space.write_text(f'model = "{model}"\n{extra}width = 8\ndepth = 1\n')
    out = tmp_path / "run"
    code = main(["search", "--dataset", "folder", "--data-dir", str(own / "tree"), "--space", str(space),
                 "--n", "2", "--cv", "2", "--max-epochs", "1", "--no-progress", "--out", str(out), "--no-retrain"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    line = [li for li in err.splitlines() if li.startswith("hpsearch: error")]
    assert len(line) == 1 and message in line[0] and str(space) in line[0], err
    assert not out.exists()


def test_a_near_miss_or_a_quoted_number_is_said_in_your_modules_words(own, tmp_path, capsys):
    """A key near a built-in model's parameter was offered it ("did you mean 'kernel_size'?"), which the next run
    refused as a parameter of cnn and gapcnn models; near a training setting it still is."""
    for extra, said in (("kernel_sizes = 3\n", "neither an argument of mynets:SmallCNN (depth, width) nor a training "
                                              "setting"),
                        ("lrr = 0.01\n", "nor a training setting; did you mean 'lr'?"),
                        # a quoted number: the constructor said "not all arguments converted during string formatting"
                        ('width = { distribution = "categorical", choices = ["8", "16"] }\n',
                         "width draws '8', a string, but mynets:SmallCNN's default is width=8, a number: write 8 without "
                         "quotes")):
        space = own / "nets" / f"near_{abs(hash(extra))}.toml"
        space.write_text(f'model = "mynets:SmallCNN"\n{extra}')
        assert main(["search", "--space", str(space), "--n", "1", "--no-retrain", "--out", str(tmp_path / "r")]) == 2
        assert capsys.readouterr().err.strip().endswith(said)


def test_the_batched_engine_says_it_hands_your_module_to_skorch(own, tmp_path, capsys):
    from hpsearch.search.run import run_search
    from hpsearch.settings import SearchSettings

    run_search(SearchSettings(dataset="folder", data_dir=str(own / "tree"), space=str(own / "nets" / "space.toml"),
                              n=1, cv=2, max_epochs=1, patience=0, engine="batched", n_jobs=1, progress=False,
                              out=str(tmp_path / "run")))
    assert "engine batched: model 'mynets:SmallCNN' is your own module" in capsys.readouterr().err


@pytest.mark.slow
def _copy_with(run, to, **settings):
    """A copy of run folder ``run`` (without its states) whose settings.json says ``settings``."""
    import shutil

    shutil.copytree(run, to, ignore=shutil.ignore_patterns("states", "retrain_states"))
    stored = json.loads((to / "settings.json").read_text())
    (to / "settings.json").write_text(json.dumps({**stored, **settings}))
    return to


def _run_without_the_module(own, script: str, run):
    """``python -c script run`` in a fresh process while mynets.py is away (no PYTHONPATH either)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    (own / "nets" / "mynets.py").rename(own / "nets" / "mynets.py.away")
    try:
        return subprocess.run([sys.executable, "-c", script, str(run)], cwd=run.parent, env=env,
                              capture_output=True, text=True, timeout=240)
    finally:
        (own / "nets" / "mynets.py.away").rename(own / "nets" / "mynets.py")


def test_a_winner_whose_module_is_gone_says_what_to_do(own_run, own, tmp_path):
    moved = _copy_with(own_run, tmp_path / "copy", module_path=str(tmp_path / "gone"))
    script = "import sys; from hpsearch.winner.bundle import load_winner; load_winner(sys.argv[1])"
    fresh = _run_without_the_module(own, script, moved)
    assert fresh.returncode != 0
    last = fresh.stderr.strip().splitlines()[-1]
    assert "the winner is your network 'mynets:SmallCNN', which cannot be imported here: no module mynets" in last
    assert f"put mynets.py (or mynets/) back in {(own / 'nets').resolve()}" in last


@pytest.mark.slow  # commands end to end on a copied run, about 15 s
def test_a_run_whose_module_or_images_are_gone_says_to_put_them_back(own_run, own, tmp_path, capsys):
    """report, retrain and search --resume take no --space, --module-path or --data-dir: they name where
    the search found the module and the images instead."""
    moved = _copy_with(own_run, tmp_path / "copy", module_path=str(tmp_path / "nets"))
    script = ("import sys; from hpsearch.cli import main; run = sys.argv[1]\n"
              "for command in (['report', run], ['retrain', run, '--top', '1', '--no-progress'], "
              "['search', '--resume', run, '--no-progress']):\n    print(main(command), flush=True)")
    fresh = _run_without_the_module(own, script, moved)
    assert [line for line in fresh.stdout.split("\n") if line.isdigit()] == ["2", "2", "2"], fresh.stderr
    said = [line for line in fresh.stderr.splitlines() if line.startswith("hpsearch: error:")]
    assert len(said) == 3, fresh.stderr
    for line in said:  # retrain finds the winner's network first: the winner names where it was found
        assert "cannot be imported here: no module mynets" in line and "(where the search found it)" in line, line
        assert "--space" not in line and "--module-path" not in line, line
    for line in (said[0], said[2]):
        assert line.startswith(f"hpsearch: error: {moved}: the run's own network cannot be imported here"), line
        assert f"put mynets.py (or mynets/) back in {tmp_path / 'nets'} (where the search found it)" in line, line
    settings = json.loads((own_run / "settings.json").read_text())
    (moved / "settings.json").write_text(json.dumps({**settings, "data_dir": str(tmp_path / "tree")}))
    assert main(["retrain", str(moved), "--top", "1", "--no-progress"]) == 2
    assert f"{moved} was searched on {tmp_path / 'tree'}, which is not there now: put it back" in capsys.readouterr().err
    assert main(["search", "--resume", str(moved), "--no-progress"]) == 2
    assert f"was searched on {tmp_path / 'tree'}, which is not there now" in capsys.readouterr().err


def test_a_module_path_that_is_a_file_or_missing_is_named(own, tmp_path, capsys):
    for folder, said in [(own / "nets" / "mynets.py", f"is a file; pass the folder it is in ({own / 'nets'})"),
                         (tmp_path / "nowhere", "no such folder")]:
        assert main([*_small_search(own, own / "tree", tmp_path / "run"), "--module-path", str(folder)]) == 2
        assert f"--module-path {folder}" in (err := capsys.readouterr().err) and said in err, err
    assert not (tmp_path / "run").exists()


def test_a_run_folder_is_never_a_module_path(own_run):
    from hpsearch.training.models.user import add_module_path

    with pytest.raises(UsageError, match="never imports code from a run folder"):
        add_module_path(own_run)


def test_the_readme_shows_the_example_as_it_is_and_help_names_both_datasets(capsys):
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    section = readme[readme.index("## Your own data and network"):readme.index("## CNNs and explanations")]
    module = (root / "examples" / "own_network" / "mynets.py").read_text()
    assert "```python\n" + module[module.index("from torch import nn"):] + "```" in section
    space = (root / "examples" / "own_network" / "space.toml").read_text()
    assert "```toml\n" + "".join(line for line in space.splitlines(True) if not line.startswith("#")) + "```" in section
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "folder: image folders; npz: arrays" in text and "--image-size" in text and "--module-path" in text


def test_a_folder_changed_since_the_search_is_refused_not_re_split(own_run, own, tmp_path):
    import shutil

    tree, run = tmp_path / "tree", tmp_path / "run"
    shutil.copytree(own / "tree", tree)
    shutil.copytree(own_run, run, ignore=shutil.ignore_patterns("states", "retrain_states", "*.png"))
    settings = json.loads((run / "settings.json").read_text())
    (run / "settings.json").write_text(json.dumps({**settings, "data_dir": str(tree)}))
    assert len(run_dataset(run).y_test) == 120  # the same files elsewhere: the same split
    first = sorted((tree / "train" / "five").iterdir())[0]
    first.rename(first.with_name("renamed" + first.suffix))  # as many images, another listing
    with pytest.raises(UsageError, match="its held-out test files are now other files") as refused:
        run_dataset(run)
    # the files that changed are named, not two lists cut off after their first, identical, names
    assert re.search(r"\(\d+ held out that were not: train/\w+/[\w.]+.*; \d+ no longer: train/\w+/[\w.]+.*\) \(",
                     str(refused.value)) and "the folder changed since the search" in str(refused.value)


def test_grad_cam_of_another_layer_and_a_wrong_layer_listing_the_choices(own_run, capsys):
    assert main(["plot", "grad-cam", str(own_run), "--layer", "features.0", "--images", "2"]) == 0
    assert "grad-cam: wrote grad_cam.png" in capsys.readouterr().out
    assert main(["plot", "grad-cam", str(own_run), "--layer", "features.9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--layer 'features.9': SmallCNN has no such layer; its convolutions: features.0" in err
    assert main(["plot", "saliency", str(own_run), "--layer", "features.0"]) == 2  # it would draw the same
    assert "--layer applies only to grad-cam and hires-cam (and all, for those two); saliency would ignore it" \
        in capsys.readouterr().err
    with pytest.raises(SystemExit) as empty:  # it asked "did you mean ''?"; refused as every empty flag value
        main(["plot", "grad-cam", str(own_run), "--layer", ""])
    err = capsys.readouterr().err
    assert empty.value.code == 2 and "--layer is empty (''); give a value, or leave the flag out" in err
    report = (own_run / "report.html").read_text()
    assert "not drawn for this winner: receptive-fields: receptive fields and maximizers need an MLP" in report


def test_a_module_that_fails_for_some_configs_fails_those_trials(own, tmp_path):
    from hpsearch.rundir.store import load_results
    from hpsearch.space.search_space import ParamGenerator, load_space

    space = own / "nets" / "picky.toml"
    space.write_text('model = "mynets:Picky"\nwidth = { distribution = "categorical", choices = [8, 16] }\n')
    seed = next(s for s in range(20) if ParamGenerator(load_space(space), s).sample(0)["width"] == 8)
    assert main(["search", "--dataset", "folder", "--data-dir", str(own / "tree"), "--space", str(space), "--n", "4",
                 "--cv", "2", "--max-epochs", "1", "--seed", str(seed), "--no-progress", "--no-retrain",
                 "--out", str(tmp_path / "run")]) == 0
    frame = load_results(tmp_path / "run")
    failed = frame[frame["param_width"].astype(str) == "16"]
    assert len(failed) >= 1 and failed["error"].str.contains("width 16 is not for me").all()
    assert frame[frame["param_width"].astype(str) == "8"]["mean_test_score"].notna().all()



def test_no_code_is_ever_imported_from_a_run_folder(own_run, tmp_path, capsys):
    """A shared run folder whose settings.json or winner.pt names a folder inside it (holding a module
    that would leave a mark) is refused: the mark never appears."""
    import shutil

    shared = tmp_path / "shared"
    shutil.copytree(own_run, shared, ignore=shutil.ignore_patterns("states", "retrain_states", "*.png"))
    (shared / "lib").mkdir()
    mark = tmp_path / "PWNED"
    (shared / "lib" / "mynets.py").write_text(f"open({str(mark)!r}, 'w').write('ran')\n")
    settings = json.loads((shared / "settings.json").read_text())
    (shared / "settings.json").write_text(json.dumps({**settings, "module_path": str(shared / "lib")}))
    assert main(["retrain", str(shared), "--top", "1", "--retrain-epochs", "1", "--no-progress"]) == 2
    assert "is in the run folder" in capsys.readouterr().err and not mark.exists()
    bundle = torch.load(shared / "winner.pt", weights_only=True)
    bundle["module"]["path"] = str(shared / "lib")
    torch.save(bundle, shared / "winner.pt")
    (shared / "settings.json").write_text(json.dumps(settings))
    script = "import sys; from hpsearch.winner.bundle import load_winner; load_winner(sys.argv[1])"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    fresh = subprocess.run([sys.executable, "-c", script, str(shared)], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=120)
    assert fresh.returncode != 0 and not mark.exists()
    assert "is in a run folder, where hpsearch never imports from" in fresh.stderr.strip().splitlines()[-1]


@pytest.mark.slow  # commands end to end on a copied run, about 15 s
def test_a_shared_run_imports_the_module_it_names_only_once_trusted(own_run, tmp_path, monkeypatch, capsys):
    """Someone else's run, with a module beside it (a zip of run/ and evil/): the report reads it without
    importing anything; what needs the network says to read the module and trust it; hpsearch trust
    does, and only then does the module run."""
    monkeypatch.setenv("HPSEARCH_STATE_DIR", str(tmp_path / "state"))  # this user trusts nothing yet
    shared = _copy_with(own_run, tmp_path / "zip" / "run", module_path=str(tmp_path / "zip" / "evil"))
    mark = tmp_path / "RAN"
    (tmp_path / "zip" / "evil").mkdir()
    (tmp_path / "zip" / "evil" / "mynets.py").write_text(f"import pathlib\npathlib.Path({str(mark)!r}).write_text('ran')\n")
    assert main(["report", str(shared)]) == 0 and not mark.exists()
    capsys.readouterr()
    for command in (["retrain", str(shared), "--top", "1", "--no-progress"],
                    ["search", "--resume", str(shared), "--no-progress"], ["plot", "all", str(shared)]):
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert "which hpsearch has not imported for you before, and importing a module runs its code" in err, err
        assert f"hpsearch trust {shared}" in err and not mark.exists()
    assert main(["trust", str(shared)]) == 0
    assert f"trusting {tmp_path / 'zip' / 'evil'} (the modules there: mynets.py)" in capsys.readouterr().out
    assert main(["retrain", str(shared), "--top", "1", "--no-progress"]) == 2  # it is no network, but it ran
    assert mark.exists()


@pytest.mark.slow
def test_another_folder_does_not_resume_this_folders_run(own, tmp_path, capsys):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(own / "tree", other)
    (other / "train" / "zero").rename(other / "train" / "nought")
    out = tmp_path / "run"
    flags = ["--space", str(own / "nets" / "space.toml"), "--n", "1", "--cv", "2", "--max-epochs", "1",
             "--no-progress", "--no-retrain", "--out", str(out)]
    assert main(["search", "--dataset", "folder", "--data-dir", str(own / "tree"), *flags]) == 0
    capsys.readouterr()
    assert main(["search", "--dataset", "folder", "--data-dir", str(other), *flags]) == 2
    assert "holds a search with other settings" in capsys.readouterr().err


def test_two_folders_one_module_name_and_an_edit_in_one_process(tmp_path):
    from hpsearch.space.search_space import load_space
    from hpsearch.training.models import model_class

    for name, arg in (("a", "width"), ("b", "depth")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "samename.py").write_text(
            f"from torch import nn\nclass Net(nn.Module):\n    def __init__(self, image_shape, n_classes, {arg}=1):\n"
            "        super().__init__()\n")
        (tmp_path / name / "space.toml").write_text(f'model = "samename:Net"\n{arg} = 2\n')
    assert "width" in load_space(tmp_path / "a" / "space.toml").params
    assert "depth" in load_space(tmp_path / "b" / "space.toml").params  # b's own class, not a's
    (tmp_path / "b" / "samename.py").write_text(
        "from torch import nn\nclass Net(nn.Module):\n    def __init__(self, image_shape, n_classes, height=1):\n"
        "        super().__init__()\n")
    import os as _os
    _os.utime(tmp_path / "b" / "samename.py", ns=(1, 10**18))
    assert "height" in __import__("inspect").signature(model_class("samename:Net")).parameters  # the edit


@pytest.mark.slow
def test_a_package_module_and_a_shadowing_neighbour(own, tmp_path, capsys):
    """A winner of "mypkg.nets:Net" reloads in a fresh process; a colorsys.py beside the space shadows nothing."""
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    source = (own / "nets" / "mynets.py").read_text().replace("from blocks import conv", "from .blocks import conv")
    (tmp_path / "mypkg" / "nets.py").write_text(source)
    (tmp_path / "mypkg" / "blocks.py").write_text((own / "nets" / "blocks.py").read_text())
    (tmp_path / "colorsys.py").write_text("raise RuntimeError('shadowed the standard library')\n")
    (tmp_path / "space.toml").write_text('model = "mypkg.nets:SmallCNN"\nwidth = 8\n')
    run = tmp_path / "run"
    assert main(["search", "--dataset", "folder", "--data-dir", str(own / "tree"), "--space",
                 str(tmp_path / "space.toml"), "--n", "1", "--cv", "2", "--max-epochs", "1", "--no-progress",
                 "--top", "1", "--retrain-epochs", "1", "--out", str(run), "--images", "2", "--units", "2"]) == 0
    script = "import sys; from hpsearch.winner.bundle import load_winner; print(type(load_winner(sys.argv[1]).module_))"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    fresh = subprocess.run([sys.executable, "-c", script, str(run)], cwd="/", env=env, capture_output=True,
                           text=True, timeout=120)
    assert fresh.returncode == 0 and "mypkg.nets.SmallCNN" in fresh.stdout, fresh.stderr[-1500:]


def test_a_module_path_without_a_module_is_refused(tmp_path, capsys):
    assert main(["search", "--module-path", str(tmp_path), "--n", "1", "--no-progress", "--out",
                 str(tmp_path / "run")]) == 2
    assert "--module-path" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_your_module_exports_and_agrees_with_the_winner(own_run, tmp_path):
    pytest.importorskip("onnxruntime")
    from hpsearch.winner.export import TOLERANCE, export_winner

    done = export_winner(own_run, out=tmp_path / "export")
    assert all(c["same_argmax"] and c["max_abs_diff"] < TOLERANCE for c in done["checks"].values())
    card = json.loads(done["card"].read_text())
    assert card["module"]["import"] == "mynets:SmallCNN" and card["preprocess"]["invert"] is False


def _small_search(own, data_dir, out, *extra) -> list[str]:
    return ["search", "--dataset", "folder", "--data-dir", str(data_dir), "--space", str(own / "nets" / "space.toml"),
            "--n", "1", "--cv", "2", "--max-epochs", "1", "--no-progress", "--no-retrain", "--out", str(out), *extra]


def test_a_resume_on_a_folder_edited_since_is_refused_and_keeps_the_run_as_it_was(own, tmp_path, capsys):
    import shutil

    tree, out = tmp_path / "tree", tmp_path / "run"
    shutil.copytree(own / "tree", tree)
    assert main(_small_search(own, tree, out)) == 0
    recorded = (out / "dataset.json").read_text()
    assert len(json.loads(recorded)["digest"]) == 64
    # one image redrawn in place: the same names, counts and held-out files, other pixels
    first, second = sorted((tree / "train" / "five").glob("*.png"))[:2]
    Image.open(second).save(first)
    capsys.readouterr()
    assert main(_small_search(own, tree, out, "--n", "2")) == 2
    err = capsys.readouterr().err
    assert "its images or labels differ: digest now" in err and "the folder changed since the search" in err
    assert (out / "dataset.json").read_text() == recorded  # not re-split, not re-recorded
    assert (out / "trials.csv").read_text().count("\n") == 2  # the header and the first search's one config
    with pytest.raises(UsageError, match="images or labels differ"):
        run_dataset(out)  # retraining and pictures refuse it too


def test_an_image_added_since_the_search_is_named_as_a_folder_change(own, tmp_path):
    import shutil

    tree, out = tmp_path / "tree", tmp_path / "run"
    shutil.copytree(own / "tree", tree)
    assert main(_small_search(own, tree, out)) == 0
    extra = sorted((tree / "train" / "five").glob("*.png"))[0]
    shutil.copy(extra, extra.with_name("added.png"))
    with pytest.raises(UsageError, match=r"its training and test images are now 480 and 121, but the run was "
                                         r"searched with 480 and 120 .* the folder changed since the search"):
        run_dataset(out)


def test_early_stopping_on_folds_too_small_for_its_split_is_refused_before_a_run_folder(own, digits, tmp_path,
                                                                                       capsys):
    tiny = tmp_path / "tiny"
    rows = [i for label in (0, 1) for i in np.flatnonzero(digits.y_train == label)[:6]]
    write_tree(tiny, digits.X_train[rows[0:4] + rows[6:10]], digits.y_train[rows[0:4] + rows[6:10]])  # 4 a class
    write_tree(tiny, digits.X_train[rows[4:6] + rows[10:]], digits.y_train[rows[4:6] + rows[10:]], split="test")
    out = tmp_path / "run"
    code = main(["search", "--dataset", "folder", "--data-dir", str(tiny), "--space", str(own / "nets" / "space.toml"),
                 "--n", "1", "--cv", "2", "--max-epochs", "1", "--no-progress", "--no-retrain", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "--patience 15: early stopping holds out a fifth of each training fold (5 splits), but a fold trains on " \
           "only 4 images" in err and "pass --patience 0, fewer folds (--cv), or more images" in err
    assert not out.exists()


def _few_of_a_class(digits, root: Path, per_class: dict[int, int]) -> Path:
    """An image folder of digits with ``per_class[label]`` training images of each label, 2 test images each."""
    rows = [i for label, k in per_class.items() for i in np.flatnonzero(digits.y_train == label)[:k + 2]]
    train = [i for label, k in per_class.items() for i in np.flatnonzero(digits.y_train == label)[:k]]
    test = [i for i in rows if i not in train]
    write_tree(root, digits.X_train[train], digits.y_train[train])
    write_tree(root, digits.X_train[test], digits.y_train[test], split="test")
    return root


@pytest.mark.parametrize("engine", ["skorch", "batched"])
def test_early_stopping_where_every_class_is_too_small_for_its_split_is_refused(digits, tmp_path, capsys, engine):
    tiny = _few_of_a_class(digits, tmp_path / "tiny", {0: 8, 1: 8, 2: 8})  # a fold trains on 4 of each: 12 images
    out = tmp_path / "run"
    code = main(["search", "--dataset", "folder", "--data-dir", str(tiny), "--n", "1", "--cv", "2", "--engine", engine,
                 "--max-epochs", "1", "--no-progress", "--no-retrain", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "--patience 15: early stopping holds out a fifth of each training fold, stratified (5 splits), but in a " \
           "fold no class has more than 4 images; pass --patience 0, fewer folds (--cv), or more images" in err
    assert not out.exists()


@pytest.mark.parametrize("engine", ["skorch", "batched"])
def test_a_class_too_small_for_early_stoppings_split_is_said_once_not_on_every_fit(digits, tmp_path, capsys, engine):
    folder = _few_of_a_class(digits, tmp_path / "few", {0: 24, 1: 24, 2: 6})  # a fold trains on 3 images of 2
    with warnings.catch_warnings(record=True) as caught:  # one job: the fits run here, their warnings too
        warnings.simplefilter("always")
        code = main(["search", "--dataset", "folder", "--data-dir", str(folder), "--n", "2", "--cv", "2",
                     "--max-epochs", "2", "--n-jobs", "1", "--engine", engine, "--no-progress", "--no-retrain",
                     "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert err.count("early stopping: class two has as few as 3 images in a training fold, fewer than its 5 "
                     "splits, so some of its validation parts hold none") == 1
    assert not [w for w in caught if "least populated class" in str(w.message)]  # scikit-learn's, once per fit


def test_a_run_folder_that_would_hold_your_module_is_refused_before_the_search(own, tmp_path, capsys):
    import shutil

    project = tmp_path / "project"
    shutil.copytree(own / "nets", project)
    assert main(["search", "--dataset", "folder", "--data-dir", str(own / "tree"), "--space",
                 str(project / "space.toml"), "--n", "1", "--cv", "2", "--max-epochs", "1", "--no-progress",
                 "--no-retrain", "--out", str(project)]) == 2
    err = capsys.readouterr().err
    assert f"--out {project.resolve()} holds your module's folder {project.resolve()}" in err
    assert f"pass --out {project.resolve() / 'run'} or another folder" in err
    assert not (project / "trials.db").exists()
