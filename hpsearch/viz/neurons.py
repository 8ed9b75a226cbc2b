"""What the neurons of an MLP respond to: receptive fields and activation maximizers (seed sec. 5).

Pure-number functions (``receptive_fields``, ``box_maximizer``, ``maximize_activation``,
``unit_activations``) return numpy arrays; the plotting functions only draw them and return a
matplotlib ``Figure``. Layers are counted over the MLP's Linear layers: ``0`` is the first hidden
layer, ``-1`` (or ``n_layers - 1``) the output layer.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from ..data.dataset import square_image_shape
from ..errors import UsageError
from .fonts import plain
from .images import WEIGHT_LEGEND, is_rgb, show_image, show_weights
from .modules import device_of

__all__ = ["receptive_fields", "box_maximizer", "maximize_activation", "unit_activations",
           "mlp_linears", "layer_names", "plot_unit_grid", "plot_receptive_fields", "plot_maximizers",
           "mlp_only"]


def _module(net) -> torch.nn.Module:
    return getattr(net, "module_", net)


def mlp_only(module) -> str | None:
    """``None`` when ``module`` is an MLP made only of Linear layers (and element-wise
    activations, dropout, flatten), else the reason neuron pictures do not apply."""
    module = _module(module)
    if not hasattr(module, "linears"):
        return f"receptive fields and maximizers need an MLP; the winner is a {type(module).__name__}"
    if any(isinstance(m, torch.nn.modules.conv._ConvNd) for m in module.modules()):
        return "receptive fields need an MLP of dense layers only; this net has convolutions"
    return None


def mlp_linears(net) -> list[torch.nn.Linear]:
    """The Linear layers of an MLP (a skorch net or a module), the output layer last."""
    reason = mlp_only(net)
    if reason is not None:
        raise UsageError(reason)
    return list(_module(net).linears)


def layer_names(net) -> list[str]:
    """``["hidden layer 1", ..., "output layer"]``, one per Linear layer."""
    n = len(mlp_linears(net))
    return [f"hidden layer {i + 1}" for i in range(n - 1)] + ["output layer"]


def _image_shape(net, image_shape) -> tuple[int, ...]:
    if image_shape is None:
        image_shape = getattr(net, "winner_", {}).get("image_shape")
    n_inputs = mlp_linears(net)[0].in_features
    if image_shape is None:
        image_shape = square_image_shape(n_inputs)
        if image_shape is None:
            raise UsageError(f"image_shape is needed: {n_inputs} inputs are neither a square grey image nor a "
                             "square RGB one; pass image_shape=(channels, height, width)")
    image_shape = tuple(int(v) for v in image_shape)
    if math.prod(image_shape) != n_inputs:
        raise UsageError(f"image_shape {image_shape} has {math.prod(image_shape)} pixels but the net "
                         f"takes {n_inputs} inputs; pass the dataset's image_shape")
    return image_shape


def _layer_index(layer: int, n_layers: int) -> int:
    if isinstance(layer, bool) or not isinstance(layer, int) or not -n_layers <= layer < n_layers:
        raise UsageError(f"layer must be an integer in [{-n_layers}, {n_layers - 1}] (0 = first hidden "
                         f"layer, -1 = output layer), got {layer!r}")
    return layer % n_layers


def _units(units, n_units: int) -> list[int]:
    if units is None:
        return list(range(n_units))
    if isinstance(units, int | np.integer):
        units = [int(units)]
    units = [int(u) for u in units]
    bad = [u for u in units if not 0 <= u < n_units]
    if bad:
        raise UsageError(f"units must lie in [0, {n_units - 1}] for this layer, got {bad}")
    return units


def receptive_fields(net, image_shape: Sequence[int] | None = None) -> list[np.ndarray]:
    """The receptive field of every unit of every layer of an MLP.

    The first hidden layer's fields are its weight rows. A deeper layer's fields are the product
    of the weight matrices down to the input, ``W_k @ ... @ W_2 @ W_1``: what the unit would see
    if the net were linear. This **ignores the nonlinearities and the biases** (exact only for
    identity activations, where a unit's field is the gradient of that unit w.r.t. the input).

    Parameters
    ----------
    net : skorch net or torch module with ``.linears`` (an ``MLP``)
    image_shape : (channels, height, width), optional
        Default: the shape saved with a loaded winner, else a square grey image (784 inputs:
        1x28x28) or a square RGB one (3,072 inputs: 3x32x32), whichever the input size makes.

    Returns
    -------
    list of ndarray
        One float32 array per Linear layer (the output layer last), shaped
        ``(units, *image_shape)``.
    """
    shape = _image_shape(net, image_shape)
    fields, product = [], None
    with torch.no_grad():
        for linear in mlp_linears(net):
            weight = linear.weight.detach().cpu().double()
            product = weight if product is None else weight @ product
            fields.append(product.float().numpy().reshape(-1, *shape))
    return fields


def box_maximizer(net, layer: int = 0, units=None, image_shape: Sequence[int] | None = None) -> np.ndarray:
    """The seed's exact maximizer inside [0, 1]: 1 where the receptive field is positive, else 0.

    For a first-hidden-layer unit (``layer=0``) this is the true maximizer of its activation over
    images in [0, 1]: ``w . x + b`` is largest with ``x = 1[w > 0]``. For deeper layers it uses
    the linear receptive field, so it ignores the nonlinearities (see ``receptive_fields``).

    Returns
    -------
    ndarray of float32, shape (len(units), *image_shape)
    """
    fields = receptive_fields(net, image_shape)
    field = fields[_layer_index(layer, len(fields))]
    return (field[_units(units, len(field))] > 0).astype(np.float32)


class _Capture:
    """A forward hook that keeps a layer's output; removed on exit, even after an exception."""

    def __init__(self, layer: torch.nn.Module):
        self.layer, self.output, self._handle = layer, None, None

    def __enter__(self):
        self._handle = self.layer.register_forward_hook(lambda m, i, out: setattr(self, "output", out))
        return self

    def __exit__(self, *exc):
        self._handle.remove()


def _run_units(module, linear, x: torch.Tensor, units: list[int]) -> torch.Tensor:
    """Activation of ``units[i]`` of ``linear`` for image ``x[i]`` (the Linear layer's output)."""
    with _Capture(linear) as cap:
        module(x)
    return cap.output[torch.arange(len(units)), torch.as_tensor(units)]


def unit_activations(net, layer: int, images: np.ndarray, units) -> np.ndarray:
    """The activation of ``units[i]`` of ``layer`` for ``images[i]``, in eval mode.

    The activation is the Linear layer's output (before the LeakyReLU, which is increasing, so
    it has the same maximizer; for the output layer, the logit).
    """
    module = _module(net)
    linears = mlp_linears(net)
    linear = linears[_layer_index(layer, len(linears))]
    units = _units(units, linear.out_features)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            x = torch.as_tensor(np.asarray(images, dtype=np.float32), device=device_of(module))
            return _run_units(module, linear, x, units).cpu().numpy()
    finally:
        module.train(was_training)


def maximize_activation(net, layer: int, units=None, steps: int = 200, lr: float = 0.05, *,
                        start: float = 0.5, image_shape: Sequence[int] | None = None,
                        return_history: bool = False):
    """Images in [0, 1] that maximize units of ``layer``, by projected gradient ascent.

    Every image starts at the neutral grey ``start``; each step computes the unit's activation
    (see ``unit_activations``), its gradient w.r.t. the image by autograd, moves the image by
    ``lr`` times the gradient scaled so its largest pixel step is ``lr`` (the seed's
    ``X = X + lambda * dX``, made independent of the layer's scale), then clips it to [0, 1].
    The net runs in eval mode (no dropout); its mode is restored afterwards.

    Parameters
    ----------
    net : skorch net or MLP module
    layer : int
        0 = first hidden layer, -1 = output layer.
    units : int, sequence of int or None
        Units of that layer (all when None); for the output layer, the classes.
    steps : int
        Gradient-ascent steps.
    lr : float
        Largest change of one pixel per step.
    start : float
        The starting grey level, in [0, 1].
    return_history : bool
        Also return ``{"activation": (steps + 1, units), "min": (steps + 1,), "max": (steps + 1,)}``:
        the activations and the image range before the first step and after each one.

    Returns
    -------
    ndarray of float32, shape (len(units), *image_shape)
        (and the history when ``return_history``).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise UsageError(f"steps must be a whole number >= 0, got {steps!r}")
    if not lr > 0:
        raise UsageError(f"lr must be > 0, got {lr!r}")
    if not 0 <= start <= 1:
        raise UsageError(f"start must lie in [0, 1] (images are), got {start!r}")
    module = _module(net)
    linears = mlp_linears(net)
    linear = linears[_layer_index(layer, len(linears))]
    units = _units(units, linear.out_features)
    shape = _image_shape(net, image_shape)
    x = torch.full((len(units), *shape), float(start), device=device_of(module))
    hist = {"activation": [], "min": [], "max": []}
    was_training = module.training
    module.eval()
    try:
        for step in range(steps + 1):
            x.requires_grad_(True)
            act = _run_units(module, linear, x, units)
            hist["activation"].append(act.detach().cpu().numpy())
            hist["min"].append(float(x.detach().min()))
            hist["max"].append(float(x.detach().max()))
            if step == steps:
                break
            (grad,) = torch.autograd.grad(act.sum(), x)  # image i only feeds unit i
            with torch.no_grad():
                scale = grad.flatten(1).abs().amax(1).clamp_min(1e-12).view(-1, *[1] * len(shape))
                x = (x + lr * grad / scale).clamp_(0.0, 1.0)
    finally:
        module.train(was_training)
    images = x.detach().cpu().numpy().astype(np.float32)
    if return_history:
        return images, {k: np.asarray(v) for k, v in hist.items()}
    return images


# ----------------------------------------------------------------------------- plotting


def plot_unit_grid(arrays: np.ndarray, titles: Sequence[str] | None = None, *, diverging: bool = True,
                   title: str = "", ncols: int | None = None, panel_size: float = 1.3) -> Figure:
    """A grid of one panel per unit, with no empty panels (``len(fig.axes) == len(arrays)``).

    Parameters
    ----------
    arrays : ndarray, shape (units, channels, height, width)
    titles : one label per panel, optional
    diverging : bool
        True: signed weights, each panel on its own symmetric scale ``m = max|value|``: grey
        images on a red/blue colormap centred on zero (red > 0, blue < 0), RGB ones as
        ``0.5 + w / (2 m)`` per channel (grey = 0; see ``hpsearch.viz.images``). False: images
        in [0, 1], grey levels or RGB.
    """
    arrays = np.asarray(arrays)
    n = len(arrays)
    if n == 0:
        raise UsageError("nothing to plot: no units were given")
    ncols = ncols or min(n, max(1, math.ceil(math.sqrt(n))))
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(panel_size * ncols, panel_size * nrows + (0.7 if title else 0.1)),
                 layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for i, ax in enumerate(axes):
        if i >= n:
            fig.delaxes(ax)
            continue
        (show_weights if diverging else show_image)(ax, arrays[i])
        ax.set_xticks([])
        ax.set_yticks([])
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=8)
    if title:  # wrapped to the figure's width (about 13 characters per inch at this size)
        width = max(24, int(panel_size * ncols * 13))
        lines = [textwrap.fill(line, width) for line in title.split("\n")]
        fig.suptitle("\n".join(lines), fontsize=9)
    return fig


def _panel_titles(net, layer_idx: int, units: list[int], class_names) -> list[str]:
    n_layers = len(mlp_linears(net))
    if layer_idx == n_layers - 1:
        names = class_names or getattr(net, "winner_", {}).get("class_names")
        if names:
            return [plain(names[u]) for u in units]
        return [f"class {u}" for u in units]
    return [f"unit {u}" for u in units]


def _default_units(net, layer_idx: int, n_units: int) -> list[int]:
    """The first ``n_units`` units of a hidden layer; every class of the output layer."""
    linears = mlp_linears(net)
    width = linears[layer_idx].out_features
    return list(range(width if layer_idx == len(linears) - 1 else min(n_units, width)))


def plot_receptive_fields(net, layer: int = 0, n_units: int = 25, *, units=None,
                          class_names: Sequence[str] | None = None,
                          image_shape: Sequence[int] | None = None) -> Figure:
    """Receptive fields of one layer (seed figures 2-4): the first ``n_units`` units of a hidden
    layer, or every class of the output layer, on a diverging colormap centred on zero."""
    fields = receptive_fields(net, image_shape)
    idx = _layer_index(layer, len(fields))
    units = _units(units, len(fields[idx])) if units is not None else _default_units(net, idx, n_units)
    name = layer_names(net)[idx]
    note = "" if idx == 0 else " (product of weight matrices; nonlinearities ignored)"
    legend = WEIGHT_LEGEND["rgb" if is_rgb(fields[idx][0]) else "grey"]
    return plot_unit_grid(fields[idx][units], _panel_titles(net, idx, units, class_names),
                          title=f"Receptive fields, {name}{note}\n{legend}")


def plot_maximizers(net, layer: int = 0, n_units: int = 25, *, units=None, method: str = "gradient",
                    steps: int = 200, lr: float = 0.05, class_names: Sequence[str] | None = None,
                    image_shape: Sequence[int] | None = None) -> Figure:
    """Images in [0, 1] that maximize units of one layer (seed figures 5-7), in grey levels or RGB.

    ``method="gradient"`` runs ``maximize_activation``; ``method="box"`` draws ``box_maximizer``
    (exact for the first hidden layer).
    """
    linears = mlp_linears(net)
    idx = _layer_index(layer, len(linears))
    units = _units(units, linears[idx].out_features) if units is not None else _default_units(net, idx, n_units)
    if method == "gradient":
        images = maximize_activation(net, idx, units, steps=steps, lr=lr, image_shape=image_shape)
        how = f"gradient ascent, {steps} steps from grey 0.5"
    elif method == "box":
        images = box_maximizer(net, idx, units, image_shape=image_shape)
        how = "1[receptive field > 0]" + (", exact" if idx == 0 else ", nonlinearities ignored")
    else:
        raise UsageError(f"method must be 'gradient' or 'box', got {method!r}")
    name = layer_names(net)[idx]
    scale = "each channel 0..1" if is_rgb(images[0]) else "white = 1, black = 0"
    return plot_unit_grid(images, _panel_titles(net, idx, units, class_names), diverging=False,
                          title=f"Images that maximize each unit, {name}\n({how}; {scale})")
