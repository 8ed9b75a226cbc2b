"""--dataset folder: your images in train/<class>/ (and test/<class>/) folders, read as predict reads a
picture, cached, and checked file by file before anything trains."""

import os
import shutil

import numpy as np
import pytest
from fixtures.folders import WORDS, write_tree
from PIL import Image

from hpsearch.cli import main
from hpsearch.data import folder as folder_module
from hpsearch.data import load_dataset
from hpsearch.data.folder import CACHE_FILE, FolderError
from hpsearch.data.preprocess import preprocess, preprocessing_for
from hpsearch.errors import UsageError


@pytest.fixture(scope="module")
def tree(tmp_path_factory, digits):
    """300 digits as a tree: word-named class folders, PNG and JPEG, 8x8 and (a quarter) 16x16, half inverted."""
    root = tmp_path_factory.mktemp("tree")
    write_tree(root, digits.X_train[:300], digits.y_train[:300])
    return root


@pytest.fixture
def copy(tree, tmp_path):
    shutil.copytree(tree, tmp_path / "tree")
    return tmp_path / "tree"


def _one_line(exc_info, *parts):
    message = str(exc_info.value)
    assert "\n" not in message, message
    for part in parts:
        assert str(part) in message, (part, message)
    return message


def test_a_tree_reads_as_its_classes_with_a_held_out_split(tree, capsys):
    data = load_dataset("folder", tree)
    assert data.class_names == tuple(sorted(WORDS))  # the folder names, sorted
    assert data.image_shape == (1, 8, 8)  # the most common size wins, said on screen
    assert len(data.y_train) + len(data.y_test) == 300 and len(data.y_test) == 60  # 20% held out
    said = capsys.readouterr().err
    assert "8x8 (the most common size" in said and "images resized" in said and "grey" in said
    # stratified: every class in the test set in proportion
    held, total = (np.bincount(y, minlength=10) for y in (data.y_test, np.concatenate([data.y_train, data.y_test])))
    assert np.abs(held - 0.2 * total).max() <= 1, (held, total)
    # seeded: the same seed gives the same split, another seed another one
    again, other = load_dataset("folder", tree), load_dataset("folder", tree, seed=1)
    assert again.source["test_files"] == data.source["test_files"]
    assert other.source["test_files"] != data.source["test_files"]
    assert data.source["test"] == "0.2 of train/ held out (stratified, seed 0)"


def test_predict_reads_each_file_exactly_as_the_loader_did(tree):
    """A file of the folder given to predict's preprocessing (the winner's, for this dataset) is the
    very array the net trained on: PNG and JPEG, resized or not, white background or black."""
    data = load_dataset("folder", tree)
    settings = preprocessing_for("folder", data.image_shape)
    for name, x in zip(data.source["test_files"], data.X_test, strict=True):
        assert np.array_equal(preprocess((tree / name).read_bytes(), settings), x), name


def test_options_size_colour_and_share(tree):
    data = load_dataset("folder", tree, image_size="12x10", color="rgb", test_size=0.5)
    assert data.image_shape == (3, 10, 12) and len(data.y_test) == 150
    assert np.array_equal(data.X_train[:, 0], data.X_train[:, 2])  # grey pictures in three equal channels
    assert load_dataset("folder", tree, image_size=16).image_shape == (1, 16, 16)
    assert load_dataset("folder", tree, image_size=(12, 10)).image_shape[1:] == (10, 12)  # (width, height), documented
    with pytest.raises(UsageError, match=r"^dataset folder takes no option 'imagesize' \(it takes test_size, "
                                         r"image_size, color, seed, progress\); did you mean 'image_size'\?$"):
        load_dataset("folder", tree, imagesize=16)  # it said "applies only to dataset ;"
    gray = load_dataset("folder", tree, color="Gray")  # the American spelling, any case
    assert gray.image_shape == (1, 8, 8) and gray.source["color"] == "grey"
    with pytest.raises(UsageError, match="color must be one of grey, rgb, got 'grau'"):
        load_dataset("folder", tree, color="grau")


