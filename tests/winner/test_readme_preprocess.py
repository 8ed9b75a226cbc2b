"""The README's "Use the winner elsewhere" snippet turns an image file into the net's input exactly as
``preprocess`` does, for every kind of card (grey or colour, inverted or not, centred or not,
stretched, quantized) and of file (at the net's size or not, EXIF-rotated, transparent, blank)."""

import json

import numpy as np
from PIL import Image

from hpsearch.data.preprocess import preprocess, preprocessing_for, with_defaults
from hpsearch.winner.export import HOW

CARDS = {  # the card's "preprocess" (through JSON, as the snippet reads it) of these data sets
    "digits": [1, 8, 8], "mnist": [1, 28, 28], "fashion-mnist": [1, 28, 28], "cifar10": [3, 32, 32],
    "folder": [3, 16, 16],
}


def _files(folder, digits):
    ink = (digits.X_test[0][0] * 255).round().astype(np.uint8)
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (36, 50, 3), dtype=np.uint8)
    files = {
        "digit on white, 30x40": Image.fromarray(255 - ink).resize((30, 40)),
        "digit as trained, 8x8": Image.fromarray(ink),
        "photo, 50x36": Image.fromarray(photo),
        "photo at size, 32x32": Image.fromarray(photo[:32, :32]),
        "blank white, 20x20": Image.new("L", (20, 20), 255),
        # a light border, dark on the whole: inverted (the border's mean decides, not the image's)
        "light frame, 18x18": Image.fromarray(np.pad(np.kron(ink // 2, np.ones((2, 2), np.uint8)), 1,
                                                     constant_values=255)),
        "transparent, 24x20": Image.fromarray(np.dstack([photo[:20, :24], photo[:20, 5:29, 0]]), "RGBA"),
        "palette with a transparent colour, 12x18": Image.fromarray(photo[:18, :12]).quantize(8),
        # ink at both ends of a 5000-pixel strip: its box is shrunk to 4096 before it is squared
        "thin strip, 5000x2": Image.fromarray(np.where(np.arange(5000) % 4999 == 0, 0, 255).astype(np.uint8)[None]
                                              .repeat(2, axis=0)),
    }
    files["palette with a transparent colour, 12x18"].info["transparency"] = 3
    paths = []
    for name, image in files.items():
        paths.append(folder / f"{name}.png")
        image.save(paths[-1], transparency=image.info.get("transparency"))
    rotated = Image.fromarray(255 - ink).resize((20, 12))  # a JPEG saying "rotate 90" in its EXIF
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated.save(folder / "rotated.jpg", exif=exif)
    return [*paths, folder / "rotated.jpg"]


def test_the_readme_snippet_gives_what_preprocess_gives(readme_snippets, digits, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the snippet writes digit.png
    code = next(code for heading, code, _ in readme_snippets if heading == "Use the winner elsewhere")
    steps, found, _ = code.partition("\nfolder = ")  # its functions: the rest needs an exported run
    assert found, "the snippet's run comes after its functions"
    namespace = {}
    exec(compile(steps, "README.md, Use the winner elsewhere", "exec"), namespace)
    files = _files(tmp_path, digits)
    compared = 0
    for name, shape in CARDS.items():
        for card in (preprocessing_for(name, shape), {**preprocessing_for(name, shape), "invert": True}):
            card = json.loads(json.dumps({**with_defaults(card), "how": HOW}))  # as the card holds it
            for path in files:
                expected = preprocess(path.read_bytes(), card)
                got = namespace["to_input"](path, card)
                assert got.dtype == np.float32 and got.shape == (1, *expected.shape), (name, path.name)
                assert np.abs(got[0] - expected).max() <= 1e-6, (name, card["invert"], path.name)
                compared += 1
    assert compared == 2 * len(CARDS) * len(files)

