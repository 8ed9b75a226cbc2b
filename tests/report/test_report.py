"""report.html: one self-contained file per run (only ``data:`` images, no script, stylesheet or
link to fetch), every section there, numbers equal to the run's files, a run stopped early rendered
with what is missing said; and in headless Chromium no broken image and no sideways scrolling on a
phone-width screen (``HPSEARCH_SCREENSHOT_REPORT=path.png`` saves the screenshot the README shows)."""

import base64
import html
import io
import json
import os
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hpsearch.cli import main
from hpsearch.errors import UsageError
from hpsearch.report import build_report, write_report
from hpsearch.report.content import SEARCH_CAPTIONS, ranking_table
from hpsearch.rundir.names import REPORT_FILE
from hpsearch.viz.plots import REGISTRY
from hpsearch.winner.pictures import draw_pictures

SECTIONS = ("run", "ranking", "failures", "search", "retraining", "winner")
IMG = re.compile(r'<img src="([^"]*)"')


@pytest.fixture(scope="module")
def run(retrained_run, tmp_path_factory, short_ascents_module):
    """A copy of the retrained digits run with the winner's pictures drawn, and its report."""
    run = tmp_path_factory.mktemp("report") / "run"
    shutil.copytree(retrained_run, run)
    draw_pictures(run, "all", images=4, units=4)
    assert main(["report", str(run)]) == 0
    return run


def _images(text: str) -> list[bytes]:
    sources = IMG.findall(text)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources), sources[:3]
    return [base64.b64decode(s.split(",", 1)[1]) for s in sources]


def test_report_is_one_file_with_every_section_and_only_inlined_images(run):
    text = (run / REPORT_FILE).read_text()
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in text
    assert "<script" not in text and "<link" not in text and "@import" not in text
    assert not re.search(r'(src|href)="(https?:)?//', text)  # nothing to fetch
    assert all(href.startswith("#") for href in re.findall(r'href="([^"]*)"', text))
    images = _images(text)
    for png in images:
        Image.open(io.BytesIO(png)).verify()  # each one a whole PNG
    summary = json.loads((run / "summary.json").read_text())
    drawn = [f for files in summary["figures"]["methods"].values() for f in files if f.endswith(".png")]
    plain = html.unescape(text)
    search = [stem for stem in SEARCH_CAPTIONS if SEARCH_CAPTIONS[stem] in plain]
    assert len(images) == len(drawn) + len(search)
    assert {"search_params", "search_history", "search_folds"} <= set(search)
    for method in summary["figures"]["methods"]:  # every picture says what it computes
        assert REGISTRY[method].help in plain


def test_report_numbers_equal_the_run_files(run):
    text = (run / REPORT_FILE).read_text()
    trials = pd.read_csv(run / "trials.csv")
    table = ranking_table(trials)
    assert table["trial"].tolist() == trials["trial"].tolist()
    np.testing.assert_array_equal(table["CV score"], trials["mean_test_score"])
    splits = trials.filter(regex=r"split\d+_test_score")
    np.testing.assert_array_equal(table["worst fold"], splits.min(axis=1))
    winner = json.loads((run / "summary.json").read_text())["winner"]
    assert f"{winner['test_accuracy']:.2%}" in text
    retrain = pd.read_csv(run / "retrain.csv")
    assert f"{retrain['test_accuracy'].iloc[0]:.4g}" in text
    assert "<th>cv accuracy</th>" in text and "<th>schedule</th>" in text  # retrain.csv's columns, as README says
    assert f"{len(trials)} configs of the 2 asked" in text


def test_the_ranking_counts_each_config_once_and_shows_the_epochs_trained(tmp_path):
    """A failed config is counted by its state only (it was counted twice: "1 fail, 1 failed"); the epochs
    column is what the folds trained (early stopping), not the budget."""
    from hpsearch.report.content import ranking_section

    frame = pd.DataFrame({"trial": [0, 1, 2, 3], "state": ["COMPLETE", "PRUNED", "PRUNED", "FAIL"],
                          "rank_test_score": [1, 2, 3, 4], "mean_test_score": [-0.2, -0.5, -0.6, np.nan],
                          "std_test_score": [0.01, 0.02, 0.03, np.nan], "mean_test_accuracy": [0.9, 0.8, 0.7, np.nan],
                          "n_epochs": [6, 2, 2, 6], "mean_epochs": [4.5, 2.0, 2.0, 6.0],
                          "mean_fit_time": [1.0, 0.3, 0.3, 0.1]})
    text = html.unescape(ranking_section(tmp_path, frame, {"n": 4, "cv": 2, "fold_racing": 0.02}))
    assert "4 configs of the 4 asked, 1 complete, 1 failed, 2 pruned. Ranked" in text
    assert "(one that fold racing stopped: over the folds it trained)" in text
    unraced = html.unescape(ranking_section(tmp_path, frame, {"n": 4, "cv": 2, "fold_racing": "off"}))
    assert "fold racing" not in unraced  # halving without racing stores "off": it was said for those runs too
    assert ranking_table(frame)["epochs trained"].tolist() == [4.5, 2.0, 2.0]
    assert "The best 3 (the failed ones are under Failures):" in text  # it said "The best 4" over 3 rows


