"""Triple-MNIST: the builder (``hpsearch make-triple``) and the loader, on real files built from
the bundled ``digits`` (8x8 sources, 24x24 images)."""

import csv
import json
import re
import shutil

import numpy as np
import pytest
from fixtures.triple import COUNTS, build_triple, files_of, one_line
from PIL import Image

from hpsearch.data import load_dataset
from hpsearch.data import multidigit as md
from hpsearch.data.dataset import DIGIT_CLASSES
from hpsearch.data.make_triple import make_triple
from hpsearch.data.multidigit import TripleError, read_triple_arrays


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("triple") / "t"
    return build_triple(out)


@pytest.fixture
def copy(built, tmp_path):
    """A private copy of the built folder, to damage."""
    target = tmp_path / "t"
    shutil.copytree(built.out, target, ignore=shutil.ignore_patterns(md.CACHE_FILE))
    return target


def _source_uint8():
    ds = load_dataset("digits")
    to8 = lambda X: np.rint(X[:, 0] * 255).astype(np.uint8)  # noqa: E731
    return {"train": (to8(ds.X_train), ds.y_train), "test": (to8(ds.X_test), ds.y_test)}


def test_the_layout_is_three_splits_of_label_folders_of_24x24_grey_pngs(built):
    root = built.out
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["test", "train", "val"]
    for split, n in COUNTS.items():
        pngs = sorted((root / split).glob("*/*.png"))
        assert len(pngs) == n == len(built.files[split]) == len(built.labels[split])
        assert all(re.fullmatch(r"[0-9]{3}", p.parent.name) for p in pngs)
        assert all(re.fullmatch(r"[0-9]{5}\.png", p.name) for p in pngs)
        for path in pngs[:5]:
            with Image.open(path) as img:
                assert (img.format, img.mode, img.size) == ("PNG", "L", (24, 24))
        for name, label in zip(built.files[split], built.labels[split], strict=True):
            assert name.split("/")[1] == "".join(map(str, label))
    meta = json.loads((root / "meta.json").read_text())
    assert meta["complete"] and meta["source"] == "digits" and meta["seed"] == 1 and meta["counts"] == COUNTS
    assert meta["image_size"] == [24, 24]


def test_the_same_seed_writes_the_same_bytes_and_another_seed_differs(built, tmp_path):
    again = build_triple(tmp_path / "again")
    assert files_of(again.out) == {k: v for k, v in files_of(built.out).items() if k != md.CACHE_FILE}
    other = build_triple(tmp_path / "other", seed=2)
    assert files_of(other.out)["meta.json"] != files_of(again.out)["meta.json"]
    assert not np.array_equal(other.sources["train"], again.sources["train"])


def _placement(strip, digit):
    """The row offset at which ``digit`` lies in the column ``strip`` (black elsewhere), or None."""
    s = digit.shape[0]
    for offset in range(2 * s + 1):
        canvas = np.zeros_like(strip)
        canvas[offset:offset + s] = digit
        if np.array_equal(canvas, strip):
            return offset
    return None


def test_each_third_of_an_image_is_its_source_digit_exactly(built):
    sources = _source_uint8()
    for split in ("train", "test"):  # val draws from the same source split as train
        X, y = sources[built.source_split[split]]
        for i in range(5):
            with Image.open(built.out / built.files[split][i]) as img:
                pixels = np.asarray(img)
            for k in range(3):
                src = built.sources[split][i, k]
                assert _placement(pixels[:, 8 * k:8 * (k + 1)], X[src]) is not None, (split, i, k)
                assert built.labels[split][i, k] == y[src]
            assert len(set(built.sources[split][i])) == 3  # three distinct images per triple


