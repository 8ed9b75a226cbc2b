"""--dataset npz: your own arrays from an .npz file, read with allow_pickle=False, in every layout the
issue names, through a search, its retraining and the winner; bad files are one line naming the fix."""

import numpy as np
import pytest

from hpsearch.cli import main
from hpsearch.data import load_dataset
from hpsearch.errors import UsageError
from hpsearch.winner.bundle import load_winner


def _save(path, digits, **changes):
    arrays = dict(X_train=digits.X_train, y_train=digits.y_train, X_test=digits.X_test, y_test=digits.y_test)
    np.savez(path, **{**arrays, **changes})
    return path


def test_every_layout_reads_as_the_same_images(digits, tmp_path):
    as_uint8 = {k: np.rint(getattr(digits, k) * 255).astype(np.uint8) for k in ("X_train", "X_test")}
    float_chw = load_dataset("npz", _save(tmp_path / "a.npz", digits))
    assert np.array_equal(float_chw.X_train, digits.X_train) and np.array_equal(float_chw.y_test, digits.y_test)
    assert float_chw.class_names == tuple(str(k) for k in range(10)) and float_chw.image_shape == (1, 8, 8)
    uint8_hw = load_dataset("npz", _save(tmp_path / "b.npz", digits, **{k: v[:, 0] for k, v in as_uint8.items()}))
    hwc = _save(tmp_path / "c.npz", digits, **{k: v.transpose(0, 2, 3, 1) for k, v in as_uint8.items()},
                class_names=np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]))
    uint8_hwc = load_dataset("npz", hwc)
    expected = as_uint8["X_train"] / np.float32(255)
    assert np.array_equal(uint8_hw.X_train, expected) and np.array_equal(uint8_hwc.X_train, expected)
    assert uint8_hwc.class_names[3] == "three"


@pytest.mark.slow
def test_a_search_retraining_and_winner_on_an_npz(digits, tmp_path, capsys):
    path = _save(tmp_path / "digits.npz", digits)
    run = tmp_path / "run"
    assert main(["search", "--dataset", "npz", "--data-dir", str(path), "--strategy", "halving", "--n", "6",
                 "--cv", "2", "--max-epochs", "4", "--min-epochs", "2", "--patience", "0", "--top", "1",
                 "--retrain-epochs", "20", "--no-progress", "--out", str(run), "--images", "4", "--units", "4"]) == 0
    net = load_winner(run)
    accuracy = float((net.predict(digits.X_test) == digits.y_test).mean())
    assert accuracy > 0.8, accuracy


@pytest.mark.parametrize("changes, message", [
    ({"X_train": None}, "lacks X_train"),
    ({"X_train": np.array([object()] * 3, dtype=object)}, "a pickled array is never loaded"),
    ({"X_test": "scale"}, "holds values outside [0, 1]"),
    ({"y_train": "float"}, "expected whole-number labels"),
    ({"X_train": "5d"}, "expected (n, H, W), (n, C, H, W) or (n, H, W, C)"),
    ({"class_names": np.array(["a", "b"])}, "the labels reach 9 but class_names names 2 classes"),
])
def test_bad_files_are_one_line(digits, tmp_path, changes, message):
    arrays = dict(X_train=digits.X_train, y_train=digits.y_train, X_test=digits.X_test, y_test=digits.y_test)
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        elif isinstance(value, str):
            arrays[key] = {"scale": arrays[key] * 255, "float": arrays[key].astype(np.float32),
                           "5d": arrays[key][:, None]}[value]
        else:
            arrays[key] = value
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)  # an object array is pickled inside the file: it must never be unpickled
    with pytest.raises(UsageError) as info:
        load_dataset("npz", path)
    assert message in str(info.value) and "\n" not in str(info.value)


def _two_classes(d):  # digits 3 and 7 only, kept as they are: an 8-output net that no image of 0-2, 4-6 trains
    train, test = np.isin(d.y_train, [3, 7]), np.isin(d.y_test, [3, 7])
    return {"X_train": d.X_train[train], "y_train": d.y_train[train], "X_test": d.X_test[test], "y_test": d.y_test[test]}