def test_a_held_out_share_that_leaves_too_few_says_which_way_to_move_it(tree):
    """300 images of 10 classes: 0.99 leaves 3 to train on (lower it), 0.02 holds out 6 (raise it)."""
    with pytest.raises(FolderError) as exc:
        load_dataset("folder", tree, test_size=0.99)
    _one_line(exc, "test_size 0.99 of 300 images leaves 3 to train on, fewer than the 10 classes; lower")
    with pytest.raises(FolderError) as exc:
        load_dataset("folder", tree, test_size=0.02)
    _one_line(exc, "test_size 0.02 of 300 images holds out 6, too few for one of each of 10 classes; raise")


def test_a_test_folder_is_the_test_set_and_its_classes_must_be_known(copy, digits):
    write_tree(copy, digits.X_test[:40], digits.y_test[:40], split="test", mixed=False)
    data = load_dataset("folder", copy)
    assert len(data.y_train) == 300 and len(data.y_test) == 40 and data.source["test"] == "test/"
    for name, label in zip(data.source["test_files"], data.y_test, strict=True):
        assert name.startswith("test/") and name.split("/")[1] == data.class_names[label]  # labelled by folder
    with pytest.raises(FolderError) as exc:
        load_dataset("folder", copy, test_size=0.3)
    _one_line(exc, "test_size", "already gives the test images")
    (copy / "test" / "eleven").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(copy / "test" / "eleven" / "a.png")
    with pytest.raises(FolderError) as exc:
        load_dataset("folder", copy)
    _one_line(exc, copy / "test" / "eleven", "lacks", "rename it")


def test_a_test_folder_without_a_class_says_so(copy, digits, capsys):
    keep = digits.y_test[:60] != 0
    write_tree(copy, digits.X_test[:60][keep], digits.y_test[:60][keep], split="test", mixed=False)
    data = load_dataset("folder", copy)
    missing = WORDS[0]  # digit 0's folder
    assert data.class_names.index(missing) not in set(data.y_test) and len(data.class_names) == 10
    said = capsys.readouterr().err
    assert f"no test images of {missing} (their test scores have support 0" in said, said


