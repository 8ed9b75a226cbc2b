"""What the convolutions of a CNN respond to: feature maps of each conv layer for one image, the
first layer's filters, activation maximization for conv channels, and DeepDream.

Numbers come from here and a matplotlib Figure from ``hpsearch.viz.conv_plots``. Activation maximization and
DeepDream are ours: gradient ascent on the input, kept inside [0, 1], with random jitter (a roll
of a pixel or two) and an occasional Gaussian blur as the regularizers that keep the pictures
from turning into high-frequency noise. Layer activations come from Captum's ``LayerActivation``.
The model's mode and hooks are restored as in ``hpsearch.viz.attribution``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import LayerActivation
from torch import nn

from ..errors import UsageError
from .modules import as_batch, as_module, model_session

__all__ = ["conv_layers", "feature_maps", "first_layer_filters", "conv_maximizers", "deep_dream"]


def conv_layers(model, *, after_activation: bool = True) -> list[tuple[str, nn.Module]]:
    """``(name, layer)`` for each ``Conv2d`` in declaration order; with ``after_activation`` the layer
    is the ``ReLU`` that follows that convolution in its ``nn.Sequential`` (before the next one), if any.

    Only a ReLU of the same ``Sequential``, used once in the model, is certain to run right after the
    convolution: one held as an attribute may be shared with a later layer or called in another order
    than it was declared (a hook on it would then see another layer's output), so there the
    convolution's own output is taken."""
    module = as_module(model)
    uses: dict[int, int] = {}
    for _, m in module.named_modules(remove_duplicate=False):
        uses[id(m)] = uses.get(id(m), 0) + 1
    layers = []
    for name, m in module.named_modules():
        if isinstance(m, nn.Conv2d):
            relu = _own_relu(module, name, uses) if after_activation else None
            layers.append(relu or (name, m))
    if not layers:
        raise UsageError(f"{type(module).__name__} has no Conv2d layer; this picture needs a CNN")
    return layers


def _own_relu(module: nn.Module, name: str, uses: dict[int, int]) -> tuple[str, nn.Module] | None:
    """The ReLU after the convolution ``name`` in its ``nn.Sequential``, used nowhere else (see ``conv_layers``)."""
    parent_name, _, key = name.rpartition(".")
    parent = module.get_submodule(parent_name) if parent_name else module
    if not isinstance(parent, nn.Sequential):
        return None
    keys = list(parent._modules)
    for later in keys[keys.index(key) + 1:]:
        layer = parent._modules[later]
        if any(isinstance(m, nn.Conv2d) for m in layer.modules()):
            return None
        if isinstance(layer, nn.ReLU):
            return (f"{parent_name}.{later}" if parent_name else later, layer) if uses[id(layer)] == 1 else None
    return None


def _layer(model, layer) -> nn.Module:
    layers = conv_layers(model)
    if layer is None:
        return layers[-1][1]
    if isinstance(layer, nn.Module):
        return layer
    if isinstance(layer, bool) or not isinstance(layer, int) or not -len(layers) <= layer < len(layers):
        raise UsageError(f"layer must be a conv layer index in 0..{len(layers) - 1} (or a module), "
                         f"got {layer!r}")
    return layers[layer][1]


def feature_maps(model, image, *, after_activation: bool = True) -> list[tuple[str, np.ndarray]]:
    """The output of each conv layer for one image.

    Parameters
    ----------
    model : torch module or fitted skorch net
    image : array (C, H, W) or (1, C, H, W)
    after_activation : bool
        Maps after each convolution's ReLU (True) or the raw convolution outputs.

    Returns
    -------
    list of (layer name, ndarray (channels, h, w))
    """
    module = as_module(model)
    layers = conv_layers(module, after_activation=after_activation)
    with model_session(module):
        x = as_batch(module, image)
        if len(x) != 1:
            raise UsageError(f"feature_maps explains one image, got a batch of {len(x)}")
        acts = LayerActivation(module, [m for _, m in layers]).attribute(x)
    return [(name, a[0].detach().cpu().numpy()) for (name, _), a in zip(layers, acts, strict=True)]


def first_layer_filters(model) -> np.ndarray:
    """Weights of the first ``Conv2d``: ndarray (filters, in_channels, kh, kw)."""
    module = as_module(model)
    conv_layers(module)  # a UsageError when there is none
    first = next(m for m in module.modules() if isinstance(m, nn.Conv2d))
    return first.weight.detach().cpu().numpy().copy()


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(round(2 * sigma)))
    r = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(r ** 2) / (2 * sigma ** 2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1),
                 groups=c)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1),
                    groups=c)


