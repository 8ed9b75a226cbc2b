import gzip
import hashlib
import http.server
import os
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from hpsearch.data import load_dataset
from hpsearch.data.idx import IdxError, read_idx, write_idx
from hpsearch.data.mnist import IDX_FILES, download_idx
from hpsearch.errors import UsageError

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.parametrize("name", ["images.idx", "images.idx.gz"])
def test_idx_round_trip_raw_and_gzip(tmp_path, name):
    images = np.random.default_rng(0).integers(0, 256, size=(7, 5, 4), dtype=np.uint8)
    path = write_idx(tmp_path / name, images)
    with open(path, "rb") as fh:
        assert (fh.read(2) == b"\x1f\x8b") == name.endswith(".gz")
    back = read_idx(path)
    assert back.dtype == np.uint8 and back.shape == (7, 5, 4)
    np.testing.assert_array_equal(back, images)


def test_idx_corrupt_magic(tmp_path):
    path = tmp_path / "bad-idx"
    path.write_bytes(b"\x12\x34\x08\x01" + b"\x00" * 20)
    with pytest.raises(IdxError, match="is not an idx file: it starts with 12340801"):
        read_idx(path)


def test_idx_damaged_axis_count_is_one_short_line(tmp_path):
    """A damaged ndim byte once gave a 900-character 'truncated or padded' message listing 255 axes."""
    path = write_idx(tmp_path / "images", np.zeros((5, 4, 4), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:3] + b"\xff" + path.read_bytes()[4:])
    with pytest.raises(IdxError, match=r"idx magic 000008ff says 255 axes \(1 to 16 expected\)") as info:
        read_idx(path)
    assert len(str(info.value)) < 100 + len(str(path))
    with pytest.raises(IdxError, match="says 255 axes, images have 3"):
        read_idx(path, ndim=3)