def test_colour_is_decided_by_the_pixels(copy, capsys):
    first = sorted((copy / "train" / "zero").glob("*.png"))[0]
    grey = np.asarray(Image.open(first).convert("L"))
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(first)  # RGB mode, grey picture
    data = load_dataset("folder", copy)
    assert data.image_shape[0] == 1 and data.source["color"] == "grey"
    assert "grey (1 RGB images hold grey pictures)" in capsys.readouterr().err
    tinted = np.stack([grey, grey // 2, grey // 3], axis=-1)
    Image.fromarray(tinted).save(first)
    assert load_dataset("folder", copy).image_shape[0] == 3  # one colour image: RGB
    assert load_dataset("folder", copy, color="grey").image_shape[0] == 1  # unless asked


def test_the_second_load_reads_the_cache_and_a_changed_file_is_read_again(copy, monkeypatch):
    first = load_dataset("folder", copy)
    assert (copy / CACHE_FILE).is_file()

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    with monkeypatch.context() as patch:
        patch.setattr(folder_module, "_decode_all", no_decoding)
        cached = load_dataset("folder", copy)
    assert np.array_equal(cached.X_train, first.X_train) and cached.class_names == first.class_names
    name = sorted((copy / "train" / "two").glob("*.png"))[0]
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(name)  # new contents, new size and mtime
    os.utime(name, ns=(1, 1))
    with monkeypatch.context() as patch:
        patch.setattr(folder_module, "_decode_all", no_decoding)
        with pytest.raises(AssertionError, match="decoded again"):
            load_dataset("folder", copy)


def test_a_cache_not_written_by_this_user_is_never_read(copy, tmp_path, monkeypatch):
    """A shared folder's cache whose key matches its files (tar and rsync keep mtimes) but whose pixels were
    swapped was read as the images, unseen; a cache is now read only under its seal from this user's key."""
    monkeypatch.setenv("HPSEARCH_DATA", str(tmp_path / "my-cache"))  # where a cache goes past a foreign one
    first = load_dataset("folder", copy)
    with np.load(copy / CACHE_FILE, allow_pickle=False) as z:
        arrays = {name: z[name] for name in z.files}
    arrays["images_train"] = np.full_like(arrays["images_train"], 255)  # the same key, other pixels
    np.savez_compressed(copy / CACHE_FILE, **arrays)
    assert np.array_equal(load_dataset("folder", copy).X_train, first.X_train)  # read from the images again
    (copy / CACHE_FILE).unlink()
    load_dataset("folder", copy)  # the folder's cache, this user's
    calls = []
    real = folder_module._decode_all
    monkeypatch.setattr(folder_module, "_decode_all", lambda *a, **k: calls.append(1) or real(*a, **k))
    with monkeypatch.context() as other:  # another user of the shared folder: their own key and cache folder
        other.setenv("HPSEARCH_STATE_DIR", str(tmp_path / "another-user"))
        other.setenv("HPSEARCH_DATA", str(tmp_path / "another-user-cache"))
        assert np.array_equal(load_dataset("folder", copy).X_train, first.X_train) and calls == [1]
        assert np.array_equal(load_dataset("folder", copy).X_train, first.X_train) and calls == [1]  # their cache
    # the folder's cache is still this user's: not overwritten by theirs, read without decoding
    assert np.array_equal(load_dataset("folder", copy).X_train, first.X_train) and calls == [1]


def test_sixteen_bit_and_cmyk_are_converted_and_said(copy, digits, capsys):
    write_tree(copy, digits.X_test[:20], digits.y_test[:20], split="test", mixed=False)  # train/ whole, in order
    files = sorted((copy / "train" / "one").iterdir())
    png = next(f for f in files if f.suffix == ".png" and Image.open(f).size == (8, 8))
    grey = np.asarray(Image.open(png).convert("L"))
    Image.fromarray(grey.astype(np.uint16) * 257).save(png)  # 16-bit grey: scaled by its range, not clipped
    assert Image.open(png).mode.startswith("I")
    Image.fromarray(np.stack([grey] * 3, -1)).convert("CMYK").save(copy / "train" / "one" / "~cmyk.jpg")
    data = load_dataset("folder", copy)
    assert "1 CMYK image converted to RGB by Pillow" in capsys.readouterr().err
    before = sum(len(list((copy / "train" / c).iterdir())) for c in data.class_names[:data.class_names.index("one")])
    row = before + files.index(png)  # rows: classes in order, files sorted
    assert np.array_equal(data.X_train[row, 0], grey / np.float32(255))


@pytest.mark.parametrize("damage, message", [
    ("empty class", "holds no images; put the class's images there or remove the folder"),
    ("stray file", "a file where train/ holds only class folders"),
    ("not an image", "not a readable image (no PNG, JPEG, BMP, GIF, WebP or TIFF)"),
    ("truncated", "remove or replace it"),
    ("bomb", "a decompression bomb"),
    ("long side", "a 16385x2 image, at most 16,384 pixels on a side are read"),
    ("fifo", "not a regular file"),
    ("one image", "holds 1 image; holding out a test split needs at least 2 per class"),
    ("no train", "data_dir {copy}: train/ is missing"),  # named by the parameter the user gave
    ("empty test", "test/ holds no class folders; put the test images in test/<class>/, or remove the empty test/"),
    ("test file", "is a file where test/ holds the test images in class folders"),
])
def test_bad_data_is_one_line_naming_the_file(copy, damage, message):
    zero = copy / "train" / "zero"
    if damage == "empty class":
        (copy / "train" / "ten").mkdir()
    elif damage == "stray file":
        (copy / "train" / "notes.txt").write_text("hello")
    elif damage == "not an image":
        (zero / "notes.png").write_text("not a picture")
    elif damage == "truncated":
        data = (sorted(zero.glob("*.png"))[0]).read_bytes()
        (zero / "cut.png").write_bytes(data[: len(data) // 2])
    elif damage == "long side":
        Image.new("L", (16385, 2)).save(zero / "strip.png")
    elif damage == "bomb":
        Image.new("1", (5000, 5000)).save(zero / "bomb.png")  # 25 megapixels in a tiny file
    elif damage == "fifo":
        os.mkfifo(zero / "pipe.png")
    elif damage == "one image":
        (copy / "train" / "lonely").mkdir()
        shutil.copy(sorted(zero.glob("*.png"))[0], copy / "train" / "lonely" / "a.png")
    elif damage == "no train":
        (copy / "train").rename(copy / "training")
    elif damage == "empty test":
        (copy / "test").mkdir()
    elif damage == "test file":
        (copy / "test").write_text("not a folder")
    with pytest.raises(UsageError) as exc:
        load_dataset("folder", copy)
    _one_line(exc, message.format(copy=copy))


def test_train_itself_given_as_the_folder_is_told_to_give_its_parent(copy):
    with pytest.raises(UsageError) as exc:
        load_dataset("folder", copy / "train")
    _one_line(exc, f"{copy / 'train'} looks like train/ itself: give its parent, data_dir {copy}")


def test_the_command_line_refuses_folder_options_elsewhere_and_bad_values(tmp_path, capsys):
    cases = [(["--dataset", "digits", "--image-size", "16"],
              "--image-size applies only with --dataset folder; --dataset digits would ignore it"),
             # gray is read as grey (else argparse's "invalid choice" would come first)
             (["--dataset", "digits", "--color", "Gray"], "--color applies only with --dataset folder"),
             (["--dataset", "folder", "--data-dir", str(tmp_path), "--image-size", "0"],
              "--image-size must be a side (28) or WIDTHxHEIGHT (32x24) of 1 to 4096 pixels, got '0'"),
             (["--dataset", "folder", "--data-dir", str(tmp_path), "--test-size", "1.5"],
              "--test-size must be a share between 0 and 1"),
             (["--dataset", "folder"], "--dataset folder reads your images: pass --data-dir DIR"),
             (["--dataset", "folder", "--data-dir", str(tmp_path / "nowhere")], "no such folder"),
             # a name the loader reads (any case, an alias) takes --data-dir as its own name does
             (["--dataset", "Folder", "--data-dir", str(tmp_path / "nowhere")], "no such folder"),
             (["--dataset", "CIFAR-10", "--data-dir", str(tmp_path / "nowhere")], "does not exist"),
             (["--dataset", "folder", "--data-dir", str(tmp_path / "three.png")],
              f"--data-dir {tmp_path / 'three.png'}: a file, not a folder; pass the folder holding")]
    (tmp_path / "three.png").write_bytes(b"")
    for flags, message in cases:
        assert main(["search", "--out", str(tmp_path / "run"), "--no-progress", *flags]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "run").exists()


def test_every_format_pillow_reads_gives_the_same_pixels(copy):
    """BMP, GIF, WebP (lossless) and TIFF copies of a PNG read as the PNG does."""
    png = next(p for p in sorted((copy / "train" / "four").glob("*.png")) if Image.open(p).size == (8, 8))
    picture = Image.open(png)
    for ext, kwargs in ((".bmp", {}), (".gif", {}), (".webp", {"lossless": True}), (".tif", {})):
        picture.save(png.with_name(f"{png.stem}{ext}"), **kwargs)
    data = load_dataset("folder", copy, test_size=0.5, seed=2)
    files = sorted((copy / "train" / "four").iterdir())
    settings = preprocessing_for("folder", data.image_shape)
    pixels = [preprocess(f.read_bytes(), settings) for f in files if f.stem == png.stem]
    assert len(pixels) == 5 and all(np.array_equal(p, pixels[0]) for p in pixels)


def test_a_class_with_fewer_images_than_folds_is_named(copy, tmp_path, capsys):
    (copy / "train" / "rare").mkdir()
    for i, f in enumerate(sorted((copy / "train" / "zero").glob("*.png"))[:3]):
        shutil.copy(f, copy / "train" / "rare" / f"{i}.png")
    assert main(["search", "--dataset", "folder", "--data-dir", str(copy), "--cv", "4", "--n", "1",
                 "--no-progress", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert "--cv 4 is more folds than the rarest class (rare) has images (3)" in err


def test_a_class_name_that_is_not_utf8_and_a_share_of_the_wrong_type(copy):
    odd = os.fsencode(copy / "train") + b"/caf\xe9"  # Latin-1 bytes, as an old archive may hold
    os.mkdir(odd)
    for i, f in enumerate(sorted((copy / "train" / "zero").glob("*.png"))[:4]):
        shutil.copy(f, os.fsdecode(odd) + f"/{i}.png")
    # it loaded, and every picture and the report then failed on the name (a traceback): refused at load now
    with pytest.raises(UsageError) as exc:
        load_dataset("folder", copy)
    message = str(exc.value)
    assert "\n" not in message and message.startswith(f"{copy / 'train'}/caf\\xe9/: a class folder whose name is "
                                                       "not UTF-8 text") and "rename it" in message
    message.encode("utf-8")  # printable as it is
    shutil.rmtree(odd)
    with pytest.raises(UsageError, match="test_size must be a share between 0 and 1"):
        load_dataset("folder", copy, test_size="0.5")


def _png_header(path, width, height):
    """A PNG of ``width`` x ``height`` as its header claims, with no pixels: what a decompression bomb shows."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
                     + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [10_000, 100_000])  # past Pillow's warning (89 MP), past its own error (179 MP)
def test_a_decompression_bomb_is_said_in_our_words_only(copy, side, recwarn):
    """Pillow warned on stderr beside our line (100 MP), or its own text replaced ours (10 GP)."""
    _png_header(copy / "train" / "zero" / "bomb.png", side, side)
    with pytest.raises(UsageError) as exc:
        load_dataset("folder", copy)
    said = (f"bomb.png: a {side}x{side} image, at most 16,777,216 pixels are read (a decompression bomb"
            if side == 10_000 else "bomb.png: an image whose header declares over 178,956,970 pixels, far more "
            "than are read (a decompression bomb, or a photo far larger than a small classifier reads); shrink or "
            "remove it")
    assert "DOS attack" not in _one_line(exc, said)
    assert not [w for w in recwarn if "DecompressionBomb" in type(w.message).__name__], list(recwarn)


def test_photos_turned_by_their_exif_tag_have_their_upright_size(tmp_path, digits, capsys):
    """A phone photo is stored on its side with an orientation tag: the default size is the size it shows
    (it was the stored one, so every picture was squeezed to the other shape, and none was said resized)."""
    for i in range(12):
        pixels = np.rint(digits.X_train[i, 0] * 255).astype(np.uint8)
        upright = Image.fromarray(np.kron(pixels, np.ones((3, 2), np.uint8)))  # 16 wide, 24 tall
        exif = Image.Exif()
        exif[0x0112] = 6  # shown turned a quarter clockwise: stored turned back
        path = tmp_path / "photos" / "train" / ("even" if i % 2 == 0 else "odd") / f"{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        upright.transpose(Image.Transpose.ROTATE_90).save(path, quality=95, exif=exif)
        assert Image.open(path).size == (24, 16)
    data = load_dataset("folder", tmp_path / "photos", test_size=0.25)
    assert data.image_shape == (1, 24, 16)  # (channels, height, width): upright
    said = capsys.readouterr().err
    assert "16x24 (the most common size: 12 of 12 training images" in said and "resized" not in said, said


def test_a_png_whose_orientation_comes_after_its_pixels_is_upright_too(tmp_path, digits):
    """A PNG may hold its eXIf chunk after the pixel data: Pillow finds it only on decoding, so the header
    read missed it, and the pictures were squeezed to the stored shape again."""
    import struct
    import zlib

    exif = Image.Exif()
    exif[0x0112] = 6
    raw = exif.tobytes()
    chunk = struct.pack(">I", len(raw)) + b"eXIf" + raw + struct.pack(">I", zlib.crc32(b"eXIf" + raw))
    for i in range(8):
        pixels = np.rint(digits.X_train[i, 0] * 255).astype(np.uint8)
        path = tmp_path / "late" / "train" / ("even" if i % 2 == 0 else "odd") / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.kron(pixels, np.ones((1, 2), np.uint8))).save(path)  # stored 16 wide, 8 tall
        data = path.read_bytes()
        path.write_bytes(data[:-12] + chunk + data[-12:])  # before IEND: after the pixels
        assert "exif" not in Image.open(path).info  # not seen on opening
    data = load_dataset("folder", tmp_path / "late", test_size=0.25)
    assert data.image_shape == (1, 16, 8)  # upright: 8 wide, 16 tall


def test_a_file_rewritten_with_its_size_and_mtime_put_back_is_read_again(copy):
    """cp -p or rsync -t of a same-size image keeps size and mtime: the cache hid the new pixels (and so did
    the run's check of the images as read)."""
    bmp = copy / "train" / "zero" / "zz.bmp"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(bmp)
    first = load_dataset("folder", copy, test_size=0.5)
    stat = bmp.stat()
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(bmp)
    os.utime(bmp, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert bmp.stat().st_size == stat.st_size and bmp.stat().st_mtime_ns == stat.st_mtime_ns
    again = load_dataset("folder", copy, test_size=0.5)
    assert not np.array_equal(np.concatenate([again.X_train, again.X_test]),
                              np.concatenate([first.X_train, first.X_test]))
    assert np.concatenate([again.X_train, again.X_test]).max(axis=(1, 2, 3)).tolist().count(1.0) > 0


def test_a_small_class_left_without_held_out_test_images_is_said(copy, capsys):
    (copy / "train" / "rare").mkdir()
    for i, f in enumerate(sorted((copy / "train" / "zero").glob("*.png"))[:2]):
        shutil.copy(f, copy / "train" / "rare" / f"{i}.png")
    data = load_dataset("folder", copy)
    rare = data.class_names.index("rare")
    assert not np.any(data.y_test == rare)
    said = capsys.readouterr().err
    assert "no test images of rare held out (too few images: their test scores have support 0; add images to " \
           "train/, raise test_size, or give test/)" in said, said  # named as the API's parameter here


def test_large_photos_are_said_and_refused_before_decoding_where_memory_is_short(tmp_path, monkeypatch, capsys):
    for i in range(6):
        path = tmp_path / "big" / "train" / ("a" if i % 2 else "b") / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (300, 300), color=40 * i).save(path)
    data = load_dataset("folder", tmp_path / "big", test_size=0.34)
    assert data.image_shape == (1, 300, 300)
    said = capsys.readouterr().err
    assert "large for a small classifier: image_size 64 (or so) trains many times faster" in said, said

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded")

    (tmp_path / "big" / CACHE_FILE).unlink()
    monkeypatch.setattr("hpsearch.jobs.resources.physical_memory", lambda: 4 * 2**20)  # a machine of 4 MiB
    monkeypatch.setattr(folder_module, "_decode_all", no_decoding)
    with pytest.raises(UsageError) as exc:
        load_dataset("folder", tmp_path / "big", test_size=0.34)
    _one_line(exc, "6 images at 300x300 need about 0.0 GiB to load, more than this machine's 0.0 GiB; pass "
                   "image_size (e.g. 64) to read them smaller")