def test_an_unfinished_search_and_one_where_nothing_scored_say_what_to_run(tmp_path):
    """A search stopped by Ctrl-C was reported as done, its early-rung scores ranked as final, and the user sent
    to hpsearch retrain; a search where every config failed was sent there too, which refuses it."""
    from hpsearch.report.content import pending, ranking_section

    frame = pd.DataFrame({"trial": [0, 1, 2], "state": ["PRUNED", "RUNNING", "RUNNING"], "rank_test_score": [3, 1, 2],
                          "mean_test_score": [-0.9, -0.5, -0.6], "std_test_score": [0.1] * 3,
                          "mean_test_accuracy": [0.7, 0.8, 0.8], "n_epochs": [2, 2, 2], "mean_fit_time": [0.2] * 3})
    settings = {"n": 9, "cv": 2, "strategy": "halving"}
    text = html.unescape(ranking_section(tmp_path, frame, settings))
    assert (f"the search is unfinished (3 of the 9 configs asked have a score, 2 still running (scored short of their "
            f"budget)): it was stopped; finish it with hpsearch search --resume {tmp_path}") in text
    assert pending(tmp_path, frame, settings) == (f"the search is unfinished: hpsearch search --resume {tmp_path} "
                                                  "finishes it, which then retrains its best configs")
    assert pending(tmp_path, frame, {**settings, "extra": {"no_retrain": True}}).endswith("finishes it")
    done = frame.assign(state=["PRUNED", "COMPLETE", "PRUNED"])
    assert pending(tmp_path, done, {**settings, "n": 3}) is None
    assert "unfinished" not in ranking_section(tmp_path, done, {**settings, "n": 3})
    failed = done.assign(state="FAIL", mean_test_score=np.nan)
    assert pending(tmp_path, failed, {**settings, "n": 3}).startswith("nothing to retrain: no config of the search "
                                                                      "scored")


