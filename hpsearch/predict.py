"""Predictor: a run's winner with its preprocessing, its probabilities and one heat map per image.

The heat map's method follows the net: CAM for a GAP net (its positive part, as the pictures draw
it), Grad-CAM at the last convolution for any other CNN, saliency (``|gradient|`` per pixel) for an
MLP. ``Predictor.explain`` returns the map as numbers; ``heatmap_png`` and ``image_png`` draw it
and the input the net saw as PNG bytes (for the page of ``hpsearch serve``). ``predict_files`` is
``hpsearch predict``: one answer per image file, a bad file never stops the others.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import UsageError
from .preprocess import preprocess
from .viz.attribution import cam, conv_only, gap_only, grad_cam, saliency

__all__ = ["Predictor", "heat_method", "predict_files", "METHOD_NAMES", "HEATMAP_SUFFIX"]

METHOD_NAMES = {
    "cam": "CAM (class activation map)",
    "gradcam": "Grad-CAM (last convolution)",
    "saliency": "saliency (|gradient| per pixel)",
}
HEATMAP_SUFFIX = ".heatmap.png"


def heat_method(net) -> str:
    """``"cam"`` for a GAP net, ``"gradcam"`` for another CNN, ``"saliency"`` otherwise."""
    if gap_only(net) is None:
        return "cam"
    return "gradcam" if conv_only(net) is None else "saliency"


def _as_rgb8(x: np.ndarray) -> np.ndarray:
    """(C, H, W) in [0, 1] as uint8 RGB (H, W, 3): a grey image's one channel thrice, a colour one as it is."""
    rgb = np.repeat(x, 3, axis=0) if x.shape[0] == 1 else x[:3]
    return (rgb.transpose(1, 2, 0).clip(0, 1) * 255).round().astype(np.uint8)


def _png(rgb: np.ndarray, size: int) -> bytes:
    image = Image.fromarray(rgb)
    if size:
        image = image.resize((size, size), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class Predictor:
    """A fitted net with the preprocessing it was trained with.

    Parameters
    ----------
    net : fitted skorch net
        With ``net.winner_`` (from ``load_winner``) or given ``settings`` and ``class_names``.
    settings : dict, optional
        The preprocessing (``hpsearch.preprocess.preprocessing_for``); default: the bundle's.
    class_names : sequence of str, optional
        Default: the bundle's.
    """

    def __init__(self, net, settings: dict | None = None, class_names=None):
        info = getattr(net, "winner_", {}) or {}
        self.net = net
        self.settings = dict(settings if settings is not None else info["preprocess"])
        self.class_names = [str(c) for c in (class_names if class_names is not None else info["class_names"])]
        self.method = heat_method(net)
        self.info = info

    @classmethod
    def from_run(cls, run_dir, device: str = "cpu") -> Predictor:
        """The winner of the run in ``run_dir`` (``winner.pt``)."""
        from .winner import load_winner

        return cls(load_winner(Path(run_dir), device=device))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.settings["image_shape"])

    def prepare(self, image) -> np.ndarray:
        """One picture (Pillow image, file bytes or array) as the net's input ``(C, H, W)``."""
        return preprocess(image, self.settings)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities of prepared images ``(n, C, H, W)`` or one ``(C, H, W)``."""
        x = np.asarray(x, dtype=np.float32)
        return self.net.predict_proba(x[None] if x.ndim == 3 else x)

    def explain(self, x: np.ndarray, target=None) -> np.ndarray:
        """The heat map ``(H, W)`` of one prepared image for ``target`` (default: the predicted
        class), by ``self.method``; non-negative."""
        batch = np.asarray(x, dtype=np.float32)[None]
        if self.method == "cam":
            maps = cam(self.net, batch, target, relu=True)
        elif self.method == "gradcam":
            maps = grad_cam(self.net, batch, target)
        else:
            maps = saliency(self.net, batch, target).sum(axis=1)
        return np.asarray(maps[0], dtype=np.float32)

    def predict_image(self, image, top: int = 3) -> dict:
        """Everything the page shows for one picture: the class, the ``top`` probabilities, the
        input the net saw ``x`` and its heat map ``heat`` (arrays), and the method's name."""
        x = self.prepare(image)
        proba = self.predict_proba(x)[0]
        best = int(np.argmax(proba))
        order = np.argsort(-proba, kind="stable")[:top]
        return {"class_index": best, "class_name": self.class_names[best],
                "top": [{"class_index": int(i), "class_name": self.class_names[i], "probability": float(proba[i])}
                        for i in order],
                "probabilities": [float(p) for p in proba], "method": self.method,
                "method_name": METHOD_NAMES[self.method], "x": x, "heat": self.explain(x, best)}

    @staticmethod
    def image_png(x: np.ndarray, size: int = 224) -> bytes:
        """The prepared image ``(C, H, W)`` as a PNG, enlarged to ``size`` pixels (nearest)."""
        return _png(_as_rgb8(x), size)

    @staticmethod
    def heatmap_png(x: np.ndarray, heat: np.ndarray, size: int = 224, alpha: float = 0.55) -> bytes:
        """The heat map over the image (grey or colour) as a PNG: inferno colours from 0 to its largest value."""
        from matplotlib import colormaps

        h = np.asarray(heat, dtype=np.float64)
        top = h.max()
        h = h / top if top > 0 else np.zeros_like(h)
        colours = colormaps["inferno"](h)[..., :3]
        base = _as_rgb8(x).astype(np.float64) / 255.0
        blend = (1 - alpha) * base + alpha * colours
        return _png((blend * 255).round().astype(np.uint8), size)


