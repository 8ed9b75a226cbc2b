"""CIFAR-10 from its batch files: small batches written in the real formats (python pickles with bytes
keys, and the binary 3,073-byte records), the exact pixels back, every defect one line naming the
file, a pickle that tries to run code refused, and the checksummed download from a file:// URL."""

import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

import hpsearch.data.cifar10 as cifar
from hpsearch.data import load_dataset
from hpsearch.data.cifar10 import CIFAR10_CLASSES, CifarError, download_cifar10, read_batch
from hpsearch.errors import UsageError

NAMES = [b"plane", b"car", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def _batches(n=20, seed=0):
    """Six (data, labels) pairs: uint8 (n, 3072) and every class 0..9 in each batch."""
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, 256, size=(n, 3072), dtype=np.uint8), [int(v) for v in rng.permutation(n) % 10])
            for _ in BATCHES]


def write_python(folder: Path, batches, protocol=2, meta=True) -> Path:
    """The python version, as the real files are: dicts with bytes keys, data a uint8 array."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, (data, labels) in zip(BATCHES, batches, strict=True):
        batch = {b"batch_label": name.encode(), b"labels": labels, b"data": data,
                 b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))]}
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh, protocol=protocol)
    if meta:
        with open(folder / "batches.meta", "wb") as fh:
            pickle.dump({b"num_cases_per_batch": 20, b"label_names": NAMES, b"num_vis": 3072}, fh, protocol=protocol)
    return folder


def write_binary(folder: Path, batches) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (data, labels) in zip(BATCHES, batches, strict=True):
        records = np.concatenate([np.asarray(labels, dtype=np.uint8)[:, None], data], axis=1)
        (folder / f"{name}.bin").write_bytes(records.tobytes())
    (folder / "batches.meta.txt").write_text("\n".join(n.decode() for n in NAMES) + "\n\n")
    return folder


def _check_pixels(ds, batches):
    train = np.concatenate([d for d, _ in batches[:5]])
    test, test_labels = batches[5]
    assert ds.name == "cifar10" and ds.X_train.shape == (100, 3, 32, 32) and ds.X_test.shape == (20, 3, 32, 32)
    assert ds.X_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    for i, c, y, x in [(0, 0, 0, 0), (3, 1, 5, 7), (57, 2, 31, 30), (99, 2, 31, 31)]:
        assert ds.X_train[i, c, y, x] == np.float32(train[i, c * 1024 + y * 32 + x]) / np.float32(255)
    np.testing.assert_array_equal(ds.X_train.reshape(100, 3072) * np.float32(255), train.astype(np.float32))
    np.testing.assert_array_equal(ds.X_test.reshape(20, 3072) * np.float32(255), test.astype(np.float32))
    np.testing.assert_array_equal(ds.y_train, np.concatenate([lab for _, lab in batches[:5]]))
    np.testing.assert_array_equal(ds.y_test, test_labels)
    assert ds.class_names == tuple(n.decode() for n in NAMES)


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_python_batches_give_the_exact_pixels_labels_and_names(tmp_path, protocol):
    batches = _batches()
    _check_pixels(load_dataset("cifar10", write_python(tmp_path / "cifar-10-batches-py", batches, protocol)), batches)
    # the folder the archive unpacks into may be given, or the one holding it
    _check_pixels(load_dataset("CIFAR-10", tmp_path), batches)


def test_pickles_naming_numpy_core_as_the_real_files_do(tmp_path):
    """The real batches were pickled by Python 2 with numpy 1: they name numpy.core.multiarray."""
    batches = _batches()
    folder = write_python(tmp_path, batches, protocol=2)
    for name in BATCHES:
        raw = (folder / name).read_bytes()
        assert b"numpy._core.multiarray" in raw
        (folder / name).write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    _check_pixels(load_dataset("cifar10", folder), batches)


def test_binary_batches_give_the_same_dataset(tmp_path):
    batches = _batches(seed=1)
    _check_pixels(load_dataset("cifar10", write_binary(tmp_path / "cifar-10-batches-bin", batches)), batches)
    images, labels = read_batch(tmp_path / "cifar-10-batches-bin" / "test_batch.bin")
    assert images.shape == (20, 3, 32, 32) and images.dtype == np.uint8
    np.testing.assert_array_equal(images.reshape(20, -1), batches[5][0])


def test_without_meta_the_standard_names_and_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HPSEARCH_DATA", str(tmp_path))
    write_python(tmp_path / "cifar10" / "cifar-10-batches-py", _batches(), meta=False)
    assert load_dataset("cifar10").class_names == CIFAR10_CLASSES


def _error(folder) -> str:
    with pytest.raises(CifarError) as info:
        load_dataset("cifar10", folder)
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, UsageError)
    return message


def _rewrite(folder: Path, name: str, changes: dict):
    with open(folder / name, "rb") as fh:
        batch = pickle.load(fh, encoding="bytes")
    batch.update(changes)
    with open(folder / name, "wb") as fh:
        pickle.dump(batch, fh, protocol=2)


def test_truncated_and_garbage_files_are_named(tmp_path):
    folder = write_python(tmp_path, _batches())
    raw = (folder / "data_batch_3").read_bytes()
    (folder / "data_batch_3").write_bytes(raw[: len(raw) // 2])
    message = _error(folder)
    assert "data_batch_3" in message and "damaged or cut short" in message and "re-download" in message
    (folder / "data_batch_3").write_bytes(b"\x00garbage, not a pickle")
    assert "data_batch_3" in _error(folder)
    (folder / "data_batch_3").write_bytes(b"")
    assert "data_batch_3 is empty" in _error(folder)


def test_wrong_shape_label_10_and_counts_are_named(tmp_path):
    folder = write_python(tmp_path, _batches())
    _rewrite(folder, "data_batch_2", {b"data": np.zeros((20, 3000), np.uint8)})
    message = _error(folder)
    assert "data_batch_2" in message and "(20, 3000), expected uint8 (n, 3072)" in message
    _rewrite(folder, "data_batch_2", {b"data": np.zeros((20, 3072), np.float32)})
    assert "float32" in _error(folder)
    _rewrite(folder, "data_batch_2", {b"data": np.zeros((20, 3072), np.uint8), b"labels": [10] + [1] * 19})
    message = _error(folder)
    assert "data_batch_2: label 10 (image 0; 1 in all) is outside 0..9" in message
    _rewrite(folder, "data_batch_2", {b"labels": [1] * 19})
    assert "data_batch_2 holds 20 images but 19 labels" in _error(folder)
    _rewrite(folder, "data_batch_2", {b"labels": np.ones((20, 1), np.int64)})  # was "20 images but 20 labels"
    assert "data_batch_2: b'labels' has shape (20, 1), expected (20,), one label per image" in _error(folder)
    # an empty batch at protocol 2, the real files': b'' pickles as __builtin__.bytes(), which was refused as a
    # global that "could run code"
    _rewrite(folder, "data_batch_2", {b"data": np.zeros((0, 3072), np.uint8), b"labels": []})
    assert "data_batch_2 holds no image; re-download it" in _error(folder)
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(UsageError, match=r"data_dir .*a_file is a file, not a folder; pass the folder"):
        load_dataset("cifar10", tmp_path / "a_file")
    with open(folder / "data_batch_2", "wb") as fh:
        pickle.dump([1, 2, 3], fh)
    assert "data_batch_2 holds a list, not a CIFAR-10 batch" in _error(folder)


def test_a_missing_batch_and_a_wrong_meta_are_named(tmp_path):
    folder = write_python(tmp_path, _batches())
    (folder / "data_batch_4").unlink()
    message = _error(folder)
    assert "data_batch_4 is missing" in message and "all five training batches" in message
    (folder / "data_batch_4").mkdir()  # an archive extracted into a folder of the batch's name: not "missing"
    assert "data_batch_4 is a folder, not a batch file: CIFAR-10 needs" in _error(folder)
    (folder / "data_batch_4").rmdir()
    (tmp_path / "empty").mkdir()
    assert "data_dir " + str(tmp_path / "empty") + " holds no CIFAR-10 batches" in _error(tmp_path / "empty")
    write_python(folder, _batches())
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({b"fine_label_names": NAMES * 10}, fh)
    assert "batches.meta has no b'label_names'" in _error(folder)
    with pytest.raises(UsageError, match="does not exist"):
        load_dataset("cifar10", tmp_path / "nowhere")


def test_binary_defects_are_named(tmp_path):
    folder = write_binary(tmp_path, _batches())
    path = folder / "data_batch_5.bin"
    path.write_bytes(path.read_bytes()[:-100])
    assert "data_batch_5.bin holds 61360 bytes, not a whole number of 3073-byte records" in _error(folder)
    write_binary(folder, _batches())
    raw = bytearray(path.read_bytes())
    raw[3073] = 10  # the second record's label byte
    path.write_bytes(bytes(raw))
    assert "data_batch_5.bin: label 10 (image 1" in _error(folder)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    folder = write_python(tmp_path / "data", _batches())
    marker = tmp_path / "pwned"
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({b"data": _Evil(marker), b"labels": [0]}, fh, protocol=2)
    message = _error(folder)
    assert "test_batch refused: it names posix.system" in message or "it names nt.system" in message
    assert "could run code" in message
    assert not marker.exists()
    with open(folder / "test_batch", "wb") as fh:  # builtins are refused too, eval included
        pickle.dump({b"data": eval}, fh, protocol=2)
    assert "it names __builtin__.eval" in _error(folder)  # protocol 2 says __builtin__, as Python 2 did


def _archive(tmp_path: Path, batches, extra: dict | None = None) -> Path:
    source = write_python(tmp_path / "src" / "cifar-10-batches-py", batches)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname="cifar-10-batches-py")
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive


def test_download_from_a_file_url_checks_the_md5_and_extracts_only_the_batches(tmp_path, monkeypatch):
    batches = _batches()
    archive = _archive(tmp_path, batches, extra={"../escaped": b"x", "cifar-10-batches-py/../../up": b"y"})
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    folder = download_cifar10(tmp_path / "cache", url=archive.as_uri(), md5=md5)
    assert folder == tmp_path / "cache" / "cifar-10-batches-py"
    assert sorted(p.name for p in folder.iterdir()) == sorted(BATCHES + ["batches.meta"])
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "up").exists()
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["cifar-10-batches-py"]  # no archive, no .part
    _check_pixels(load_dataset("cifar10", folder), batches)

    # without --data-dir and an empty cache, load_dataset downloads (here from the file:// URL)
    monkeypatch.setenv("HPSEARCH_DATA", str(tmp_path / "home"))
    monkeypatch.setattr(cifar, "CIFAR10_URL", archive.as_uri())
    monkeypatch.setattr(cifar, "CIFAR10_MD5", md5)
    _check_pixels(load_dataset("cifar10"), batches)
    assert (tmp_path / "home" / "cifar10" / "cifar-10-batches-py" / "test_batch").is_file()


def test_a_bad_checksum_or_no_network_keeps_nothing(tmp_path):
    archive = _archive(tmp_path, _batches())
    with pytest.raises(CifarError, match=f"checksum mismatch for {archive.as_uri()}: md5 [0-9a-f]{{32}}, "
                                         "expected 0{32}; the download is corrupt"):
        download_cifar10(tmp_path / "cache", url=archive.as_uri(), md5="0" * 32)
    assert not (tmp_path / "cache").exists()  # no empty cache folder left for the next look-up
    with pytest.raises(CifarError, match=r"could not download CIFAR-10 .*pass data_dir"):
        download_cifar10(tmp_path / "cache", url=(tmp_path / "absent.tar.gz").as_uri())
    assert not (tmp_path / "cache").exists()  # no empty cache folder left for the next look-up
    wrong = tmp_path / "wrong.tar.gz"
    with tarfile.open(wrong, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py" / "test_batch", arcname="cifar-10-batches-py/test_batch")
    md5 = hashlib.md5(wrong.read_bytes()).hexdigest()
    with pytest.raises(CifarError, match="lacks cifar-10-batches-py/batches.meta; it is not the CIFAR-10 python"):
        download_cifar10(tmp_path / "cache", url=wrong.as_uri(), md5=md5)
    assert not (tmp_path / "cache").exists()
    (tmp_path / "home" / "hpsearch").mkdir(parents=True)  # a folder that was there stays, empty
    with pytest.raises(CifarError, match="could not download CIFAR-10"):  # the folders it made: taken back
        download_cifar10(tmp_path / "home" / "hpsearch" / "cifar10" / "x", url=(tmp_path / "absent.tar.gz").as_uri())
    assert list((tmp_path / "home").iterdir()) == [tmp_path / "home" / "hpsearch"]
    assert list((tmp_path / "home" / "hpsearch").iterdir()) == []


def test_the_cnn_cifar_space_searches_written_cifar_batches(tmp_path):
    """The issue's command on real-format files: run_search.py --dataset cifar10 --data-dir ... --space cnn_cifar."""
    from hpsearch.cli import main
    from hpsearch.rundir.store import load_results

    folder = write_python(tmp_path / "data", _batches(n=12))
    out = tmp_path / "run"
    code = main(["search", "--dataset", "cifar10", "--data-dir", str(folder), "--space", "cnn_cifar", "--n", "2",
                 "--cv", "2", "--max-epochs", "1", "--patience", "0", "--n-jobs", "1", "--no-progress",
                 "--no-retrain", "--out", str(out)])
    frame = load_results(out)
    assert code == 0 and len(frame) == 2 and frame["mean_test_score"].notna().all()
    assert set(frame["param_augment"]) <= {"none", "flip", "flip-crop"} and "param_schedule" in frame


