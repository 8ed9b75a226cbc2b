"""Where a classifier looks: CAM, Grad-CAM, saliency, guided backprop and occlusion.

CAM is ours (Zhou et al.: ``M_c(x, y) = sum_k w_ck A_k(x, y)`` for a net that ends in global
average pooling and one Linear layer); the others are Captum's. Each method works on a batch
``(n, C, H, W)`` with any target class (default: the predicted one), returns a numpy array from
one function, and leaves the model as it found it: its train/eval mode is restored and every hook
is removed, even after an exception. ``plot_heatmaps``, ``plot_explanations`` and
``plot_attribution`` (in ``hpsearch.viz.heatmaps``) draw the arrays over
the grey or RGB input.

A net with one label per position (Triple-MNIST: logits ``(n, positions, classes)``) is explained
for one ``(position, class)`` target per image (``resolve_targets``; Captum's tuple target picks
``output[i, position, class]``); ``hpsearch.viz.positions`` draws one map per position.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import GuidedBackprop, LayerGradCam, LayerGradientXActivation, Occlusion, Saliency
from torch import nn

from ..errors import UsageError, did_you_mean
from .modules import as_batch, as_module, model_session, to_numpy
from .targets import captum_target, resolve_targets

__all__ = ["METHODS", "attribute", "cam", "grad_cam", "hires_cam", "saliency", "guided_backprop", "occlusion",
           "gradcam_layer"]


# ----------------------------------------------------------------------------- layers

def gradcam_layer(module: nn.Module) -> nn.Module:
    """The layer Grad-CAM explains by default: ``module.last_conv_activation`` where the model
    names it (CNN, GAPCNN), else the last ``Conv2d``."""
    layer = getattr(module, "last_conv_activation", None)
    if layer is not None:
        return layer
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise UsageError(f"{type(module).__name__} has no Conv2d layer; Grad-CAM needs a CNN")
    return convs[-1]


def _upsample(maps: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(maps[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]


# ----------------------------------------------------------------------------- the methods

def _gap_parts(module: nn.Module):
    layer, linear = getattr(module, "last_conv_activation", None), getattr(module, "classifier", None)
    if layer is None or not isinstance(linear, nn.Linear):
        raise UsageError(f"CAM needs a GAP net (convolutions, global average pooling, one Linear "
                         f"layer, e.g. model 'gapcnn'); got {type(module).__name__}; use grad_cam")
    return layer, linear


def cam(model, X, target=None, *, relu: bool = False, upsample: bool = True) -> np.ndarray:
    """Class activation maps ``M_c = sum_k w_ck A_k`` of a GAP net.

    Parameters
    ----------
    model : GAPCNN or fitted skorch net around one
        Needs ``last_conv_activation`` (the layer whose output ``A`` is averaged) and
        ``classifier`` (the Linear layer with weights ``w``).
    X : array (n, C, H, W)
    target : None, int or sequence of int
        Class to explain per image; None explains the predicted class.
    relu : bool
        Keep only the positive evidence (before upsampling), as Grad-CAM does: on a GAP net
        ``grad_cam(...) == cam(..., relu=True) / (h * w)``.
    upsample : bool
        Bilinearly resize the maps from the feature grid (h, w) to the image (H, W).

    Returns
    -------
    ndarray (n, H, W), or (n, h, w) when ``upsample`` is False. No rescaling.
    """
    module = as_module(model)
    layer, linear = _gap_parts(module)
    with model_session(module):
        X = as_batch(module, X)
        t = resolve_targets(module, X, target)
        store = {}
        handle = layer.register_forward_hook(lambda m, i, out: store.__setitem__("A", out))
        try:
            with torch.no_grad():
                module(X)
        finally:
            handle.remove()
        maps = torch.einsum("nk,nkhw->nhw", linear.weight[t], store["A"])
        if relu:
            maps = maps.clamp_min(0)
        if upsample:
            maps = _upsample(maps, X.shape[2:])
    return to_numpy(maps)


def grad_cam(model, X, target=None, *, layer: nn.Module | None = None, relu: bool = True,
             upsample: bool = True) -> np.ndarray:
    """Grad-CAM (Captum's ``LayerGradCam``): channel weights are the spatial means of the
    target logit's gradients at ``layer``; the map is their weighted sum of ``layer``'s output.

    On a GAP net with the default layer and ``relu=False, upsample=False`` this equals
    ``cam(...) / (h * w)`` exactly.

    Parameters
    ----------
    layer : nn.Module, optional
        Default: ``gradcam_layer(model)`` (the activation after the last convolution).
    relu : bool
        Keep only the positive evidence, as in the paper.
    upsample : bool
        Resize to the image size.

    Returns
    -------
    ndarray (n, H, W) or (n, h, w)
    """
    module = as_module(model)
    layer = layer or gradcam_layer(module)
    with model_session(module):
        X = as_batch(module, X)
        t = resolve_targets(module, X, target)
        maps = LayerGradCam(module, layer).attribute(X, target=captum_target(t), relu_attributions=relu)[:, 0]
        if upsample:
            maps = _upsample(maps, X.shape[2:])
    return to_numpy(maps)


def hires_cam(model, X, target=None, *, layer: nn.Module | None = None, relu: bool = True,
              upsample: bool = True) -> np.ndarray:
    """HiResCAM (Draelos & Carin, 2020; Captum's ``LayerGradientXActivation`` summed over
    channels): ``sum_k dy/dA_k * A_k`` at each cell of ``layer``, the gradient kept per cell
    instead of Grad-CAM's spatial mean. Grad-CAM gives every cell of a channel one weight, so
    behind a dense head (which reads *where* a feature is) it shows where the features are, not
    which of them the class used; HiResCAM follows the head (on Triple-MNIST, Grad-CAM of one
    digit spreads over all three, HiResCAM sits on it). Same parameters and shapes as ``grad_cam``.
    """
    module = as_module(model)
    layer = layer or gradcam_layer(module)
    with model_session(module):
        X = as_batch(module, X)
        t = resolve_targets(module, X, target)
        maps = LayerGradientXActivation(module, layer).attribute(X, target=captum_target(t)).sum(dim=1)
        if relu:
            maps = maps.clamp_min(0)
        if upsample:
            maps = _upsample(maps, X.shape[2:])
    return to_numpy(maps)


def saliency(model, X, target=None, *, absolute: bool = True) -> np.ndarray:
    """Gradient of the target logit with respect to each input pixel (Captum's ``Saliency``);
    for a linear model ``x @ W.T + b`` this is the weight row ``W[c]``.

    Returns
    -------
    ndarray (n, C, H, W); absolute values when ``absolute`` (Simonyan et al.).
    """
    module = as_module(model)
    with model_session(module):
        X = as_batch(module, X)
        t = resolve_targets(module, X, target)
        attr = Saliency(module).attribute(X.requires_grad_(), target=captum_target(t), abs=absolute)
    return to_numpy(attr)


def guided_backprop(model, X, target=None) -> np.ndarray:
    """Guided backpropagation (Captum's ``GuidedBackprop``): gradients where every ``nn.ReLU``
    passes back only positive gradients. Needs ReLU modules (not ``F.relu``); elsewhere it is
    the plain gradient.

    Returns
    -------
    ndarray (n, C, H, W)
    """
    module = as_module(model)
    with model_session(module):
        X = as_batch(module, X)
        t = resolve_targets(module, X, target)
        attr = GuidedBackprop(module).attribute(X.requires_grad_(), target=captum_target(t))
    return to_numpy(attr)


DEFAULT_WINDOW = 3  # occlusion's patch side unless the images are smaller


def occlusion(model, X, target=None, *, window: int | None = None, stride: int = 1,
              baseline: float = 0.0) -> np.ndarray:
    """Occlusion (Captum's ``Occlusion``): how much the target logit drops when a
    ``window x window`` patch (all channels) is replaced by ``baseline``, averaged over the
    windows covering each pixel. A one-pixel window with a zero baseline on a linear model gives
    ``x * W[c]``. ``window`` defaults to 3, or the images' shorter side where that is less
    (an image folder read at ``--image-size 2``).

    Returns
    -------
    ndarray (n, C, H, W)
    """
    for name, value in (("window", window), ("stride", stride)):
        if name == "window" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UsageError(f"occlusion {name} must be a whole number >= 1, got {value!r}")
    module = as_module(model)
    with model_session(module):
        X = as_batch(module, X)
        window = min(DEFAULT_WINDOW, *X.shape[2:]) if window is None else window
        if window > min(X.shape[2:]):
            raise UsageError(f"occlusion window {window} is larger than the {X.shape[2]}x{X.shape[3]} "
                             "images; use a smaller window")
        t = resolve_targets(module, X, target)
        c = X.shape[1]
        attr = Occlusion(module).attribute(
            X, sliding_window_shapes=(c, window, window), strides=(c, stride, stride),
            baselines=float(baseline), target=captum_target(t), perturbations_per_eval=16)
    return to_numpy(attr)


METHODS = {
    "cam": cam,
    "gradcam": grad_cam,
    "hirescam": hires_cam,
    "saliency": saliency,
    "guided_backprop": guided_backprop,
    "occlusion": occlusion,
}


def attribute(model, X, method: str, target=None, **options) -> np.ndarray:
    """Run one of ``METHODS`` by name; ``options`` go to that method."""
    if method not in METHODS:
        raise UsageError(f"method must be one of {', '.join(METHODS)}, got {method!r}"
                         + did_you_mean(method, METHODS))
    return METHODS[method](model, X, target, **options)


# ----------------------------------------------------------------------------- pictures
