"""Torch modules the search trains. They return logits (CrossEntropyLoss applies) and take their
device from their inputs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .errors import UsageError

__all__ = ["MLP", "CNN", "GAPCNN"]


class MLP(nn.Module):
    """A multilayer perceptron: Flatten, then for each hidden width Linear, LeakyReLU, Dropout;
    then a Linear layer to the class logits.

    Parameters
    ----------
    n_inputs : int
        Number of input features (pixels of one image).
    hidden : sequence of int
        Hidden-layer widths, e.g. ``(532, 195)``; the search samples them decreasing.
    n_classes : int
    dropout : float
        Dropout probability after each hidden layer.
    negative_slope : float
        Slope of LeakyReLU for negative inputs.
    """

    def __init__(self, n_inputs: int = 784, hidden: Sequence[int] = (100,), n_classes: int = 10,
                 dropout: float = 0.0, negative_slope: float = 0.01):
        super().__init__()
        self.hidden = tuple(int(h) for h in hidden)
        layers: list[nn.Module] = [nn.Flatten()]
        width = n_inputs
        for h in self.hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(negative_slope), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, n_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    @property
    def linears(self) -> list[nn.Linear]:
        """The Linear layers in order, the output layer last."""
        return [m for m in self.layers if isinstance(m, nn.Linear)]


def _image_size(image_size) -> tuple[int, int]:
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in size):
        raise UsageError(f"image_size must be a positive int or (height, width), got {image_size!r}")
    return size


def _ints(values, name: str) -> tuple[int, ...]:
    values = (values,) if isinstance(values, int) else tuple(values)
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise UsageError(f"{name} must be positive whole numbers, got {values!r}")
    return values


def _conv_unit(c_in: int, c_out: int, kernel_size: int, batch_norm: bool) -> list[nn.Module]:
    """Conv2d ('same' padding), optional BatchNorm2d, and a ReLU module of its own (never
    reused, never in-place, so guided backprop and layer hooks see each activation)."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise UsageError(f"kernel_size must be an odd whole number >= 1, got {kernel_size!r}")
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
        Height and width of the input images (8 for digits, 28 for MNIST).
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
    """

    def __init__(self, in_channels: int = 1, image_size=28, n_classes: int = 10,
                 filters: Sequence[int] = (32, 32, 64, 64), block_size: int = 2,
                 dense: Sequence[int] = (256,), dropout: float = 0.0, conv_dropout: float = 0.0,
                 batch_norm: bool = False, kernel_size: int = 3):
        super().__init__()
        size = _image_size(image_size)
        self.filters = _ints(filters, "filters")
        self.dense = _ints(dense, "dense") if dense else ()
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise UsageError(f"block_size must be a whole number >= 1, got {block_size!r}")
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
        head += [nn.Dropout(dropout), nn.Linear(width, n_classes)]
        self.classifier = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    @property
    def last_conv_activation(self) -> nn.Module:
        """The ReLU after the last convolution: the layer Grad-CAM explains by default."""
        return [m for m in self.features if isinstance(m, nn.ReLU)][-1]


class GAPCNN(nn.Module):
    """Convolutions, global average pooling, one Linear layer to the classes (Lin et al.'s GAP,
    the layout class activation maps need).

    ``filters=(8, 8, 64, 64, 64), pool_after=(2,)`` is the CNN-GAP seed's net (two 8-filter
    convolutions, pool, three 64-filter convolutions, GAP, dense); ``pool_after=()`` is the CAM
    seed's variant without pooling, whose maps keep the full image resolution.

    Parameters
    ----------
    in_channels : int
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
        self.filters = _ints(filters, "filters")
        self.pool_after = _ints(pool_after, "pool_after") if pool_after else ()
        bad = [p for p in self.pool_after if p > len(self.filters)]
        if bad:
            raise UsageError(f"pool_after counts convolutions 1..{len(self.filters)}, got {bad[0]}; "
                             "drop it or add filters")
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