def test_pictures_a_stopped_step_left_undrawn_and_a_test_chosen_winner_are_said(run, tmp_path):
    """A pictures step stopped part way (Ctrl-C, kill -9) left some out without a word; a winner chosen
    on the test set had its accuracy headlined without saying so."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    summary = json.loads((copy / "summary.json").read_text())
    left = [m for m in ("sanity", "occlusion") if m in summary["figures"]["methods"]]
    for method in left:  # as if the step stopped before them
        del summary["figures"]["methods"][method]
    summary["winner"]["chosen_by"] = "test"
    (copy / "summary.json").write_text(json.dumps(summary))
    text = html.unescape(build_report(copy))
    assert left and f"not drawn yet: {', '.join(m for m in REGISTRY if m in left)}; hpsearch plot all {copy}" in text
    assert "test accuracy <strong>(selected on the test set: optimistic)</strong>" in text
    assert "not drawn yet" not in html.unescape(build_report(run))  # every picture there: nothing said


def test_a_crafted_summary_json_puts_no_markup_into_the_page(run, tmp_path):
    """summary.json's winner trial, rank and epochs went into the page unescaped: a shared run folder's
    could run a script in the reader's browser."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    summary = json.loads((copy / "summary.json").read_text())
    summary["winner"]["trial"] = '<img src=x onerror="document.title=1">'
    summary["winner"]["epochs"] = "<b>2</b>"
    (copy / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(UsageError, match=r"summary.json is damaged \(TypeError: its winner's trial is not what the "
                                         r"retraining writes\); hpsearch retrain"):
        build_report(copy)
    summary["winner"]["trial"] = 0
    (copy / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(UsageError, match=r"its winner's epochs is not what the retraining writes"):
        build_report(copy)


def test_the_retraining_says_it_trained_on_the_searchs_slice(run):
    from hpsearch.report.content import retrain_section

    assert "on the whole training set (no early stopping)" in html.unescape(retrain_section(run, {}))
    sliced = html.unescape(retrain_section(run, {"max_train": 300}))
    assert "on the search's slice of at most 300 training images (--max-train) (no early stopping)" in sliced


def test_report_of_a_run_stopped_before_the_retraining(tmp_path):
    run = tmp_path / "early"
    code = main(["search", "--n", "2", "--dataset", "digits", "--cv", "2", "--max-epochs", "1", "--patience", "0",
                 "--n-jobs", "1", "--no-progress", "--no-retrain", "--out", str(run)])
    assert code == 0 and (run / REPORT_FILE).is_file()  # written at the end of the search
    text = (run / REPORT_FILE).read_text()
    assert f"not retrained yet: the best configs get their full training with hpsearch retrain {run}" in text
    assert "no winner yet" in text and 'id="winner"' in text
    assert len(_images(text)) >= 3  # the search plots are there already


def test_report_of_a_search_that_finished_no_config(tmp_path):
    import optuna

    from hpsearch.rundir.store import STUDY

    run = tmp_path / "empty"
    run.mkdir()
    optuna.create_study(storage=f"sqlite:///{run / 'trials.db'}", study_name=STUDY)
    text = build_report(run)
    assert f"no trial is stored yet: the search has not finished a config. Run or resume it: " \
           f"hpsearch search --resume {run}" in text  # (it named the seed's run_search.py)
    assert "settings are unknown" in text and "<img" not in text


def test_report_of_a_folder_that_is_no_run_exits_2(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "is not a run folder (no settings.json, no winner.pt)" in capsys.readouterr().err
    (tmp_path / "settings.json").write_text("{}")  # a search that stored nothing yet
    assert main(["report", str(tmp_path)]) == 2
    assert "holds no trials.db or trials.csv; is it a run folder made by hpsearch search?" in capsys.readouterr().err


def test_pictures_of_an_earlier_winner_are_left_out(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    summary = json.loads((copy / "summary.json").read_text())
    summary["winner"]["epochs"] += 1  # as if retrained since the pictures were drawn
    (copy / "summary.json").write_text(json.dumps(summary))
    path = write_report(copy)
    assert "the winner's pictures are not drawn yet" in html.unescape(path.read_text())


@pytest.mark.slow  # commands end to end on a copied run, about 15 s
def test_a_retraining_that_replaced_the_winner_draws_the_new_ones_pictures(run, retrained_run, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    summary = json.loads((copy / "summary.json").read_text())
    summary["figures"]["trial"] = summary["winner"]["trial"] + 1  # as if drawn for another winner
    (copy / "summary.json").write_text(json.dumps(summary))
    assert main(["retrain", str(copy), "--top", "1", "--retrain-epochs", "2", "--no-progress"]) == 0
    said = capsys.readouterr().out
    assert f"are of the earlier winner (trial {summary['winner']['trial'] + 1}): drawing the new winner's" in said
    redrawn = json.loads((copy / "summary.json").read_text())
    assert redrawn["figures"]["trial"] == redrawn["winner"]["trial"]
    assert redrawn["figures"]["methods"]["confusion-matrix"] == ["confusion_matrix.png"]
    bare = tmp_path / "bare"  # never drawn: told how
    shutil.copytree(retrained_run, bare)
    assert main(["retrain", str(bare), "--top", "1", "--retrain-epochs", "2", "--no-progress"]) == 0
    assert f"draw the winner's pictures with: hpsearch plot all {bare}" in capsys.readouterr().out


def test_report_in_headless_chromium_has_no_broken_image(run, browser):
    from selenium.webdriver.common.by import By

    browser.get((run / REPORT_FILE).as_uri())
    images = browser.find_elements(By.TAG_NAME, "img")
    assert len(images) == len(_images((run / REPORT_FILE).read_text()))
    broken = browser.execute_script(
        "return [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt)")
    assert broken == []
    try:
        browser.set_window_size(390, 844)  # a phone: the page must not scroll sideways
        overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0
        if os.environ.get("HPSEARCH_SCREENSHOT_REPORT"):
            browser.set_window_size(1100, 2400)
            browser.save_screenshot(os.environ["HPSEARCH_SCREENSHOT_REPORT"])
    finally:
        browser.set_window_size(1000, 760)


def test_a_long_run_folder_path_wraps_on_a_phone(run, browser, tmp_path):
    """A 150-character run folder path in the report's text wraps at 390 px instead of widening the page."""
    long = tmp_path / ("averylongfoldername" * 8)[:140] / "run"  # no hyphen, no break opportunity
    shutil.copytree(run, long)
    assert len(str(long)) >= 150
    path = write_report(long)
    try:
        browser.set_window_size(390, 844)
        browser.get(path.as_uri())
        overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, overflow
    finally:
        browser.set_window_size(1000, 760)


def test_captions_say_which_layer_and_counts_read_as_words(run):
    from hpsearch.errors import plural
    from hpsearch.report.winner_section import _which

    assert _which("MLP: images maximizing each unit", "maximizers_layer2") == (
        "MLP: images maximizing each unit — hidden layer 2")
    assert _which("x", "maximizers_output") == "x — the output layer"
    assert _which("x", "maximizers_layer1_box").endswith("the exact maximizer of each unit over the [0, 1] box")
    assert (plural(1, "epoch"), plural(3, "epoch")) == ("1 epoch", "3 epochs")
    text = html.unescape(build_report(run))
    assert "1 epochs" not in text and "1 configs" not in text
    assert "columns: the table scrolls sideways" in text  # the ranking is wider than a card: said


def test_the_report_and_the_pictures_leave_the_callers_matplotlib_backend(run):
    """Both switched the process to Agg: in a notebook, plt.show() then showed nothing (they draw without pyplot)."""
    import matplotlib

    from hpsearch.report import write_report

    before = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        write_report(run)
        draw_pictures(run, "confusion-matrix")
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)