def _reason(exc: Exception) -> str:
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return text.splitlines()[0][:160] if text else type(exc).__name__


def predict_files(predictor: Predictor, paths, explain: bool = False, out_dir=None, size: int = 224):
    """``hpsearch predict``: the class of each image file, and with ``explain`` its heat map as a PNG.

    Parameters
    ----------
    predictor : Predictor
    paths : iterable of path
        Image files (PNG, JPEG, GIF, BMP, WebP, TIFF), read with ``open_image`` and ``preprocess``
        as the page reads an upload.
    explain : bool
        Write the heat map over the input the net saw (``Predictor.heatmap_png``) to
        ``<stem>.heatmap.png`` beside the file, or in ``out_dir`` when given (created; a name that
        two files would share gets ``-2``, ``-3``, ... before the suffix).
    size : int
        The heat map's side in pixels.

    Yields
    ------
    dict
        Per path, in order: ``path``, ``class_name``, ``class_index``, ``probability`` (None when
        the file could not be read), ``heatmap`` (the written path or None) and ``error`` (one line,
        or None). A file that cannot be read, is no image, or whose heat map cannot be written gets
        its ``error``; the next file is answered all the same.
    """
    if explain and out_dir is not None:
        out_dir = Path(out_dir)
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"--out-dir {out_dir}: cannot create the folder ({_reason(exc)}); "
                             "give a writable folder") from None
    used: set[Path] = set()
    for path in map(Path, paths):
        answer = {"path": str(path), "class_name": None, "class_index": None, "probability": None,
                  "heatmap": None, "error": None}
        try:
            x = predictor.prepare(path.read_bytes())  # open_image: format check, size cap, decode
        except (OSError, UsageError) as exc:  # UsageError: open_image's ImageRejected, a line of its own
            answer["error"] = f"cannot read it: {_reason(exc)}" if isinstance(exc, OSError) else str(exc)
            yield answer
            continue
        proba = predictor.predict_proba(x)[0]
        best = int(np.argmax(proba))
        answer.update(class_name=predictor.class_names[best], class_index=best, probability=float(proba[best]))
        if explain:
            target = _free_name(Path(out_dir) if out_dir is not None else path.parent, path.stem, used)
            try:
                target.write_bytes(predictor.heatmap_png(x, predictor.explain(x, best), size=size))
                answer["heatmap"] = str(target)
            except OSError as exc:
                answer["error"] = (f"cannot write its heat map {target} ({_reason(exc)}); "
                                   "give --out-dir DIR to write the heat maps elsewhere")
        yield answer


def _free_name(folder: Path, stem: str, used: set) -> Path:
    """``folder/<stem>.heatmap.png``, or ``<stem>-2.heatmap.png`` ... if this call wrote that one already."""
    target, n = folder / f"{stem}{HEATMAP_SUFFIX}", 1
    while target in used:
        n += 1
        target = folder / f"{stem}-{n}{HEATMAP_SUFFIX}"
    used.add(target)
    return target