def _nan(d):
    X = d.X_train.copy()
    X[5, 0, 0, 0] = np.nan
    return {"X_train": X}


@pytest.mark.parametrize("change, message", [
    (_two_classes, "y_train has no image of class 0, 1, 2, 4, 5, 6 (its labels: 3, 7); labels are class indices"),
    (lambda d: {"X_test": d.X_test[:0], "y_test": d.y_test[:0]}, "X_test holds no images"),
    (_nan, "X_train holds NaN (at image 5)"),
    (lambda d: {"X_train": d.X_train * np.float32(1.0000001) + np.float32(1e-7)}, "to 1.0000002)"),
    (lambda d: {"y_train": d.y_train[:-1]}, "holds 1437 images but y_train holds 1436 labels"),
    # a range up to the largest label was made to list the gaps: gigabytes, or a MemoryError traceback
    (lambda d: {"y_train": np.r_[2**40, d.y_train[1:]]}, "no image of class 10, 11, 12, 13, 14, 15, ... (its labels: "
     "0, 1, 2, 3, 4, 5, ...)"),
    (lambda d: {"X_train": d.X_train[:, :, :0, :0], "X_test": d.X_test[:, :, :0, :0]}, "images of 1x0x0, with no "
     "pixels"),
], ids=["labels-3-and-7", "empty-test", "nan", "rounded-above-1", "one-label-short", "a-label-of-2**40",
        "no-pixels"])
def test_what_trained_wrongly_or_failed_late_is_refused_naming_the_file(digits, tmp_path, change, message):
    """Labels 3 and 7 searched an 8-class net scored below chance; an empty test set failed every retraining
    after the search; NaN read "outside [0, 1] (from 0 to 1)"; 1.0000001 printed as 1; a count mismatch
    named "dataset 'npz'", not the file."""
    path = _save(tmp_path / "bad.npz", digits, **change(digits))
    with pytest.raises(UsageError) as info:
        load_dataset("npz", path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value) and "\n" not in str(info.value)


