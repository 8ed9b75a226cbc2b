"""``hpsearch predict RUN FILE ...``: real PNG files through the page's preprocessing, against
``net.predict`` on the same arrays; bad files, exit codes and ``--explain``'s heat maps."""

import numpy as np
import pytest
from PIL import Image

import hpsearch
from hpsearch.cli import main


@pytest.fixture(scope="module")
def pngs(tmp_path_factory, digits):
    """Five digits test images as 8-bit grey PNGs (0..16 scaled to 0..255) and their arrays."""
    folder = tmp_path_factory.mktemp("pngs")
    x = digits.X_test[:5]
    paths = []
    for i, image in enumerate(x):
        path = folder / f"digit{i}.png"
        Image.fromarray((image[0] * 255).round().astype(np.uint8), mode="L").save(path)
        paths.append(path)
    return paths, x


def _lines(text):
    return [line.split("\t") for line in text.splitlines()]


def test_predict_prints_the_class_net_predict_gives(retrained_run, pngs, capsys):
    paths, x = pngs
    assert main(["predict", str(retrained_run), *map(str, paths)]) == 0
    lines = _lines(capsys.readouterr().out)
    net = hpsearch.load_winner(retrained_run)
    names = [str(c) for c in net.winner_["class_names"]]
    assert [row[0] for row in lines] == [str(p) for p in paths]
    assert [row[1] for row in lines] == [names[i] for i in net.predict(x)]
    best = net.predict_proba(x).max(axis=1)
    np.testing.assert_allclose([float(row[2]) for row in lines], best, atol=5e-5)
    # the tiny net's classes may coincide; the inputs it saw are exactly the test arrays
    from hpsearch.winner.predict import Predictor

    predictor = Predictor(net)
    for path, image in zip(paths, x, strict=True):
        np.testing.assert_array_equal(predictor.prepare(path.read_bytes()), image)


def test_a_bad_file_gets_its_error_line_and_the_others_their_answer(retrained_run, pngs, tmp_path, capsys):
    paths, _ = pngs
    text = tmp_path / "notes.png"
    text.write_text("not an image at all")
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(paths[0].read_bytes()[:40])
    files = [paths[0], text, tmp_path / "missing.png", truncated, tmp_path, paths[1]]
    assert main(["predict", str(retrained_run), *map(str, files)]) == 1
    out, err = capsys.readouterr()
    assert [row[0] for row in _lines(out)] == [str(paths[0]), str(paths[1])]
    errors = err.splitlines()
    assert len(errors) == 5
    for line, path in zip(errors[:4], files[1:5], strict=True):
        assert line.startswith(f"hpsearch: error: {path}: ")
    assert errors[0].endswith("not an image: expected one of PNG, JPEG, GIF, BMP, WEBP, TIFF")
    assert "cannot read it: No such file" in errors[1] and "the image cannot be read" in errors[2]
    assert errors[3].endswith("it is a folder, not an image file")
    assert errors[-1] == "hpsearch: 4 of 6 files failed (see the errors above)"


