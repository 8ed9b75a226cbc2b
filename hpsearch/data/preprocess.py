"""One preprocessing for training, ``predict`` and the page: from pixels to what the net reads.

The datasets store images as float32 ``(n, channels, height, width)`` in [0, 1]. The grey ones are
drawn with a *dark background and bright ink* (MNIST, Fashion-MNIST and scikit-learn's digits);
CIFAR-10's are colour photos, 3 channels (R, G, B) of 32x32. ``scale`` is how a loader gets there
from raw pixel values (``/ 255`` for the idx files and CIFAR-10, ``/ 16`` for digits).
``preprocess`` takes any other picture there, by the same conventions, so a photo of a digit on
white paper meets the net the way its training images did, and a photo of a cat the way CIFAR-10's:

1. **decode** (Pillow): EXIF orientation applied, the first frame of an animation, transparency
   composited over white, then grayscale (``"L"``) for 1-channel data or ``"RGB"`` for 3 (colour
   kept; a grey picture given to a colour net becomes three equal channels);
2. **scale** to [0, 1] (``/ 255``);
3. **invert** when the background is light (``invert="auto"``: the mean of the border pixels is
   above 0.5), so ink is bright on dark as in training; ``True``/``False`` force it. Colour data
   are never inverted (``invert=False``): a photo's light sky is not a page;
4. **resize** to the net's ``height x width`` with Pillow's antialiasing filter, one channel at a
   time. An image already of that size is taken as framed like the training images and left as it
   is. Otherwise, with ``center`` (MNIST-like data), the ink's bounding box (pixels above 20% of
   the brightest) is cut out, padded to a square, scaled to ``fit`` of the frame (MNIST: 20 of 28
   pixels) and pasted in the middle; without ``center`` (Fashion-MNIST, CIFAR-10) the whole picture
   is resized (a photo that is not square is squeezed: crop it first to keep its proportions). With
   ``stretch`` (grey data) a resized image is then scaled so its brightest pixel is 1 (resizing
   averages thin strokes away); colour photos keep their brightness;
5. **quantize** to ``levels`` grey levels when the training data had them (digits: 17, 0..16; an
   image folder: 256, the loader's 8 bits).

An image folder (``--dataset folder``) is read by this same decoding and resizing (steps 1 and 4, no
inversion, no centring, no stretch), so a file of the folder given to ``predict`` meets the net as
exactly the array it trained on.

The settings travel with the winner (``winner.pt``, key ``"preprocess"``), see ``preprocessing_for``.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import UsageError, brief

__all__ = ["scale", "preprocessing_for", "preprocess", "with_defaults", "open_image", "ImageRejected", "IMAGE_FORMATS",
           "MAX_PIXELS", "MAX_BOX_SIDE", "MAX_SIDE", "too_large", "steps_in_words"]

IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")
MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")
MAX_PIXELS = 4096 * 4096  # larger pictures are refused before they are decoded (decompression bombs)
# centring pads the ink's box to a square: a longer box is first shrunk to this side (a 200000x1 image
# would otherwise make a square of 149 GiB)
MAX_BOX_SIDE = 4096
# and a picture longer than this on a side is refused too: a 16,000,000x1 strip passes the pixel cap,
# yet one resize of it to 8x8 took seconds (and, on the page, held the net's lock meanwhile)
MAX_SIDE = 16384
INK_THRESHOLD = 0.2
# name -> (the raw maximum the loader divides by, center, fit, levels)
_CONVENTIONS = {
    "digits": (16.0, True, 1.0, 17),
    "mnist": (255.0, True, 20 / 28, None),
    "fashion-mnist": (255.0, False, 1.0, None),
    "cifar10": (255.0, False, 1.0, None),
    "triple-mnist": (255.0, False, 1.0, None),  # never centred: where each digit sits is its label
    "folder": (255.0, False, 1.0, 256),  # your images: decoded and resized as the loader did, nothing more
}
AS_LOADED = ("folder",)  # datasets read from image files: a picture meets the net exactly as the loader read one


class ImageRejected(UsageError):
    """An upload that is not an image we read: ``status`` is the HTTP status that says why
    (413 too large, 415 not an image, 400 an image Pillow cannot decode)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def scale(images, max_value: float) -> np.ndarray:
    """Raw pixel values in ``[0, max_value]`` as float32 in [0, 1] (what the loaders store)."""
    return (np.asarray(images, dtype=np.float32) / np.float32(max_value)).astype(np.float32, copy=False)


