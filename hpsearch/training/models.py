"""Torch modules the search trains. They return logits (CrossEntropyLoss applies) and take their
device from their inputs."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from numbers import Integral, Real

import torch
from torch import nn

from ..errors import UsageError

__all__ = ["MLP", "CNN", "GAPCNN", "PARAMETER_CHECKS", "cnn_pools", "gapcnn_pools", "check_pool_after",
           "max_pools"]


# What the modules accept, one check per constructor argument a config may set. The constructors
# call them and so does the search-space validation (hpsearch.space.checks): one source of truth.
# Each takes (value, name), returns the value as the module keeps it, or raises a UsageError.

def _quoted(value) -> str:
    """``"; write it without quotes"`` for a string that reads as a number, else ``""``."""
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return ""
        return "; write it without quotes"
    return ""


def _whole(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def check_number(value, name: str) -> float:
    """Any finite number (not a bool, not a string)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise UsageError(f"{name} must be a finite number, got {value!r}{_quoted(value)}")
    return value


def check_fraction(value, name: str) -> float:
    """A dropout probability in [0, 1): 1 would drop every unit and nothing could train."""
    check_number(value, name)
    if not 0 <= value < 1:
        fix = "1 drops every unit; use e.g. 0.5" if value >= 1 else "use 0 for no dropout"
        raise UsageError(f"{name} must be a probability in [0, 1), got {value!r}; {fix}")
    return value


def check_bool(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise UsageError(f"{name} must be true or false, got {value!r}; write true or false, without quotes")
    return value


def check_widths(values, name: str, empty: bool = True) -> tuple[int, ...]:
    """Layer widths (or, for ``pool_after``, 1-based indices): a list of whole numbers >= 1,
    non-empty unless ``empty``."""
    if not isinstance(values, list | tuple) or any(not _whole(v) or v < 1 for v in values):
        shown = list(values) if isinstance(values, tuple) else values
        raise UsageError(f"{name} must be a list of whole numbers >= 1, e.g. [64, 32], got {shown!r}")
    if not values and not empty:
        raise UsageError(f"{name} needs at least one entry, got []; e.g. [32, 64]")
    return tuple(int(v) for v in values)


def check_kernel_size(value, name: str = "kernel_size") -> int:
    """An odd whole number >= 1: 'same' padding (kernel_size // 2) keeps the image size only then."""
    if not _whole(value) or value < 1 or value % 2 == 0:
        raise UsageError(f"{name} must be an odd whole number >= 1 (1, 3, 5, ...), got {value!r}"
                         f"{_quoted(value)}")
    return value


def _check_block_size(value, name: str = "block_size") -> int:
    if not _whole(value) or value < 1:
        raise UsageError(f"{name} must be a whole number >= 1 (convolutions per pooling block), got {value!r}; "
                         "use e.g. 2")
    return value


PARAMETER_CHECKS = {
    "hidden": check_widths,
    "dropout": check_fraction,
    "negative_slope": check_number,
    "filters": lambda value, name: check_widths(value, name, empty=False),
    "block_size": _check_block_size,
    "dense": check_widths,
    "conv_dropout": check_fraction,
    "batch_norm": check_bool,
    "kernel_size": check_kernel_size,
    "pool_after": check_widths,
}


def cnn_pools(n_filters: int, block_size: int) -> int:
    """2x2 pooling steps of a CNN: one after each block of ``block_size`` convolutions, and one
    after a last, shorter block."""
    return -(-n_filters // block_size)


def gapcnn_pools(n_filters: int, pool_after: Sequence[int]) -> int:
    """2x2 pooling steps of a GAP-CNN: after each listed convolution but the last (GAP follows it)."""
    return len({p for p in pool_after if p < n_filters})


def check_pool_after(pool_after: Sequence[int], n_filters: int) -> None:
    bad = [p for p in pool_after if p > n_filters]
    if bad:
        raise UsageError(f"pool_after counts convolutions 1..{n_filters}, got {bad[0]}; "
                         "drop it or add filters")


def max_pools(image_size: tuple[int, int]) -> int:
    """How many 2x2 poolings (floor division) leave at least one pixel: 8x8 -> 3, 28x28 -> 4."""
    return min(image_size).bit_length() - 1


class MLP(nn.Module):
    """A multilayer perceptron: Flatten, then for each hidden width Linear, LeakyReLU, Dropout;
    then a Linear layer to the class logits.

    Parameters
    ----------
    n_inputs : int
        Number of input features: pixels times channels of one image (784 for 28x28 grey,
        3,072 for 32x32 RGB; the image is flattened channel by channel).
    hidden : sequence of int
        Hidden-layer widths, e.g. ``(532, 195)``; the search samples them decreasing.
    n_classes : int
    dropout : float
        Dropout probability after each hidden layer.
    negative_slope : float
        Slope of LeakyReLU for negative inputs.
    positions : int
        0: one label per image, logits ``(n, n_classes)``; k >= 1: one label per position,
        logits ``(n, k, n_classes)`` (the last layer is ``k`` groups of ``n_classes``).
    """

    def __init__(self, n_inputs: int = 784, hidden: Sequence[int] = (100,), n_classes: int = 10,
                 dropout: float = 0.0, negative_slope: float = 0.01, positions: int = 0):
        super().__init__()
        self.positions = _positions(positions)
        self.hidden = _ints(hidden, "hidden")
        check_fraction(dropout, "dropout")
        check_number(negative_slope, "negative_slope")
        layers: list[nn.Module] = [nn.Flatten()]
        width = n_inputs
        for h in self.hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(negative_slope), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, n_classes * max(1, self.positions)))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _grouped(self.layers(x), self.positions)

    @property
    def linears(self) -> list[nn.Linear]:
        """The Linear layers in order, the output layer last."""
        return [m for m in self.layers if isinstance(m, nn.Linear)]


