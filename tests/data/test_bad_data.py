"""Data that are wrong are rejected when they load, in one short line naming the file and the problem
(issue 17, pattern 3): every case writes four small idx files with one defect into tmp_path."""

import gzip
import os
import shlex
import shutil
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

from hpsearch.cli import main
from hpsearch.data import load_dataset
from hpsearch.data.dataset import Dataset
from hpsearch.data.idx import IdxError, write_idx
from hpsearch.data.mnist import IDX_FILES
from hpsearch.errors import UsageError

TRAIN_IMG, TRAIN_LAB, TEST_IMG, TEST_LAB = IDX_FILES.values()
SIDE = 6  # small images: the loader takes any size, so the cases stay fast


def _header(*shape):
    return b"\0\0\x08" + bytes([len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


def _arrays(n_train=20, n_test=10):
    rng = np.random.default_rng(0)
    return {
        "train_images": rng.integers(0, 256, (n_train, SIDE, SIDE), dtype=np.uint8),
        "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, SIDE, SIDE), dtype=np.uint8),
        "test_labels": (np.arange(n_test) % 10).astype(np.uint8),
    }


def _write(folder, arrays, gz):
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in IDX_FILES.items():
        write_idx(folder / (stem + (".gz" if gz else "")), arrays[key])
    return folder


def _labels(values):
    return np.asarray(values, dtype=np.uint8)


# Defects in what the files hold: (id, change to the arrays, file named, words of the problem).
CONTENT = [
    ("train-label-out-of-range", {"train_labels": _labels([0, 1, 12, 3, 12] * 4)}, TRAIN_LAB,
     ["8 labels outside 0..9", "e.g. 12"]),
    ("test-label-out-of-range", {"test_labels": _labels([0, 1, 2, 3, 4, 5, 6, 7, 8, 255])}, TEST_LAB,
     ["1 label outside 0..9", "e.g. 255"]),
    ("train-count-mismatch", {"train_labels": _labels(np.arange(19) % 10)}, TRAIN_LAB,
     [f"{TRAIN_IMG}", "holds 20 images", "holds 19 labels"]),
    ("test-count-mismatch", {"test_images": np.zeros((12, SIDE, SIDE), np.uint8)}, TEST_LAB,
     [f"{TEST_IMG}", "holds 12 images", "holds 10 labels"]),
    ("one-class", {"train_labels": np.full(20, 3, np.uint8), "test_labels": np.full(10, 3, np.uint8)}, TRAIN_LAB,
     ["only class 3", "at least 2 classes"]),
    ("test-class-unseen", {"train_labels": _labels(np.arange(20) % 5)}, TEST_LAB,
     ["class 5, 6, 7, 8, 9", f"which {TRAIN_LAB}", "never has"]),
    ("test-image-size", {"test_images": np.zeros((10, 14, 14), np.uint8)}, TEST_IMG,
     ["holds 14x14 images", f"{TRAIN_IMG}", f"holds {SIDE}x{SIDE}", "mix two datasets"]),
    ("test-image-not-square", {"test_images": np.zeros((10, SIDE, SIDE + 1), np.uint8)}, TEST_IMG,
     [f"{SIDE}x{SIDE + 1}"]),
    ("images-as-labels", {"train_labels": np.zeros((20, SIDE, SIDE), np.uint8)}, TRAIN_LAB,
     ["says 3 axes, labels have 1", "00000801"]),
    ("labels-as-images", {"test_images": _labels(np.arange(10))}, TEST_IMG,
     ["says 1 axis, images have 3", "00000803"]),
    ("signed-images", {"train_images": np.zeros((20, SIDE, SIDE), np.int8)}, TRAIN_IMG,
     ["type 0x09 (int8)", "must be type 0x08 (uint8)"]),
    # loaded, searched at chance, then refused as a damaged winner.pt that retraining could not mend
    ("images-of-no-pixels", {"train_images": np.zeros((20, 0, 0), np.uint8),
                             "test_images": np.zeros((10, 0, 0), np.uint8)}, TRAIN_IMG, ["images of 0x0", "no pixels"]),
    # refused only after the whole search, when the retraining scored the winner on it
    ("no-test-images", {"test_images": np.zeros((0, SIDE, SIDE), np.uint8), "test_labels": _labels([])}, TEST_IMG,
     ["holds no images", "the winner is scored on the test set"]),
]


def _check_message(exc, path_or_name, words, tmp_path):
    message = str(exc)
    assert "\n" not in message
    assert str(path_or_name) in message
    for word in words:
        assert word in message, (word, message)
    # short for a folder of an ordinary length (the test's tmp_path is a long one)
    assert len(message.replace(str(tmp_path), "/home/me/data/mnist")) <= 200, message


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("change,named,words", [c[1:] for c in CONTENT], ids=[c[0] for c in CONTENT])
def test_defective_contents_are_named(tmp_path, gz, change, named, words):
    _write(tmp_path, {**_arrays(), **change}, gz)
    with pytest.raises(IdxError) as info:
        load_dataset("mnist", tmp_path)
    _check_message(info.value, named, words, tmp_path)


def _replace(data: bytes, at: int, value: bytes) -> bytes:
    return data[:at] + value + data[at + len(value):]


def _gzip_body_damaged(raw: bytes) -> bytes:
    packed = gzip.compress(raw, mtime=0)
    return _replace(packed, 12, b"\xff" * 8)  # inside the deflate stream: a zlib error


# Defects in one file's bytes: (id, file, how its raw idx bytes become the file, words of the problem).
BYTES = [
    ("magic-not-zero", TRAIN_IMG, lambda b: _replace(b, 0, b"\x12\x34"), ["an idx file", "starts with 12340803",
                                                                          "not 00 00 <type> <ndim>"]),
    ("magic-ndim-255", TRAIN_IMG, lambda b: _replace(b, 3, b"\xff"), ["says 255 axes, images have 3", "00000803"]),
    ("magic-ndim-0", TEST_LAB, lambda b: _replace(b, 3, b"\x00"), ["says 0 axes, labels have 1"]),
    ("unknown-type", TRAIN_LAB, lambda b: _replace(b, 2, b"\x07"), ["unknown type code 0x07", "re-download"]),
    ("float-images", TEST_IMG, lambda b: _replace(b, 2, b"\x0d"), ["type 0x0d (float32)", "0x08 (uint8)"]),
    ("truncated", TRAIN_IMG, lambda b: b[:-5], ["is truncated", f"(20, {SIDE}, {SIDE})", "re-download"]),
    ("padded", TEST_LAB, lambda b: b + b"\x00" * 3, ["is padded", "file holds 13", "re-download"]),
    ("header-cut", TRAIN_IMG, lambda b: b[:9], ["is truncated", "header needs 16 bytes", "holds 9"]),
    ("too-short-for-magic", TEST_LAB, lambda b: b[:3], ["is truncated: 3 bytes", "magic number"]),
    ("empty", TRAIN_LAB, lambda b: b"", ["is empty (0 bytes)", "re-download"]),
    ("html-not-idx", TEST_IMG, lambda b: b"<html>404 Not Found</html>", ["an idx file", "starts with 3c68746d"]),
    ("gzip-truncated", TRAIN_IMG, lambda b: gzip.compress(b, mtime=0)[:-30], ["cannot decompress", "cut short"]),
    ("gzip-bad-method", TRAIN_LAB, lambda b: b"\x1f\x8b\x07" + b"\x00" * 30, ["cannot decompress", "re-download"]),
    ("gzip-bad-crc", TEST_LAB, lambda b: gzip.compress(b, mtime=0)[:-8] + b"\xff" * 8,
     ["cannot decompress", "CRC check failed"]),
    ("gzip-bad-deflate", TEST_IMG, _gzip_body_damaged, ["cannot decompress", "damaged"]),
    # a gzipped header claiming terabytes: one read of that size failed on memory (or overflowed) first
    ("gzip-claims-terabytes", TRAIN_IMG, lambda b: gzip.compress(_header(2**31, 28, 28) + bytes(100)),
     ["is truncated", "(2147483648, 28, 28)", "holds 100"]),
    ("gzip-claims-past-an-index", TRAIN_IMG, lambda b: gzip.compress(_header(2**32 - 1, 2**32 - 1, 2**32 - 1)),
     ["is truncated", "(4294967295, 4294967295, 4294967295)", "holds 0"]),
]


@pytest.mark.parametrize("suffix", ["", ".gz"], ids=["raw-name", "gz-name"])
@pytest.mark.parametrize("stem,corrupt,words", [c[1:] for c in BYTES], ids=[c[0] for c in BYTES])
def test_defective_files_are_named(tmp_path, suffix, stem, corrupt, words):
    arrays = _arrays()
    _write(tmp_path, arrays, gz=False)
    raw = (tmp_path / stem).read_bytes()
    (tmp_path / stem).unlink()
    (tmp_path / (stem + suffix)).write_bytes(corrupt(raw))
    with pytest.raises(IdxError) as info:
        load_dataset("mnist", tmp_path)
    _check_message(info.value, tmp_path / (stem + suffix), words, tmp_path)


def test_gz_name_on_a_file_that_is_neither_says_so(tmp_path):
    _write(tmp_path, _arrays(), gz=False)
    (tmp_path / TEST_LAB).unlink()
    (tmp_path / f"{TEST_LAB}.gz").write_bytes(b"PK\x03\x04 a zip file")
    with pytest.raises(IdxError, match=r"t10k-labels-idx1-ubyte.gz is neither gzip nor an idx file: it starts with 504b0304"):
        load_dataset("mnist", tmp_path)


def test_the_damaged_gzip_cases_are_really_different_errors():
    """The three gzip cases reach three different exceptions of the gzip module (EOFError,
    BadGzipFile, zlib.error): none of them escapes as a traceback."""
    raw = bytes(4) + bytes(range(200)) * 50
    for data, kind in [(gzip.compress(raw)[:-30], EOFError), (b"\x1f\x8b\x07" + bytes(30), gzip.BadGzipFile),
                       (_gzip_body_damaged(raw), zlib.error)]:
        with pytest.raises(kind):
            gzip.decompress(data)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_a_valid_small_set_loads(tmp_path, gz):
    arrays = _arrays()
    ds = load_dataset("mnist", _write(tmp_path, arrays, gz))
    assert ds.X_train.shape == (20, 1, SIDE, SIDE) and ds.X_test.shape == (10, 1, SIDE, SIDE)
    np.testing.assert_array_equal(ds.y_test, arrays["test_labels"])
    assert ds.subset(10, 0).X_test.shape == (0, 1, SIDE, SIDE)  # an empty test set is fine


def test_a_data_dir_that_is_a_file_or_a_cache_that_cannot_be_made_is_said(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(UsageError, match=r"data_dir .*a-file is not a folder; pass a folder that holds"):
        load_dataset("mnist", tmp_path / "a-file")
    monkeypatch.setenv("HPSEARCH_DATA", str(tmp_path / "a-file" / "cache"))  # a traceback (NotADirectoryError)
    with pytest.raises(IdxError, match=r"^cannot make the download folder .*a-file/cache/mnist \(Not a directory\); "
                                       r"set \$HPSEARCH_DATA to a folder you can write"):
        load_dataset("mnist")


@pytest.mark.skipif(os.geteuid() == 0 and not shutil.which("capsh"), reason="root reads any file; needs capsh")
def test_an_unreadable_file_or_folder_is_said_in_one_line(tmp_path):
    """Each was a PermissionError traceback. Root reads any file: the loader runs without that capability."""
    for name in ("file", "folder"):
        _write(tmp_path / name, _arrays(), gz=False)
    (tmp_path / "file" / TRAIN_IMG).chmod(0)
    (tmp_path / "folder").chmod(0)
    (tmp_path / "locked").mkdir(mode=0)  # $HPSEARCH_DATA, the download cache, below it
    code = ("import sys\nfrom hpsearch.data import load_dataset\nfrom hpsearch.errors import UsageError\n"
            "for folder in [*sys.argv[1:], None]:\n    try:\n        load_dataset('mnist', folder)\n"
            "    except UsageError as exc:\n        print(exc)\n")
    command = [sys.executable, "-c", code, str(tmp_path / "file"), str(tmp_path / "folder")]
    if os.geteuid() == 0:
        command = ["capsh", "--drop=cap_dac_override,cap_dac_read_search", "--", "-c",
                   shlex.join(command)]
    try:
        said = subprocess.run(command, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "HPSEARCH_DATA": str(tmp_path / "locked" / "cache")})
    finally:
        (tmp_path / "folder").chmod(0o755)
        (tmp_path / "locked").chmod(0o755)
    assert said.returncode == 0, said.stderr
    assert said.stdout.splitlines() == [
        f"{tmp_path / 'file' / TRAIN_IMG}: cannot be read (Permission denied); check its permissions",
        f"{tmp_path / 'folder'}: cannot be read (Permission denied); check its permissions",
        f"{tmp_path / 'locked' / 'cache' / 'mnist'}: cannot be read (Permission denied); set $HPSEARCH_DATA to a "
        "folder you can read and write, or pass data_dir"]


def test_int8_labels_and_a_test_set_of_fewer_classes_load(tmp_path):
    arrays = {**_arrays(), "train_labels": (np.arange(20) % 10).astype(np.int8), "test_labels": _labels([1] * 10)}
    assert load_dataset("mnist", _write(tmp_path, arrays, gz=True)).y_train.dtype == np.int64


# ----------------------------------------------------------------------------- any Dataset


def _toy(**change):
    rng = np.random.default_rng(0)
    parts = {"X_train": rng.random((12, 1, 4, 4), dtype=np.float32), "y_train": np.arange(12) % 3,
             "X_test": rng.random((6, 1, 4, 4), dtype=np.float32), "y_test": np.arange(6) % 3, **change}
    return Dataset("toy", parts["X_train"], parts["y_train"], parts["X_test"], parts["y_test"],
                   class_names=("cat", "dog", "owl"))


@pytest.mark.parametrize("change,words", [
    ({"y_train": np.arange(12) % 4}, ["y_train holds 3 labels outside 0..2", "(3 class names)"]),
    ({"y_test": -np.ones(6, int)}, ["y_test holds 6 labels outside 0..2", "e.g. -1"]),
    ({"y_train": (np.arange(12) % 3).astype(float)}, ["y_train holds float64 labels", "expected integers"]),
    ({"y_train": np.zeros(12, int)}, ["y_train holds only class 0", "at least 2 classes"]),
    ({"y_train": np.arange(11) % 3}, ["X_train holds 12 images but y_train holds 11 labels"]),
    ({"X_test": np.zeros((6, 1, 5, 4), np.float32)}, ["X_test holds 1x5x4 images but X_train holds 1x4x4"]),
    ({"X_train": np.zeros((12, 16), np.float32)}, ["X_train has shape (12, 16)", "X[:, None]"]),
    ({"y_test": np.zeros((6, 1), int)}, ["y_test has shape (6, 1)", "one label per image"]),
], ids=["train-range", "test-negative", "float-labels", "one-class", "counts", "image-shape", "flat-X", "2d-y"])
def test_any_dataset_is_checked_when_made(change, words):
    with pytest.raises(UsageError) as info:
        _toy(**change)
    message = str(info.value)
    assert message.startswith("dataset 'toy'") and "\n" not in message and len(message) <= 200, message
    for word in words:
        assert word in message, (word, message)


def test_slices_of_a_valid_dataset_stay_valid(digits):
    assert _toy().validate().n_classes == 3
    assert digits.subset(200, 4).n_classes == 10
    assert len(digits.training_slice(100, seed=3).y_train) == 100


# ----------------------------------------------------------------------------- the command line


@pytest.mark.parametrize("change,corrupt", [
    ({"train_labels": _labels([0, 1, 12, 3, 12] * 4)}, None),
    ({"test_images": np.zeros((10, 14, 14), np.uint8)}, None),
    ({}, lambda b: _replace(b, 3, b"\xff")),
], ids=["labels-out-of-range", "test-image-size", "bad-magic"])
def test_search_on_bad_data_exits_2_before_any_run_folder(tmp_path, capsys, change, corrupt):
    data = _write(tmp_path / "data", {**_arrays(), **change}, gz=False)
    if corrupt:
        (data / TRAIN_IMG).write_bytes(corrupt((data / TRAIN_IMG).read_bytes()))
    out = tmp_path / "run"
    code = main(["search", "--dataset", "mnist", "--data-dir", str(data), "--n", "2", "--no-retrain",
                 "--no-progress", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("hpsearch: error: ") and "\n" not in err and "Traceback" not in err, err
    assert str(data) in err
    assert not (out / "trials.db").exists() and not out.exists()