def preprocessing_for(name: str, image_shape) -> dict:
    """The preprocessing settings of a dataset (saved in the winner bundle): ``image_shape``,
    ``max_value`` (the training scaling), ``invert`` ("auto" for grey data, False for colour),
    ``center``, ``fit``, ``stretch`` (grey data only), ``levels``. Unknown datasets get plain
    settings: no centering, no quantization."""
    max_value, center, fit, levels = _CONVENTIONS.get(name, (255.0, False, 1.0, None))
    shape = [int(v) for v in image_shape]
    grey = shape[0] == 1 and name not in AS_LOADED  # a folder of white-background images trained as they are
    return {"image_shape": shape, "max_value": max_value, "invert": "auto" if grey else False,
            "center": center if grey else False, "fit": fit, "stretch": grey, "levels": levels}


def too_large(width: int, height: int, max_pixels: int = MAX_PIXELS) -> str | None:
    """Why a picture of ``width x height`` is refused before decoding (its pixels, or its longest
    side, above the caps), else None."""
    if width * height > max_pixels:
        return f"at most {max_pixels:,} pixels"
    if max(width, height) > MAX_SIDE:
        return f"at most {MAX_SIDE:,} pixels on a side"
    return None


def open_image(data: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Bytes of an uploaded file as a decoded Pillow image, or ``ImageRejected``: 415 when the
    bytes are no image format we take, 413 above ``max_pixels`` pixels or ``MAX_SIDE`` on a side
    (checked on the header, before decoding), 400 when Pillow cannot decode them."""
    if not any(data.startswith(m) for m in MAGIC) and not (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
        raise ImageRejected(f"not an image: expected one of {', '.join(IMAGE_FORMATS)}", 415)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
            width, height = image.size
            refusal = too_large(width, height, max_pixels)
            if refusal:
                raise ImageRejected(f"image of {width}x{height} pixels refused: {refusal}; make it smaller", 413)
            image.seek(0)
            image.load()
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):  # Pillow's own, larger cap: ours said
        raise ImageRejected(f"image refused: at most {max_pixels:,} pixels, and its header declares far more (a "
                            "decompression bomb?)", 413) from None
    except UnidentifiedImageError:  # Pillow's message names its BytesIO object
        raise ImageRejected("the image cannot be read (cut short, or not the format its first bytes say)",
                            400) from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageRejected(f"the image cannot be read ({brief(exc)})", 400) from None
    return image


def high_depth_grey(image: Image.Image) -> np.ndarray | None:
    """A 16-bit or float grey image (Pillow modes ``I;16*``, ``I``, ``F``) as float32 in [0, 1], scaled
    by its type's range (65535 for 16-bit, and for ``I`` too when its values fit, as PNG's 16-bit greys
    open; float values as they are when in [0, 1], else by their maximum); None for other modes. An
    8-bit conversion would clip every value above 255 to white."""
    mode = image.mode
    if not (mode.startswith("I") or mode == "F"):
        return None
    values = np.asarray(image).astype(np.float32)
    if mode == "F":
        values = np.nan_to_num(values, nan=0.0, posinf=1.0, neginf=0.0)
        top = max(1.0, float(values.max(initial=0.0)))
    else:
        top = 65535.0 if mode.startswith("I;16") or values.max(initial=0.0) <= 65535 else 2.0**32 - 1
    return (values / np.float32(top)).clip(0, 1)


def _decoded(image: Image.Image, channels: int) -> np.ndarray:
    image = ImageOps.exif_transpose(image)
    deep = high_depth_grey(image)
    if deep is not None:  # a grey image: the same picture in every channel
        return np.repeat(deep[None], channels, axis=0)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    try:
        image = image.convert("L" if channels == 1 else "RGB")
    except (ValueError, OSError) as exc:  # e.g. a LAB TIFF: Pillow has no conversion
        raise ImageRejected(f"a {image.mode} image cannot be read as {'grey' if channels == 1 else 'RGB'} "
                            f"({exc}); save it as RGB or grey", 415) from None
    array = np.asarray(image, dtype=np.float32) / 255.0
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _light_background(x: np.ndarray) -> bool:
    border = np.concatenate([x[:, 0, :].ravel(), x[:, -1, :].ravel(), x[:, :, 0].ravel(), x[:, :, -1].ravel()])
    return float(border.mean()) > 0.5


def _resize(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(C, h, w) in [0, 1] to (C, H, W), one channel at a time through Pillow's float mode."""
    height, width = size
    planes = [Image.fromarray(np.ascontiguousarray(c, dtype=np.float32)) for c in x]
    return np.stack([np.asarray(p.resize((width, height), Image.Resampling.LANCZOS)) for p in planes]).clip(0, 1)