def test_pathological_pickles_are_named_not_expanded(tmp_path):
    """Labels nested or shared a million times over (a "billion laughs": tiny on disk, 10**8 values once
    expanded) are refused before they are loaded; labels or names nested a little, and mixed-type keys, are
    refused in one line, looked at one level deep only."""
    folder = write_python(tmp_path, _batches())
    laughs = [0] * 100
    for _ in range(3):
        laughs = [laughs] * 100
    _rewrite(folder, "data_batch_4", {b"labels": laughs[:20]})
    assert "data_batch_4 refused: its references build more than 10,000,000 objects" in _error(folder)
    _rewrite(folder, "data_batch_4", {b"labels": [[0] * 3] * 20})
    assert "data_batch_4: b'labels' holds a list, expected whole numbers 0..9" in _error(folder)
    with open(folder / "data_batch_4", "wb") as fh:
        pickle.dump({b"images": np.zeros((2, 3072), np.uint8), "labels": [0, 1], 7: "seven"}, fh, protocol=2)
    assert "data_batch_4 holds a dict with keys" in _error(folder)
    write_python(folder, _batches())
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [[b"cat"] * 3] * 10}, fh, protocol=2)
    assert "batches.meta: b'label_names' is not a list of names" in _error(folder)


def _nested_pairs(depth: int) -> bytes:
    """A protocol-2 pickle of ``{key: 1}`` whose key is a tuple nested ``depth`` deep, each level holding
    the one below twice by memo reference: 200 bytes, 2**depth items to hash."""
    out = b"\x80\x02}U\x01x\x85q\x000"
    for i in range(depth):
        out += b"h" + bytes([i]) + b"h" + bytes([i]) + b"\x86q" + bytes([i + 1]) + b"0"
    return out + b"h" + bytes([depth]) + b"K\x01s."