def test_no_source_image_of_val_or_test_is_in_train(built):
    assert built.source_split == {"train": "train", "val": "train", "test": "test"}
    train, val = built.pools["train"], built.pools["val"]
    assert not set(train) & set(val) and len(train) + len(val) == 1437 and len(val) == round(1437 * 0.2)
    assert set(built.sources["train"].ravel()) <= set(train)
    assert set(built.sources["val"].ravel()) <= set(val)
    assert set(built.sources["test"].ravel()) <= set(range(360))  # indices into the source's *test* split
    with open(built.out / "sources.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == sum(COUNTS.values())
    for row in rows:  # the audit file says the same as the return value
        split = row["split"]
        i = built.files[split].index(row["file"])
        assert row["source_split"] == built.source_split[split]
        assert [int(row[f"source{k}"]) for k in range(3)] == list(built.sources[split][i])


def test_the_loader_reads_back_what_the_builder_wrote(built, copy):
    arrays = read_triple_arrays(copy)
    assert arrays["X_train"].shape == (80, 1, 24, 24) and arrays["X_test"].shape == (20, 1, 24, 24)
    assert arrays["X_train"].dtype == np.float32 and arrays["y_train"].dtype == np.int64
    assert arrays["y_train"].shape == (80, 3) and arrays["y_test"].shape == (20, 3)
    written = {name: label for split in md.TRIPLE_SPLITS
               for name, label in zip(built.files[split], built.labels[split], strict=True)}
    files = list(arrays["files_train"])
    assert files == sorted(built.files["train"]) + sorted(built.files["val"])  # stable: train, then val
    for part in ("train", "test"):
        for name, x, label in zip(arrays[f"files_{part}"], arrays[f"X_{part}"], arrays[f"y_{part}"], strict=True):
            assert list(label) == list(written[name])
            with Image.open(copy / name) as img:
                assert np.array_equal(x[0], np.asarray(img) / np.float32(255))
    ds = load_dataset("triple-mnist", copy)
    assert ds.name == "triple-mnist" and ds.class_names == DIGIT_CLASSES and ds.y_train.shape == (80, 3)
    np.testing.assert_array_equal(ds.y_test, arrays["y_test"])


def test_a_second_load_uses_the_cache_and_a_changed_folder_is_read_again(copy, monkeypatch):
    first = read_triple_arrays(copy)
    assert (copy / md.CACHE_FILE).is_file()

    def no_decoding(*args):
        raise AssertionError("decoded although cached")

    with monkeypatch.context() as patch:
        patch.setattr(md, "_decode", no_decoding)
        np.testing.assert_array_equal(read_triple_arrays(copy)["X_train"], first["X_train"])
    (copy / first["files_test"][0]).unlink()
    assert len(read_triple_arrays(copy)["y_test"]) == 19
    (copy / md.CACHE_FILE).write_bytes(b"PK\x03\x04 damaged")  # a damaged cache is read around, then rewritten
    assert len(read_triple_arrays(copy)["y_test"]) == 19
    assert np.load(copy / md.CACHE_FILE)["labels_test"].shape == (19, 3)


def test_an_image_of_another_size_is_named_with_both_sizes(copy):
    odd = copy / "test" / "999" / "00000.png"
    odd.parent.mkdir()
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(odd)
    with pytest.raises(TripleError) as exc:
        read_triple_arrays(copy)
    one_line(exc, odd, "12x10", "24x24")


def test_a_folder_not_named_by_three_digits_is_named(copy):
    for bad in ("04a", "0423"):
        (copy / "train" / bad).mkdir()
        with pytest.raises(TripleError) as exc:
            read_triple_arrays(copy)
        one_line(exc, copy / "train" / bad, "three digits")
        (copy / "train" / bad).rmdir()


def test_an_empty_or_missing_split_is_named(copy):
    shutil.rmtree(copy / "test")
    (copy / "test" / "042").mkdir(parents=True)
    with pytest.raises(TripleError) as exc:
        read_triple_arrays(copy)
    one_line(exc, copy / "test", "no images")
    shutil.rmtree(copy / "test")
    with pytest.raises(TripleError) as exc:
        read_triple_arrays(copy)
    one_line(exc, copy / "test", "missing")
    fresh = make_triple("digits", copy / "fresh", n_train=60, n_val=0, n_test=20, seed=1).out
    assert not (fresh / "val").exists()  # val/ is optional: none written, and the folder loads
    assert len(read_triple_arrays(fresh)["y_train"]) == 60


def test_a_missing_folder_says_how_to_make_one(tmp_path, monkeypatch):
    with pytest.raises(TripleError) as exc:
        read_triple_arrays(tmp_path / "nowhere")
    one_line(exc, tmp_path / "nowhere", "hpsearch make-triple")
    monkeypatch.setenv("HPSEARCH_DATA", str(tmp_path / "cache"))
    with pytest.raises(TripleError) as exc:
        load_dataset("triple-mnist")
    one_line(exc, tmp_path / "cache" / "triple-mnist", "make-triple --from digits", "data_dir")
    build_triple(tmp_path / "cache" / "triple-mnist")  # once there, it is found without a --data-dir
    assert load_dataset("triple-mnist").y_train.shape == (80, 3)


def test_a_colour_image_is_read_as_grey(copy):
    name = sorted((copy / "train").glob("*/*.png"))[0]
    grey = np.asarray(Image.open(name))
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(name)  # R = G = B: the same grey again
    assert Image.open(name).mode == "RGB"
    arrays = read_triple_arrays(copy)
    assert np.array_equal(arrays["X_train"][0, 0], grey / np.float32(255))


def test_a_non_image_and_an_interrupted_build_are_named(copy):
    junk = copy / "train" / "123" / "notes.png"
    junk.parent.mkdir(exist_ok=True)
    junk.write_text("not a picture")
    with pytest.raises(TripleError) as exc:
        read_triple_arrays(copy)
    one_line(exc, junk, "not a readable image")
    junk.unlink()
    meta = json.loads((copy / "meta.json").read_text())
    (copy / "meta.json").write_text(json.dumps({**meta, "complete": False}))
    with pytest.raises(TripleError) as exc:
        read_triple_arrays(copy)
    one_line(exc, "interrupted", "run the same make-triple command again to finish it")


def test_a_16_bit_or_float_grey_image_reads_as_its_8_bit_picture(copy):
    """A 16-bit PNG (each 8-bit level v stored as v * 257) and a float TIFF (v / 255) of the same
    picture read as that picture, not clipped to white."""
    names = sorted((copy / "train").glob("*/*.png"))[:2]
    grey = [np.asarray(Image.open(name)) for name in names]
    Image.fromarray(grey[0].astype(np.uint16) * 257).save(names[0])  # PNG: mode I;16
    assert Image.open(names[0]).mode.startswith("I")
    Image.fromarray(grey[1] / np.float32(255)).save(names[1].with_suffix(".tif"))  # TIFF: mode F
    names[1].unlink()
    arrays = read_triple_arrays(copy)
    assert np.array_equal(arrays["X_train"][0, 0], grey[0] / np.float32(255))
    assert np.array_equal(arrays["X_train"][1, 0], grey[1] / np.float32(255))


def test_an_outlier_is_named_even_first_and_hazards_are_refused_unread(copy):
    """The image of another size is named even when it sorts first (not the normal one after it); a FIFO
    (a read would block), a link in a loop and a decompression bomb (a huge size in a small file) are
    each one line naming the file."""
    import os

    first = sorted((copy / "train").glob("*/*.png"))[0]
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(first)
    with pytest.raises(TripleError) as exc:
        read_triple_arrays(copy)
    one_line(exc, first, "12x10", "of the", "24x24")
    Image.fromarray(np.zeros((24, 24), np.uint8)).save(first)
    label = first.parent
    os.mkfifo(label / "zz-pipe.png")
    with pytest.raises(TripleError) as exc:
        read_triple_arrays(copy)
    one_line(exc, label / "zz-pipe.png", "not a regular file")
    (label / "zz-pipe.png").unlink()
    (label / "zz-loop.png").symlink_to(label / "zz-loop.png")
    with pytest.raises(TripleError) as exc:
        read_triple_arrays(copy)
    one_line(exc, label / "zz-loop.png", "not a regular file")
    (label / "zz-loop.png").unlink()
    Image.new("L", (24, 24 * 30_000)).save(label / "zz-bomb.png")  # 720,000 x 24 pixels in a few kB
    with pytest.raises(TripleError) as exc:
        read_triple_arrays(copy)
    one_line(exc, label / "zz-bomb.png")