def _claiming(shape, dtype, held: bytes, version=(1, 0)) -> bytes:
    """A stored .npy whose header says ``shape`` of ``dtype`` and whose data are ``held``."""
    import struct

    header = repr({"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape}).encode()
    size = "<H" if version == (1, 0) else "<I"  # the header's length: 2 bytes in 1.0, 4 in 2.0 and 3.0
    start = 6 + 2 + struct.calcsize(size)
    header += b" " * (-(start + len(header) + 1) % 64) + b"\n"  # numpy pads the header to 64 bytes
    return b"\x93NUMPY" + bytes(version) + struct.pack(size, len(header)) + header + held


@pytest.mark.filterwarnings("ignore:Duplicate name")  # the crafted member is written after the real one
@pytest.mark.parametrize("key, member, version, shape, dtype, held, said", [
    ("X_train", "X_train.npy", (1, 0), (2**31, 28, 28), np.uint8, bytes(100),
     "header says shape (2147483648, 28, 28) of uint8"),
    ("y_train", "y_train.npy", (1, 0), (2**33,), np.int64, bytes(100), "header says shape (8589934592,) of int64"),
    ("X_test", "X_test.npy", (1, 0), (360, 1, 8, 8), np.float32, bytes(2550),
     "header says shape (360, 1, 8, 8) of float32"),
    # np.load reads any member, under any .npy version: each one was still a MemoryError traceback
    ("class_names", "class_names.npy", (1, 0), (2**31, 28, 28), np.uint8, bytes(16),
     "header says shape (2147483648, 28, 28) of uint8"),
    ("X_train", "X_train", (1, 0), (2**31, 28, 28), np.uint8, bytes(16),
     "header says shape (2147483648, 28, 28) of uint8"),
    ("X_train", "X_train.npy", (3, 0), (2**31, 28, 28), np.uint8, bytes(16),
     "header says shape (2147483648, 28, 28) of uint8"),
], ids=["terabytes", "64-GiB-labels", "cut-short", "class-names", "member-without-.npy", "npy-version-3"])
def test_an_array_holding_less_than_its_header_says_is_refused_unallocated(digits, tmp_path, key, member, version,
                                                                           shape, dtype, held, said):
    """numpy allocates the shape a stored array's header claims, then fills it: 100 bytes claiming a
    terabyte were a MemoryError traceback; one cut short was said to hold pickled data."""
    import zipfile

    path = _save(tmp_path / "claims.npz", digits)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(member, _claiming(shape, dtype, held, version))  # the later member of the name is read
    with pytest.raises(UsageError) as info:
        load_dataset("npz", path)
    assert str(info.value) == (f"{path}: {key} is damaged or cut short: its {said} ("
                               f"{np.prod(shape) * np.dtype(dtype).itemsize} bytes) but it holds {len(held)}; save "
                               "it again with np.savez")


def test_a_member_that_is_no_array_is_said_not_handed_on_as_bytes(digits, tmp_path):
    """np.load returns the raw bytes of a member without the .npy magic: X_train was b'hello'."""
    import zipfile

    path = _save(tmp_path / "text.npz", digits)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("X_train", b"hello, I am text")
    with pytest.raises(UsageError, match=r"text\.npz: X_train is not a readable array \(the magic string is not "
                                         r"correct; expected b'\\x93NUMPY', got b'hello,'\); save it again"):
        load_dataset("npz", path)


def test_a_missing_file_or_none_says_to_pass_one(tmp_path):
    with pytest.raises(UsageError, match="npz reads your arrays from a file: pass data_dir FILE.npz"):
        load_dataset("npz")
    with pytest.raises(UsageError, match="no such file"):
        load_dataset("npz", tmp_path / "nope.npz")


def test_a_file_that_is_no_npz_is_said_so_not_pickled(tmp_path):
    """numpy says any file neither zip nor .npy "contains pickled (object) data"; it was passed on, cut off."""
    path = tmp_path / "notes.txt"
    path.write_text("hello, I am text\n")
    with pytest.raises(UsageError, match=r"^data_dir .*notes\.txt is not an \.npz file \(not a zip archive\); save "
                                         r"X_train, y_train, X_test, y_test with np\.savez$"):
        load_dataset("npz", path)


def test_files_changed_since_the_search_are_refused_by_a_resume_and_a_retraining(digits, tmp_path, capsys):
    """Only an image folder's images were checked: a resume on replaced files (as CIFAR-10 or MNIST files
    replaced under --data-dir) ranked trials of two datasets together, and retrained on the new one."""
    path = _save(tmp_path / "digits.npz", digits)
    run = tmp_path / "run"
    assert main(["search", "--dataset", "npz", "--data-dir", str(path), "--n", "2", "--cv", "2", "--max-epochs", "1",
                 "--patience", "0", "--n-jobs", "1", "--no-progress", "--no-retrain", "--out", str(run)]) == 0
    X = digits.X_train.copy()
    X[0, 0, 0, 0] = 1.0 - X[0, 0, 0, 0]  # one pixel of one image: same shapes, same counts
    _save(path, digits, X_train=X)
    capsys.readouterr()
    for command in (["search", "--resume", str(run), "--n", "3", "--no-progress", "--no-retrain"],
                    ["retrain", str(run), "--top", "1", "--retrain-epochs", "1", "--no-progress"]):
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert err.startswith("hpsearch: error: npz: its images or labels are not the ones the run was searched on "
                              "(digest ") and "the data changed since the search (its files, or the arrays given)" in err, err
    _save(path, digits)  # put back: the resume goes on
    assert main(["search", "--resume", str(run), "--n", "3", "--no-progress", "--no-retrain"]) == 0
