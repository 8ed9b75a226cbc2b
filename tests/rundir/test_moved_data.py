"""A run follows its image folder to a new place: a colleague's copy of the run, or data moved, resumes
with --data-dir where the images are now (checked against the digest the run kept), and every command
after reads them there; another folder of the same classes is still refused, and a run whose fingerprint
kept the folder's old place (made before) follows it too."""

import json
import shutil

import optuna
import pytest
from fixtures.folders import write_tree
from PIL import Image

from hpsearch.cli import main

FLAGS = ["--n", "2", "--cv", "2", "--max-epochs", "1", "--n-jobs", "1", "--patience", "0", "--no-progress",
         "--no-retrain"]


@pytest.fixture(scope="module")
def searched(tmp_path_factory, digits):
    root = tmp_path_factory.mktemp("moved")
    write_tree(root / "data", digits.X_train[:120], digits.y_train[:120], mixed=False)
    assert main(["search", "--dataset", "folder", "--data-dir", str(root / "data"), *FLAGS,
                 "--out", str(root / "run")]) == 0
    return root


def _received(searched, tmp_path):
    """The run as a colleague receives it, and the images at another place than the search read them."""
    shutil.copytree(searched / "run", tmp_path / "run")
    shutil.copytree(searched / "data", tmp_path / "moved")
    return tmp_path / "run", tmp_path / "moved"


def test_a_copied_run_resumes_on_its_images_moved_and_commands_follow(searched, tmp_path, capsys):
    run, moved = _received(searched, tmp_path)
    (searched / "data").rename(searched / "away")  # the place the run names is gone
    try:
        assert main(["retrain", str(run), "--top", "1", "--retrain-epochs", "1", "--no-progress"]) == 2
        assert f"tell the run where it is now with hpsearch search --resume {run} --data-dir NEW" in \
            capsys.readouterr().err
        # it was refused: "other settings (source.root: stored .../data, now .../moved)"
        assert main(["search", "--resume", str(run), "--data-dir", str(moved), "--no-progress", "--no-retrain"]) == 0
        assert json.loads((run / "settings.json").read_text())["data_dir"] == str(moved)
        assert main(["retrain", str(run), "--top", "1", "--retrain-epochs", "1", "--no-progress"]) == 0
        assert (run / "winner.pt").is_file()
    finally:
        (searched / "away").rename(searched / "data")


def test_another_folder_of_the_same_classes_is_refused_by_its_images(searched, tmp_path, capsys):
    run, moved = _received(searched, tmp_path)
    first = sorted((moved / "train" / "zero").glob("*.png"))[0]
    Image.new("L", (8, 8), 255).save(first)
    assert main(["search", "--resume", str(run), "--data-dir", str(moved), "--no-progress", "--no-retrain"]) == 2
    assert "images or labels differ" in capsys.readouterr().err
    assert json.loads((run / "settings.json").read_text())["data_dir"] == str(searched / "data")


def test_a_run_whose_fingerprint_kept_the_folders_place_follows_it_too(searched, tmp_path):
    run, moved = _received(searched, tmp_path)
    study = optuna.load_study(study_name=optuna.get_all_study_names(f"sqlite:///{run / 'trials.db'}")[0],
                              storage=f"sqlite:///{run / 'trials.db'}")
    made = study.user_attrs["fingerprint"]
    assert "root" not in made["source"]
    study.set_user_attr("fingerprint", {**made, "source": {"root": str(searched / "data"), **made["source"]}})
    assert main(["search", "--resume", str(run), "--data-dir", str(moved), "--no-progress", "--no-retrain"]) == 0