def test_a_pickle_whose_references_expand_beyond_any_batch_is_refused_unloaded(tmp_path):
    """A 496-byte meta file (or batch) whose dict key is a tuple nested 60 deep by memo references: the
    unpickler hashed its 2**60 items in C, at full CPU for good and deaf to Ctrl-C. Such a file is refused
    before it is loaded; real batches pass (the other tests)."""
    assert pickle.loads(_nested_pairs(8)) == {((((((((("x",),) * 2,) * 2,) * 2,) * 2,) * 2,) * 2,) * 2,) * 2: 1}
    folder = write_python(tmp_path, _batches())
    for name in ("batches.meta", "data_batch_2"):
        (folder / name).write_bytes(_nested_pairs(60))
        assert _error(folder) == (f"{folder / name} refused: its references build more than 10,000,000 objects, "
                                  "which a CIFAR-10 batch never does (loading it would not end); delete it and "
                                  "re-download")
        write_python(folder, _batches())
    # a tuple nested a million deep as a dict key: hashing it overflowed the C stack (a segfault)
    (folder / "batches.meta").write_bytes(b"\x80\x02}()" + b"\x85" * 1_000_000 + b"K\x01u.")
    assert "batches.meta refused: it nests more than 1,000 levels deep" in _error(folder)


def test_a_pickle_the_check_cannot_follow_or_that_repeats_a_large_value_is_refused_unloaded(tmp_path):
    """Three ways past the first check, each a hang of the loader: a hex INT the check could not read
    (the C unpickler takes it; the check let what it could not follow through), an OBJ opcode it followed
    one item too far, and one large value made many times over (each below the limit)."""
    folder = write_python(tmp_path, _batches())
    bomb = _nested_pairs(60)[2:]  # after PROTO 2
    cases = {b"\x80\x02I0x10\n0" + bomb: "damaged or cut short (its pickle cannot be followed (ValueError",
             b"\x80\x02(cnumpy\ndtype\nX\x02\x00\x00\x00f8o0" + bomb: "refused: its references build more than",
             b"\x80\x02U\x01x\x85q\x000" + b"".join(b"h" + bytes([i]) + b"h" + bytes([i]) + b"\x86q" + bytes([i + 1])
                                                     + b"0" for i in range(22))
             + b"}h\x16Ns0" * 30 + b"N.": "refused: its references build more than"}
    for raw, said in cases.items():
        (folder / "batches.meta").write_bytes(raw)
        assert said in _error(folder)
