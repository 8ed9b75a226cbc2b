"""The exported ranking files read back with the README's own code, for every space in
searches/, and the files' modes follow the umask."""

import math
import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hpsearch import ParamGenerator, load_space, read_sorted
from hpsearch.rundir.atomic import atomic_write, atomic_write_text
from hpsearch.rundir.exports import results_frame, write_exports

SPACES = sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "searches").glob("*.toml"))
README_RUN = "results/digits_mlp_mnist_seed0"
AWKWARD = {"note": "two words\there", "flag": True, "dense": [], "nested": [[1, 2], [3]], "empty": ""}


def _records(configs: list[dict]) -> list[dict]:
    """Fake finished trials (no training): distinct scores, the last config failed (NaN)."""
    records = []
    for i, config in enumerate(configs):
        failed = i == len(configs) - 1
        scores = [math.nan] * 2 if failed else [-0.1 * i, -0.1 * i - 0.02]
        records.append({"index": i, "config": config, "state": "FAIL" if failed else "COMPLETE", "rungs": [
            {"epochs": 4, "split_test_scores": scores, "split_test_accuracies": [0.9, 0.8],
             "split_fit_times": [1.0, 2.0], "split_epochs": [4, 4], "error": "boom" if failed else None}]})
    return records


def _readme_readers(readme_snippets, run: Path) -> dict:
    """Run the lines of the README's run-folder snippet that read the two .dat files."""
    [code] = [code for heading, code, _ in readme_snippets if heading == "The run folder"]
    lines = [line for line in code.splitlines() if "hpsearch" not in line]
    namespace = {}
    exec("\n".join(lines).replace(README_RUN, str(run)), namespace)
    return namespace


def _matches(cell, value) -> bool:
    if isinstance(value, list | tuple):
        if len(value) == 1 and not isinstance(cell, str):  # one width: pandas reads a number
            return cell == value[0]
        return str(cell) == ("-".join("-".join(map(str, v)) if isinstance(v, list) else str(v) for v in value)
                             if value else "[]")
    if isinstance(value, bool):
        return cell == value or str(cell) == str(value)
    if isinstance(value, float):
        return math.isclose(float(cell), value, rel_tol=1e-5)
    if isinstance(value, str):
        return str(cell) == ("_".join(value.split()) or "nan") or (value == "" and pd.isna(cell))
    return cell == value


@pytest.mark.parametrize("space", [*SPACES, "awkward"])
def test_dat_files_read_back_with_the_readme_code(space, readme_snippets, tmp_path):
    if space == "awkward":  # every kind of value, and configs that do not share their keys
        configs = [{"model": "cnn", "filters": [8], "lr": 0.01}, {**AWKWARD, "lr": 0.5},
                   {"model": "mlp", "hidden": [532, 195], "lr": 1e-3}]
    else:
        configs = ParamGenerator(load_space(space), seed=0).gen_values(12)
        if space in ("cnn_mnist", "gapcnn_mnist"):  # the case that shifted columns: an empty list
            assert any(v == () or v == [] for c in configs for v in c.values())
    write_exports(tmp_path, results_frame(_records(configs)))
    read = _readme_readers(readme_snippets, tmp_path)
    scores, params = read["scores"], read["params"]
    keys = sorted({k for c in configs for k in c})
    assert scores.shape == (len(configs), 5)
    assert list(params.columns[:2]) == ["rank", "trial"] and sorted(params.columns[2:]) == keys
    for name in ("sorted_scores.dat", "sorted_params.dat"):
        header, *rows = (tmp_path / name).read_text().splitlines()
        assert header.startswith("# rank") and len(rows) == len(configs)
        assert {len(row.split()) for row in rows} == {len(header.split()) - 1}  # every cell one token
    # line i of one file is line i of the other, best first, the failed config last
    np.testing.assert_array_equal(scores[:, 0], params["rank"])
    np.testing.assert_array_equal(scores[:, 1].astype(int), params["trial"])
    assert int(scores[-1, 1]) == len(configs) - 1 and np.isnan(scores[-1, 2])
    assert np.all(np.diff(scores[:-1, 2]) < 0)
    for _, row in params.iterrows():
        config = configs[int(row["trial"])]
        for key in keys:
            if key in config:
                assert _matches(row[key], config[key]), (key, row[key], config[key])
            else:
                assert pd.isna(row[key]), (key, row[key])
    pd.testing.assert_frame_equal(read_sorted(tmp_path / "sorted_params.dat"), params)
    assert read_sorted(tmp_path / "sorted_scores.dat")["trial"].tolist() == params["trial"].tolist()


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_exported_files_follow_the_umask(umask, mode, tmp_path):
    old = os.umask(umask)
    try:
        write_exports(tmp_path, results_frame(_records([{"lr": 0.1}, {"lr": 0.2}])))
        atomic_write_text(tmp_path / "summary.json", "{}\n")
        atomic_write(tmp_path / "fold0.pt", lambda fh: fh.write(b"\0"), binary=True)
        atomic_write_text(tmp_path / "summary.json", "{}\n")  # over an existing file, too
    finally:
        os.umask(old)
    names = ["trials.csv", "sorted_scores.dat", "sorted_params.dat", "summary.json", "fold0.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)  # no temporary file left
    for name in names:
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "summary.json"
    atomic_write_text(path, "old\n")

    def fail(fh):
        fh.write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, fail)
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_a_config_fold_racing_stopped_ranks_after_those_that_ran_every_fold_at_its_budget():
    records = _records([{"lr": 0.1}, {"lr": 0.2}, {"lr": 0.3}, {"lr": 0.4}])
    stopped = records[0]["rungs"][0]  # the best mean, but over 1 of 2 folds: racing stopped it
    stopped.update(split_test_scores=[-0.01], split_test_accuracies=[0.95], split_fit_times=[1.0], split_epochs=[4],
                   stopped="fold racing: after 1 of 2 folds below the rung's cut-off on every one by more than 0")
    records[0]["state"] = "PRUNED"
    frame = results_frame(records).set_index("trial")
    assert frame["rank_test_score"].to_dict() == {1: 1, 2: 2, 0: 3, 3: 4}  # 3 failed: last
    assert frame.loc[0, "stopped"].startswith("fold racing: after 1 of 2") and frame.loc[1, "stopped"] == ""
    assert frame.loc[0, "mean_fit_time"] == 1.0 and frame.loc[0, "mean_test_score"] == -0.01
    # every row names both folds, in order, whichever record comes first; the fold it did not run is empty
    assert [c for c in frame.columns if c.startswith("split")] == [
        "split0_test_score", "split1_test_score", "split0_test_accuracy", "split1_test_accuracy"]
    assert np.isnan(frame.loc[0, "split1_test_score"]) and np.isnan(frame.loc[0, "split1_test_accuracy"])
    assert "stopped" not in results_frame(_records([{"lr": 0.1}, {"lr": 0.2}])).columns  # a run without racing
    from hpsearch.viz.search_plots import fold_spread

    spread = fold_spread(results_frame(records))  # the report's fold spread: over the folds it ran
    assert list(spread["trial"][:3]) == [1, 2, 0] and spread["std"][2] == 0.0 and spread["std"][0] == pytest.approx(0.01)