def _image_size(image_size) -> tuple[int, int]:
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in size):
        raise UsageError(f"image_size must be a positive int or (height, width), got {image_size!r}")
    return size


def _ints(values, name: str, empty: bool = True) -> tuple[int, ...]:
    """``check_widths``, also taking one whole number for a list of one."""
    if _whole(values):
        values = (values,)
    elif isinstance(values, Iterable) and not isinstance(values, str):
        values = tuple(values)
    return check_widths(values, name, empty)


def _positions(value) -> int:
    if not _whole(value) or value < 0:
        raise UsageError(f"positions must be a whole number >= 0 (0: one label per image), got {value!r}")
    return int(value)


def _grouped(logits: torch.Tensor, positions: int) -> torch.Tensor:
    """``(n, positions * classes)`` logits as ``(n, positions, classes)``; as they are for 0."""
    return logits.unflatten(1, (positions, -1)) if positions else logits


def _conv_unit(c_in: int, c_out: int, kernel_size: int, batch_norm: bool) -> list[nn.Module]:
    """Conv2d ('same' padding), optional BatchNorm2d, and a ReLU module of its own (never
    reused, never in-place, so guided backprop and layer hooks see each activation)."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2,
                                         bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.ReLU())
    return layers


def _pool(size: tuple[int, int], what: str) -> tuple[int, int]:
    if min(size) < 2:
        raise UsageError(f"{what}: the feature maps are {size[0]}x{size[1]}, too small to pool "
                         "2x2; use fewer pooling steps or larger images")
    return size[0] // 2, size[1] // 2


class CNN(nn.Module):
    """Blocks of convolutions then 2x2 max-pooling, then dense layers: ``filters=(32, 32, 64, 64),
    block_size=2, dense=(256,)`` with dropouts 0.25 / 0.5 is the CIFAR-10 tutorial's basic model.

    Parameters
    ----------
    in_channels : int
        1 for grey images, 3 for RGB.
    image_size : int or (int, int)
        Height and width of the input images (8 for digits, 28 for MNIST, 32 for CIFAR-10).
    n_classes : int
    filters : sequence of int
        Output channels of each 3x3 ('same'-padded) convolution, in order.
    block_size : int
        Convolutions per block; a 2x2 max-pool (and ``conv_dropout``) ends each block.
    dense : sequence of int
        Widths of the hidden dense layers after flattening (may be empty).
    dropout : float
        Dropout before each dense layer.
    conv_dropout : float
        Dropout after each pooling step.
    batch_norm : bool
        BatchNorm2d after each convolution (before its ReLU).
    kernel_size : int
        Odd kernel size of every convolution.
    positions : int
        0: logits ``(n, n_classes)``; k >= 1: ``(n, k, n_classes)``, one group per position.
    """

    def __init__(self, in_channels: int = 1, image_size=28, n_classes: int = 10,
                 filters: Sequence[int] = (32, 32, 64, 64), block_size: int = 2,
                 dense: Sequence[int] = (256,), dropout: float = 0.0, conv_dropout: float = 0.0,
                 batch_norm: bool = False, kernel_size: int = 3, positions: int = 0):
        super().__init__()
        self.positions = _positions(positions)
        size = _image_size(image_size)
        self.filters = _ints(filters, "filters", empty=False)
        self.dense = _ints(dense, "dense") if dense else ()
        _check_block_size(block_size)
        check_kernel_size(kernel_size)
        check_bool(batch_norm, "batch_norm")
        check_fraction(dropout, "dropout")
        check_fraction(conv_dropout, "conv_dropout")
        layers: list[nn.Module] = []
        c_in = in_channels
        for i, c_out in enumerate(self.filters, start=1):
            layers += _conv_unit(c_in, c_out, kernel_size, batch_norm)
            c_in = c_out
            if i % block_size == 0 or i == len(self.filters):
                size = _pool(size, f"CNN with filters={list(self.filters)}")
                layers.append(nn.MaxPool2d(2))
                if conv_dropout:
                    layers.append(nn.Dropout(conv_dropout))
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = [nn.Flatten()]
        width = c_in * size[0] * size[1]
        for h in self.dense:
            head += [nn.Dropout(dropout), nn.Linear(width, h), nn.ReLU()]
            width = h
        head += [nn.Dropout(dropout), nn.Linear(width, n_classes * max(1, self.positions))]
        self.classifier = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _grouped(self.classifier(self.features(x)), self.positions)

    @property
    def last_conv_activation(self) -> nn.Module:
        """The ReLU after the last convolution: the layer Grad-CAM explains by default."""
        return [m for m in self.features if isinstance(m, nn.ReLU)][-1]


class GAPCNN(nn.Module):
    """Convolutions, global average pooling, one Linear layer to the classes (Lin et al.'s GAP,
    the layout class activation maps need). Grey or RGB input (``in_channels`` 1 or 3).

    ``filters=(8, 8, 64, 64, 64), pool_after=(2,)`` is the CNN-GAP seed's net (two 8-filter
    convolutions, pool, three 64-filter convolutions, GAP, dense); ``pool_after=()`` is the CAM
    seed's variant without pooling, whose maps keep the full image resolution.

    Parameters
    ----------
    in_channels : int
        1 for grey images, 3 for RGB.
    image_size : int or (int, int)
    n_classes : int
    filters : sequence of int
        Output channels of each convolution.
    pool_after : sequence of int
        2x2 max-pool after these convolutions (counted from 1).
    batch_norm : bool
        BatchNorm2d after each convolution (before its ReLU).
    dropout : float
        Dropout on the pooled features, before the Linear layer.
    kernel_size : int
    """

    def __init__(self, in_channels: int = 1, image_size=28, n_classes: int = 10,
                 filters: Sequence[int] = (8, 8, 64, 64, 64), pool_after: Sequence[int] = (2,),
                 batch_norm: bool = False, dropout: float = 0.0, kernel_size: int = 3):
        super().__init__()
        size = _image_size(image_size)
        self.filters = _ints(filters, "filters", empty=False)
        self.pool_after = _ints(pool_after, "pool_after") if pool_after else ()
        check_pool_after(self.pool_after, len(self.filters))
        check_kernel_size(kernel_size)
        check_bool(batch_norm, "batch_norm")
        check_fraction(dropout, "dropout")
        layers: list[nn.Module] = []
        c_in = in_channels
        for i, c_out in enumerate(self.filters, start=1):
            layers += _conv_unit(c_in, c_out, kernel_size, batch_norm)
            c_in = c_out
            if i in self.pool_after and i < len(self.filters):
                size = _pool(size, f"GAPCNN with pool_after={list(self.pool_after)}")
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.feature_size = size
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(c_in, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(x).mean(dim=(2, 3))))

    @property
    def last_conv_activation(self) -> nn.Module:
        """The ReLU whose output ``A`` (n, K, h, w) is averaged: CAM_c = sum_k w_ck A_k."""
        return self.features[-1]