def _ascend(module, layer, x, objective, *, steps, lr, jitter, blur_every, blur_sigma, generator,
            pre_activation=False):
    """Normalized gradient ascent on ``x`` in [0, 1]: each step rolls by a random jitter,
    moves along grad / mean|grad| and clips; every ``blur_every`` steps a Gaussian blur."""
    store = {}
    handle = layer.register_forward_hook(
        lambda m, i, out: store.__setitem__("a", i[0] if pre_activation else out))
    try:
        for step in range(steps):
            dy, dx = (torch.randint(-jitter, jitter + 1, (2,), generator=generator).tolist()
                      if jitter else (0, 0))
            x.requires_grad_(True)
            module(torch.roll(x, shifts=(dy, dx), dims=(2, 3)))
            grad, = torch.autograd.grad(objective(store.pop("a")), x)
            with torch.no_grad():
                scale = grad.abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
                x = (x + lr * grad / scale).clamp(0, 1)
                if blur_every and (step + 1) % blur_every == 0 and step + 1 < steps:
                    x = _blur(x, blur_sigma).clamp(0, 1)
    finally:
        handle.remove()
    return x.detach()


def _check_steps(steps, lr, jitter, blur_every, blur_sigma):
    for name, value in (("steps", steps), ("jitter", jitter), ("blur_every", blur_every)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UsageError(f"{name} must be a whole number >= 0, got {value!r}")
    if not lr > 0 or not blur_sigma > 0:
        raise UsageError(f"lr and blur_sigma must be > 0, got lr={lr!r}, blur_sigma={blur_sigma!r}")


def conv_maximizers(model, image_shape: Sequence[int], *, layer=None, channels: Sequence[int] | int | None = None,
                    steps: int = 100, lr: float = 0.05, jitter: int = 1, blur_every: int = 4,
                    blur_sigma: float = 0.5, seed: int = 0) -> np.ndarray:
    """Images in [0, 1] that maximize the mean activation of conv channels (one image each).

    When the layer is a ReLU, its input (the pre-activation) is maximized: the same images where
    the channel can be made positive, and a gradient to climb even where the ReLU is 0 everywhere.

    Parameters
    ----------
    image_shape : (C, H, W)
        Shape of the model's input images.
    layer : int, nn.Module or None
        Conv layer index (see ``conv_layers``) or module; default the last conv layer.
    channels : sequence of int or int, optional
        Channels of that layer; an int ``k`` means the first ``k`` (or all, if fewer); default all.
    steps, lr : int, float
        Gradient-ascent steps and step size (in units of the mean absolute gradient).
    jitter : int
        Random roll of up to ``jitter`` pixels before each step (0 = off).
    blur_every, blur_sigma : int, float
        Gaussian blur of the images every ``blur_every`` steps (0 = off).
    seed : int
        Seeds the grey-plus-noise start and the jitter.

    Returns
    -------
    ndarray (len(channels), C, H, W)
    """
    _check_steps(steps, lr, jitter, blur_every, blur_sigma)
    module = as_module(model)
    target = _layer(module, layer)
    generator = torch.Generator().manual_seed(seed)
    with model_session(module):
        shape = tuple(int(v) for v in image_shape)
        with torch.no_grad():
            store = {}
            handle = target.register_forward_hook(lambda m, i, out: store.__setitem__("a", out))
            try:
                module(as_batch(module, np.zeros((1, *shape), np.float32)))
            finally:
                handle.remove()
        n_channels = store["a"].shape[1]
        if channels is None or isinstance(channels, int):
            chosen = list(range(n_channels if channels is None else min(channels, n_channels)))
        else:
            chosen = [int(c) for c in channels]
        bad = [c for c in chosen if not 0 <= c < n_channels]
        if bad:
            raise UsageError(f"channels must be in 0..{n_channels - 1} for this layer, got {bad}")
        start = 0.5 + 0.01 * torch.randn((len(chosen), *shape), generator=generator)
        x = as_batch(module, start.clamp(0, 1).numpy())
        index = torch.tensor(chosen, device=x.device)

        def objective(a):
            return a[torch.arange(len(chosen), device=a.device), index].mean(dim=(1, 2)).sum()

        x = _ascend(module, target, x, objective, steps=steps, lr=lr, jitter=jitter,
                    blur_every=blur_every, blur_sigma=blur_sigma, generator=generator,
                    pre_activation=isinstance(target, nn.ReLU))
    return x.cpu().numpy()


def deep_dream(model, images, *, layer=None, steps: int = 20, lr: float = 0.02, jitter: int = 1,
               blur_every: int = 0, blur_sigma: float = 0.5, seed: int = 0) -> np.ndarray:
    """DeepDream: starting from real images, ascend the mean squared activation of ``layer``,
    so whatever that layer sees in the image is drawn more strongly. Stays in [0, 1].

    Parameters
    ----------
    images : array (n, C, H, W) or one image (C, H, W)
    layer : int, nn.Module or None
        Default: the last conv layer.
    steps, lr, jitter, blur_every, blur_sigma, seed
        As in ``conv_maximizers``; ``steps=0`` returns the images unchanged.

    Returns
    -------
    ndarray (n, C, H, W)
    """
    _check_steps(steps, lr, jitter, blur_every, blur_sigma)
    module = as_module(model)
    target = _layer(module, layer)
    generator = torch.Generator().manual_seed(seed)
    with model_session(module):
        x = as_batch(module, images)
        x = _ascend(module, target, x, lambda a: a.pow(2).mean(dim=(1, 2, 3)).sum(), steps=steps, lr=lr,
                    jitter=jitter, blur_every=blur_every, blur_sigma=blur_sigma, generator=generator)
    return x.cpu().numpy()