def test_idx_truncated(tmp_path):
    path = write_idx(tmp_path / "labels", np.arange(10, dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(IdxError, match=r"is truncated: header says shape \(10,\) \(10 bytes of data\), file holds 7"):
        read_idx(path)


def test_idx_truncated_gzip(tmp_path):
    path = write_idx(tmp_path / "labels.gz", np.arange(1000, dtype=np.int64).astype(np.uint8))
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(IdxError, match="damaged or cut short"):
        read_idx(path)


def _write_mnist_like(folder: Path, n_train=40, n_test=10, gz=True):
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": (np.arange(n_test) % 10).astype(np.uint8),
    }
    for key, stem in IDX_FILES.items():
        write_idx(folder / (stem + (".gz" if gz else "")), arrays[key])
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_load_mnist_from_data_dir(tmp_path, gz):
    arrays = _write_mnist_like(tmp_path / "mnist", gz=gz)
    ds = load_dataset("mnist", data_dir=tmp_path / "mnist")
    assert ds.X_train.shape == (40, 1, 28, 28) and ds.X_train.dtype == np.float32
    assert ds.image_shape == (1, 28, 28) and ds.n_classes == 10
    np.testing.assert_allclose(ds.X_test[:, 0] * 255, arrays["test_images"], atol=1e-4)
    np.testing.assert_array_equal(ds.y_train, arrays["train_labels"])
    assert 0.0 <= ds.X_train.min() and ds.X_train.max() <= 1.0


def test_data_dir_without_idx_files(tmp_path):
    with pytest.raises(IdxError, match=r"lacks the mnist idx files \['train-images-idx3-ubyte'"):
        load_dataset("mnist", data_dir=tmp_path)


def test_mismatched_counts(tmp_path):
    _write_mnist_like(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(39, dtype=np.uint8))
    with pytest.raises(IdxError, match="holds 40 images but train-labels-idx1-ubyte.gz holds 39 labels"):
        load_dataset("mnist", data_dir=tmp_path)


def test_unknown_dataset():
    with pytest.raises(UsageError, match="dataset must be one of digits, mnist, fashion-mnist, cifar10, triple-mnist, npz, folder, got 'cifar'; "
                                         "did you mean 'cifar10'"):
        load_dataset("cifar")


def test_digits_split_is_fixed_and_stratified():
    a, b = load_dataset("digits"), load_dataset("digits")
    np.testing.assert_array_equal(a.X_test, b.X_test)
    assert a.X_train.shape == (1437, 1, 8, 8) and a.X_test.shape == (360, 1, 8, 8)
    assert np.bincount(a.y_test).min() >= 35
    assert a.X_train.max() == 1.0 and a.X_train.min() == 0.0


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_folder(tmp_path):
    """A loopback HTTP server over a folder: the download path, for real, without the internet."""
    served = tmp_path / "served"
    served.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_download_verifies_checksums(http_folder, tmp_path):
    served, url = http_folder
    _write_mnist_like(served)
    sums = {f"{stem}.gz": hashlib.md5((served / f"{stem}.gz").read_bytes()).hexdigest()
            for stem in IDX_FILES.values()}
    target = download_idx("mnist", tmp_path / "cache", base_url=url, checksums=sums)
    ds = load_dataset("mnist", data_dir=target)
    assert ds.X_train.shape == (40, 1, 28, 28)

    bad = dict(sums, **{"t10k-labels-idx1-ubyte.gz": "0" * 32})
    with pytest.raises(IdxError, match="checksum mismatch"):
        download_idx("mnist", tmp_path / "cache2", base_url=url, checksums=bad)
    assert not (tmp_path / "cache2" / "t10k-labels-idx1-ubyte.gz").exists()
    assert not [p for p in (tmp_path / "cache2").iterdir() if p.suffix == ".part"]


def test_cache_is_used_without_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HPSEARCH_DATA", str(tmp_path))
    _write_mnist_like(tmp_path / "mnist", gz=False)
    assert load_dataset("mnist").X_train.shape == (40, 1, 28, 28)


def test_no_network_message_explains_data_dir(http_folder, tmp_path):
    served, url = http_folder  # an empty folder: every file 404s
    with pytest.raises(IdxError, match="pass data_dir"):
        download_idx("mnist", tmp_path / "c", base_url=url)
    assert not (tmp_path / "c").exists()  # no empty cache folder left behind for the next look-up
    _write_mnist_like(served)  # one verified file, then a failure: the file stays for a retry
    first = f"{IDX_FILES['train_images']}.gz"
    sums = {first: hashlib.md5((served / first).read_bytes()).hexdigest(), "absent.gz": "0" * 32}
    with pytest.raises(IdxError, match="absent.gz"):
        download_idx("mnist", tmp_path / "c", base_url=url, checksums=sums)
    assert [p.name for p in (tmp_path / "c").iterdir()] == [first]


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist():
    ds = load_dataset("fashion-mnist")
    assert ds.X_train.shape == (60000, 1, 28, 28) and ds.X_test.shape == (10000, 1, 28, 28)
    assert ds.class_names[9] == "Ankle boot"
    np.testing.assert_array_equal(np.bincount(ds.y_train), [6000] * 10)
    # the standard first test labels of Fashion-MNIST
    np.testing.assert_array_equal(ds.y_test[:10], [9, 2, 1, 1, 6, 1, 4, 6, 5, 7])
    assert ds.X_train.dtype == np.float32 and ds.X_train.max() == 1.0
    with gzip.open(FASHION_DIR / "t10k-labels-idx1-ubyte.gz") as fh:
        assert fh.read(4) == b"\x00\x00\x08\x01"
    assert os.path.getsize(FASHION_DIR / "train-images-idx3-ubyte.gz") > 1_000_000


def test_a_gzip_idx_padded_by_gigabytes_is_said_without_holding_them(tmp_path):
    """A small .gz (a header of one 28x28 image, then 200 MB of zeros) was decompressed whole before its
    size was checked (a 15 MB file would need about 30 GB); reading stops one byte past the declared data."""
    import struct
    import tracemalloc

    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(b"\x00\x00\x08\x03" + struct.pack(">3I", 1, 28, 28))
        for _ in range(200):
            fh.write(bytes(1 << 20))
    tracemalloc.start()
    try:
        with pytest.raises(IdxError, match=r"is padded: header says shape \(1, 28, 28\) \(784 bytes of data\), "
                                           r"file holds more"):
            read_idx(path, 3)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 << 20, peak  # 200 MB of padding never held
