"""Predictor: a run's winner with its preprocessing, its probabilities and one heat map per image.

The heat map's method follows the net: CAM for a GAP net (its positive part, as the pictures draw
it), Grad-CAM at the last convolution for any other CNN, saliency (``|gradient|`` per pixel) for an
MLP; HiResCAM for a CNN with one label per position (Grad-CAM's one weight per channel cannot tell
the positions apart behind a dense head: its three maps look alike). ``Predictor.explain`` returns
the map as numbers; ``heatmap_png`` and ``image_png`` draw it and the input the net saw as PNG bytes
(for the page of ``hpsearch serve``). ``hpsearch predict`` answers image files with it
(``hpsearch.winner.predict_files``).

A winner with one label per position (Triple-MNIST's three digits) answers with its digits left to
right (``"042"``), each position's probability, and one heat map per position (the map of position
``k`` explains the digit predicted there; ``heatmaps_png`` draws them side by side); the page, which
shows one class per image, refuses it (``Predictor.check_single_label``).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.preprocess import preprocess
from ..errors import UsageError
from ..viz.attribution import cam, grad_cam, hires_cam, saliency
from ..viz.fonts import plain
from ..viz.modules import conv_only, gap_only, positions_of
from .familiar import Familiarity, unlike

__all__ = ["Predictor", "heat_method", "METHOD_NAMES", "HEATMAP_SUFFIX"]

METHOD_NAMES = {
    "cam": "CAM (class activation map)",
    "gradcam": "Grad-CAM (last convolution)",
    "hirescam": "HiResCAM (last convolution, gradient x activation per cell)",
    "saliency": "saliency (|gradient| per pixel)",
}
HEATMAP_SUFFIX = ".heatmap.png"


def heat_method(net) -> str:
    """``"cam"`` for a GAP net, ``"gradcam"`` for another CNN (``"hirescam"`` with one label per
    position), ``"saliency"`` otherwise."""
    if gap_only(net) is None:
        return "cam"
    if conv_only(net) is None:
        return "hirescam" if positions_of(net) else "gradcam"
    return "saliency"


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
        The preprocessing (``hpsearch.data.preprocess.preprocessing_for``); default: the bundle's.
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
        self.positions = positions_of(net)  # 0: one label per image
        self.run_dir: Path | None = None  # where the winner came from (the page's examples use its data)
        self.familiarity = Familiarity.of(info)  # None for a bundle written before it was kept

    @classmethod
    def from_run(cls, run_dir, device: str = "cpu") -> Predictor:
        """The winner of the run in ``run_dir`` (``winner.pt``)."""
        from .bundle import load_winner

        predictor = cls(load_winner(Path(run_dir), device=device))
        predictor.run_dir = Path(run_dir)
        return predictor

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

    def check_single_label(self, what: str = "this") -> None:
        """Raise a ``UsageError`` for a winner with one label per position: ``what`` shows one label per image."""
        if self.positions:
            raise UsageError(f"{what} shows one label per image, but this winner gives one per position "
                             f"({self.positions} digits, {self.info.get('dataset', 'its dataset')}); "
                             f"use hpsearch predict RUN FILE ... (with --explain for a heat map per position)")

    def digits(self, proba: np.ndarray) -> tuple[list[int], list[float]]:
        """One image's ``(positions, classes)`` probabilities as the class at each position and its probability."""
        best = np.asarray(proba).argmax(axis=-1)
        return [int(c) for c in best], [float(proba[k, c]) for k, c in enumerate(best)]

    def explain(self, x: np.ndarray, target=None) -> np.ndarray:
        """The heat map ``(H, W)`` of one prepared image for ``target`` (default: the predicted
        class; for a winner with one label per position a ``(position, class)`` pair, class None
        for the predicted one), by ``self.method``; non-negative."""
        batch = np.asarray(x, dtype=np.float32)[None]
        if self.method == "cam":
            maps = cam(self.net, batch, target, relu=True)
        elif self.method == "gradcam":
            maps = grad_cam(self.net, batch, target)
        elif self.method == "hirescam":
            maps = hires_cam(self.net, batch, target)
        else:
            maps = saliency(self.net, batch, target).sum(axis=1)
        return np.asarray(maps[0], dtype=np.float32)

    def explain_positions(self, x: np.ndarray) -> np.ndarray:
        """A winner with one label per position: one heat map per position ``(positions, H, W)``,
        each for the class predicted there."""
        if not self.positions:
            raise UsageError("explain_positions needs a winner with one label per position; use explain")
        return np.stack([self.explain(x, (k, None)) for k in range(self.positions)])

    def unlike(self, x: np.ndarray) -> dict:
        """``ood_score`` (the distance to the training images over the calibrated threshold) and
        ``unlike_training`` (above 1), or None for both when the winner keeps no reference."""
        return unlike(self.familiarity, x)

    def predict_image(self, image, top: int = 3) -> dict:
        """Everything the page shows for one picture: the class, the ``top`` probabilities, the
        input the net saw ``x`` and its heat map ``heat`` (arrays), and the method's name. One
        label per image only (``check_single_label``)."""
        self.check_single_label("the page")
        return self.predict_prepared(self.prepare(image), top)

    def predict_prepared(self, x: np.ndarray, top: int = 3) -> dict:
        """``predict_image`` of an image ``prepare`` gave: the net's part, apart from the decoding."""
        self.check_single_label("the page")
        proba = self.predict_proba(x)[0]
        best = int(np.argmax(proba))
        order = np.argsort(-proba, kind="stable")[:top]
        return {"class_index": best, "class_name": self.class_names[best],
                "top": [{"class_index": int(i), "class_name": self.class_names[i], "probability": float(proba[i])}
                        for i in order],
                "probabilities": [float(p) for p in proba], "method": self.method,
                "method_name": METHOD_NAMES[self.method], **self.unlike(x), "x": x, "heat": self.explain(x, best)}

    @staticmethod
    def image_png(x: np.ndarray, size: int = 224) -> bytes:
        """The prepared image ``(C, H, W)`` as a PNG, enlarged to ``size`` pixels (nearest)."""
        return _png(_as_rgb8(x), size)

    @staticmethod
    def heatmap_png(x: np.ndarray, heat: np.ndarray, size: int = 224, alpha: float = 0.55) -> bytes:
        """The heat map over the image (grey or colour) as a PNG: inferno colours from 0 to its largest value."""
        h = np.asarray(heat, dtype=np.float64)
        top = h.max()
        return _png(_blend(x, h / top if top > 0 else np.zeros_like(h), alpha), size)

    @staticmethod
    def explained_png(x: np.ndarray, heat: np.ndarray, method_name: str, class_name: str) -> bytes:
        """What ``predict --explain`` writes: the input the net saw and the heat map over it, side by side
        at a readable size, with a colour bar saying what the colours mean (the map's share of its
        largest value: how much each pixel or cell weighs for ``class_name``, by ``method_name``)."""
        from matplotlib.figure import Figure

        h = np.asarray(heat, dtype=np.float64)
        h = h / h.max() if h.max() > 0 else np.zeros_like(h)
        rgb = _as_rgb8(x)
        fig = Figure(figsize=(6.6, 3.2), dpi=100, layout="constrained")
        seen, mapped = fig.subplots(1, 2)
        seen.imshow(rgb, interpolation="nearest")
        seen.set_title("what the net saw", fontsize=10)
        mapped.imshow(rgb, interpolation="nearest")
        shown = mapped.imshow(h, cmap="inferno", alpha=0.6, vmin=0, vmax=1, interpolation="nearest",
                              extent=(-0.5, rgb.shape[1] - 0.5, rgb.shape[0] - 0.5, -0.5))
        mapped.set_title(method_name, fontsize=10)
        for ax in (seen, mapped):
            ax.set_xticks([])
            ax.set_yticks([])
        bar = fig.colorbar(shown, ax=mapped, fraction=0.05, pad=0.03)
        bar.set_ticks([0, 0.5, 1], labels=["none", "half", "most"])
        bar.set_label(plain(f"weight for '{class_name}'"), fontsize=9)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        return buffer.getvalue()

    @staticmethod
    def heatmaps_png(x: np.ndarray, heats: np.ndarray, size: int = 224, alpha: float = 0.55, gap: int = 4) -> bytes:
        """One panel per map (a winner's positions, left to right), each the map over the image as
        ``heatmap_png`` draws it but all on one scale (0 to the largest value of any), ``gap`` white
        pixels between the panels; each panel ``size`` pixels square."""
        heats = np.asarray(heats, dtype=np.float64)
        top = heats.max() if heats.size else 0.0
        panels = []
        for h in heats:
            panel = Image.fromarray(_blend(x, h / top if top > 0 else np.zeros_like(h), alpha))
            panel = np.asarray(panel.resize((size, size), Image.Resampling.NEAREST) if size else panel)
            panels += [panel, np.full((panel.shape[0], gap, 3), 255, np.uint8)]
        return _png(np.concatenate(panels[:-1], axis=1), 0)


def _blend(x: np.ndarray, h: np.ndarray, alpha: float) -> np.ndarray:
    """A map ``h`` in [0, 1] in inferno colours over the image ``x`` (C, H, W), as uint8 RGB."""
    from matplotlib import colormaps

    colours = colormaps["inferno"](h)[..., :3]
    base = _as_rgb8(x).astype(np.float64) / 255.0
    return (((1 - alpha) * base + alpha * colours) * 255).round().astype(np.uint8)