def test_bad_run_is_a_usage_error(tmp_path, pngs, capsys):
    paths, _ = pngs
    assert main(["predict", str(tmp_path), str(paths[0])]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"RUN_DIR {tmp_path} is not a run folder (no settings.json, no winner.pt)" in err
    (tmp_path / "settings.json").write_text("{}")  # a search not yet retrained
    assert main(["predict", str(tmp_path), str(paths[0])]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "winner.pt" in err and "hpsearch retrain" in err
    assert main(["predict", str(tmp_path)]) == 2  # no FILE
    assert "FILE is missing: hpsearch predict RUN_DIR FILE..." in capsys.readouterr().err
    assert main(["predict", "--model", str(tmp_path)]) == 2  # it blamed a missing RUN_DIR, which --model needs not
    assert "error: FILE is missing: hpsearch predict --model model.onnx FILE..." in capsys.readouterr().err
    assert main(["predict", str(tmp_path), str(paths[0]), "--out-dir", str(tmp_path)]) == 2
    assert "only says where --explain writes the heat maps; add --explain" in capsys.readouterr().err


def test_explain_writes_one_png_heat_map_per_image(retrained_run, pngs, tmp_path, capsys):
    paths, x = pngs
    images = tmp_path / "images"
    images.mkdir()
    copies = []
    for path in paths[:2]:
        copy = images / path.name
        copy.write_bytes(path.read_bytes())
        copies.append(copy)
    assert main(["predict", str(retrained_run), *map(str, copies), "--explain"]) == 0
    rows = _lines(capsys.readouterr().out)
    for copy, row in zip(copies, rows, strict=True):
        heat = images / f"{copy.stem}.heatmap.png"
        assert row[3] == str(heat)
        with Image.open(heat) as image:  # input and map side by side, with a colour bar: wide, readable
            assert image.format == "PNG" and image.size == (660, 320)
    # into --out-dir; the same name twice gets -2 instead of overwriting
    out = tmp_path / "maps"
    assert main(["predict", str(retrained_run), str(copies[0]), str(paths[0]), "--explain",
                 "--out-dir", str(out)]) == 0
    assert [row[3] for row in _lines(capsys.readouterr().out)] == [
        str(out / "digit0.heatmap.png"), str(out / "digit0-2.heatmap.png")]
    assert sorted(p.name for p in out.iterdir()) == ["digit0-2.heatmap.png", "digit0.heatmap.png"]


def test_an_unwritable_heat_map_is_that_files_error(retrained_run, pngs, tmp_path, capsys):
    paths, _ = pngs
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["predict", str(retrained_run), str(paths[0]), "--explain", "--out-dir", str(blocker)]) == 2
    assert "--out-dir" in capsys.readouterr().err
    from hpsearch.winner.predict import Predictor
    from hpsearch.winner.predict_files import predict_files

    predictor = Predictor.from_run(retrained_run)
    (heat_dir := tmp_path / "ro").mkdir()
    (heat_dir / "digit0.heatmap.png").mkdir()  # a folder where the file would go: writing fails
    answers = list(predict_files(predictor, [paths[0], paths[1]], explain=True, out_dir=heat_dir))
    assert answers[0]["class_name"] is not None and "out_dir" in answers[0]["error"]  # named as Python spells it
    assert answers[1]["error"] is None and answers[1]["heatmap"].endswith("digit1.heatmap.png")


def test_a_16_bit_or_float_picture_preprocesses_as_its_8_bit_one():
    """predict and the page see a 16-bit PNG or a float TIFF as the 8-bit picture it stores, scaled by its
    range (not clipped to white by an 8-bit conversion)."""
    import io

    from PIL import Image

    from hpsearch.data.preprocess import preprocess, preprocessing_for

    rng = np.random.default_rng(0)
    picture = (rng.random((20, 20)) * 255).astype(np.uint8)
    picture[:, :10] = 0  # a dark background, as the digits have

    def png_bytes(image, fmt="PNG"):
        out = io.BytesIO()
        image.save(out, format=fmt)
        return out.getvalue()

    settings = preprocessing_for("fashion-mnist", (1, 28, 28))
    eight = preprocess(png_bytes(Image.fromarray(picture)), settings)
    sixteen = preprocess(png_bytes(Image.fromarray(picture.astype(np.uint16) * 257)), settings)
    floats = preprocess(png_bytes(Image.fromarray(picture / np.float32(255)), "TIFF"), settings)
    assert np.array_equal(sixteen, eight) and np.array_equal(floats, eight)


def test_a_fifo_a_device_and_a_huge_sparse_file_are_refused_unread(retrained_run, pngs, tmp_path, capsys):
    """A named pipe would block a read forever, /dev/zero never ends and a sparse file's size is its
    claim: each is refused before reading, with its own line, and the good file still answered."""
    import os

    paths, _ = pngs
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    sparse = tmp_path / "huge.png"
    with sparse.open("wb") as fh:
        fh.truncate(8 * 1024**3)  # 8 GB of holes: no disk used
    assert main(["predict", str(retrained_run), str(fifo), "/dev/zero", str(sparse), str(paths[0])]) == 1
    out, err = capsys.readouterr()
    errors = err.splitlines()
    assert errors[0] == f"hpsearch: error: {fifo}: it is a FIFO, not an image file"
    assert errors[1] == "hpsearch: error: /dev/zero: it is a device, not an image file"
    assert errors[2] == f"hpsearch: error: {sparse}: 8,589,934,592 bytes: an image file may have at most 50 MB"
    assert [line.split("\t")[0] for line in out.strip().splitlines()] == [str(paths[0])]


def test_a_ctrl_c_lost_in_a_callback_still_stops_the_pictures(retrained_run, tmp_path, monkeypatch, capsys):
    """A Ctrl-C whose KeyboardInterrupt lands in a __del__ or a garbage collector's callback: Python
    printed "Exception ignored ... Traceback", dropped it, and the run drew every picture and exited 0.
    It now stops before the next picture, exit code 130, with the interrupt line and no traceback."""
    import dataclasses
    import shutil

    from hpsearch.cli import main
    from hpsearch.viz.plots import REGISTRY

    class LostInACallback:
        def __del__(self):
            raise KeyboardInterrupt  # as the signal handler does when SIGINT lands here

    entry = REGISTRY["confusion-matrix"]

    def draw(net, dataset, options):
        LostInACallback()  # collected at once: its exception cannot propagate
        return entry.draw(net, dataset, options)

    monkeypatch.setitem(REGISTRY, "confusion-matrix", dataclasses.replace(entry, draw=draw))
    run = tmp_path / "run"
    shutil.copytree(retrained_run, run)
    for picture in run.glob("*.png"):
        picture.unlink()
    assert main(["plot", "all", str(run)]) == 130
    out, err = capsys.readouterr()
    assert "confusion-matrix: wrote confusion_matrix.png" in out and "class-report" not in out
    assert "interrupted; everything finished is kept" in err and "Exception ignored" not in err, err
    assert not (run / "class_report.png").exists()
