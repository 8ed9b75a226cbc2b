"""The README's Python snippets run as written, on a real (tiny) retrained run in place of the
``results/digits_mlp_mnist_seed0`` they name. A block that needs what a test cannot have (the
MNIST files, a GPU) is skipped only where the README marks it: ``<!-- readme-test: skip REASON -->``
on the line before the block."""

import numpy as np
import pandas as pd
import pytest

import hpsearch

README_RUN = "results/digits_mlp_mnist_seed0"  # the run folder the snippets name


@pytest.mark.slow
def test_every_python_snippet_of_the_readme_runs(readme_snippets, retrained_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a snippet that writes a file writes it here
    from hpsearch.winner.export import export_winner

    export_winner(retrained_run)  # the "Use the winner elsewhere" snippet reads RUN/export/
    assert len(readme_snippets) >= 4
    ran = {}
    for heading, code, skip in readme_snippets:
        if skip:
            continue
        namespace = {"__name__": "__readme__"}
        exec(compile(code.replace(README_RUN, str(retrained_run)), f"README.md, {heading}", "exec"), namespace)
        ran[heading] = namespace
    assert len(ran) == len(readme_snippets), "every current README block runs (none is marked to skip)"
    # and they say what the README says they do
    files = ran["The run folder"]
    assert files["scores"].shape == (2, 5) and list(files["scores"][:, 0]) == [1, 2]
    pd.testing.assert_frame_equal(files["params"], hpsearch.read_sorted(retrained_run / "sorted_params.dat"))
    assert list(files["names"][:2]) == ["rank", "trial"] and list(files["params"]["trial"]) == list(
        files["scores"][:, 1].astype(int))
    assert len(ran["Search spaces"]["configs"]) == 150
    door = ran["Your hpsearch space as the distributions"]["search"]
    assert door.best_config_ == door.cv_results_["config"][door.best_index_] and door.best_score_ > 0.8
    assert door.cv_results_["params"][0]["module__hidden"] == tuple(door.cv_results_["config"][0]["hidden"])
    fields = ran["Retraining and pictures"]["fields"]
    assert len(fields) == 3 and all(isinstance(f, np.ndarray) for f in fields)  # two hidden layers + output