def _centered(x: np.ndarray, size: tuple[int, int], fit: float) -> np.ndarray:
    ink = x.max(axis=0)
    rows, cols = np.nonzero(ink > INK_THRESHOLD * ink.max()) if ink.max() > 0 else ((), ())
    if len(rows) == 0:
        return _resize(x, size)
    box = x[:, rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    side = max(box.shape[1:])
    if side > MAX_BOX_SIDE:  # a thin strip: its shape kept, memory bounded (no 200000-pixel square)
        box = _resize(box, tuple(max(1, round(n * MAX_BOX_SIDE / side)) for n in box.shape[1:]))
        side = max(box.shape[1:])
    square = np.zeros((x.shape[0], side, side), dtype=np.float32)
    top, left = (side - box.shape[1]) // 2, (side - box.shape[2]) // 2
    square[:, top:top + box.shape[1], left:left + box.shape[2]] = box
    height, width = size
    inner = max(1, round(fit * min(height, width)))
    small = _resize(square, (inner, inner))
    out = np.zeros((x.shape[0], height, width), dtype=np.float32)
    top, left = (height - inner) // 2, (width - inner) // 2
    out[:, top:top + inner, left:left + inner] = small
    return out


def with_defaults(settings: dict) -> dict:
    """``settings`` with every flag ``preprocess`` reads spelled out: a bundle may lack one (an older
    one has no ``stretch``: grey data stretch)."""
    grey = int(settings["image_shape"][0]) == 1
    return {"invert": "auto", "center": False, "fit": 1.0, "stretch": grey, "levels": None, **settings}


def preprocess(image, settings: dict) -> np.ndarray:
    """A picture as the net's input, the way its training data were made (see the module's text).

    Parameters
    ----------
    image : PIL.Image, bytes, or ndarray
        A Pillow image, the bytes of an image file (checked by ``open_image``), or pixel values in
        [0, 1] shaped ``(H, W)`` or ``(C, H, W)``.
    settings : dict
        ``preprocessing_for(...)``, or a winner bundle's ``"preprocess"``.

    Returns
    -------
    ndarray of float32, shape ``image_shape`` (C, H, W), values in [0, 1].
    """
    settings = with_defaults(settings)
    channels, height, width = settings["image_shape"]
    if isinstance(image, bytes | bytearray):
        image = open_image(bytes(image))
    if isinstance(image, Image.Image):
        x = _decoded(image, channels)
    else:
        x = np.asarray(image, dtype=np.float32)
        x = x[None] if x.ndim == 2 else x
        if x.ndim != 3 or x.shape[0] not in (1, 3):
            raise UsageError(f"image must have shape (H, W) or (C, H, W), got {np.shape(image)}")
        x = x.mean(axis=0, keepdims=True) if channels == 1 else np.repeat(x, 3 // x.shape[0], axis=0)
    invert = settings["invert"]
    if invert is True or (invert == "auto" and _light_background(x)):
        x = 1.0 - x
    if x.shape[1:] != (height, width):
        if settings["center"]:
            x = _centered(x, (height, width), float(settings["fit"]))
        else:
            x = _resize(x, (height, width))
        if settings["stretch"] and x.max() > 0:
            x = x / x.max()
    levels = settings["levels"]
    if levels:
        x = np.round(x * (levels - 1)) / (levels - 1)
    return np.ascontiguousarray(x, dtype=np.float32)


def steps_in_words(settings: dict) -> str:
    """What ``preprocess`` does with these settings, as a sentence for people (the page's footer):
    only the steps it takes, in its order."""
    settings = with_defaults(settings)
    channels, height, width = settings["image_shape"]
    invert = {True: "inverted", False: None, "auto": "inverted when its border is light (ink made bright on "
              "dark)"}[settings["invert"]]
    fit = float(settings["fit"])
    frame = f"{height}\u00d7{width}"
    resize = f"its ink's box centred and scaled to {fit:.0%} of the {frame} frame" if settings["center"] \
        else f"resized to {frame}"
    stretch = " and stretched so its brightest pixel is 1" if settings["stretch"] else ""
    steps = ["RGB" if channels == 3 else "grey", "scaled to [0, 1]", invert,
             f"{resize}{stretch} (an image of {frame} stays as it is)",
             f"rounded to {settings['levels']} levels" if settings["levels"] else None]
    return ", ".join(step for step in steps if step)
