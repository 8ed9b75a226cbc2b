"""The CNN model kind: blocks of convolutions and 2x2 max-pooling, then dense layers (the CIFAR-10
tutorial's basic model)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from .layers import conv_unit, grouped, image_size_of, ints, pool, positions_of
from .parameters import check_block_size, check_bool, check_fraction, check_kernel_size

__all__ = ["CNN", "cnn_pools"]


def cnn_pools(n_filters: int, block_size: int) -> int:
    """2x2 pooling steps of a CNN: one after each block of ``block_size`` convolutions, and one
    after a last, shorter block."""
    return -(-n_filters // block_size)


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
        self.positions = positions_of(positions)
        size = image_size_of(image_size)
        self.filters = ints(filters, "filters", empty=False)
        self.dense = ints(dense, "dense") if dense else ()
        check_block_size(block_size)
        check_kernel_size(kernel_size)
        check_bool(batch_norm, "batch_norm")
        check_fraction(dropout, "dropout")
        check_fraction(conv_dropout, "conv_dropout")
        layers: list[nn.Module] = []
        c_in = in_channels
        for i, c_out in enumerate(self.filters, start=1):
            layers += conv_unit(c_in, c_out, kernel_size, batch_norm)
            c_in = c_out
            if i % block_size == 0 or i == len(self.filters):
                size = pool(size, f"CNN with filters={list(self.filters)}")
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
        return grouped(self.classifier(self.features(x)), self.positions)

    @property
    def last_conv_activation(self) -> nn.Module:
        """The ReLU after the last convolution: the layer Grad-CAM explains by default."""
        return [m for m in self.features if isinstance(m, nn.ReLU)][-1]

    @classmethod
    def too_deep(cls, draws: Callable[[str], list], fits: int) -> tuple[int, str, str] | None:
        """``(poolings, what draws them, the fix)`` when the deepest net a space can draw (``draws(key)``:
        the values it can take) pools more than the ``fits`` 2x2 poolings the images take, else None."""
        block = min(draws("block_size"))
        pools, deepest = max((cnn_pools(len(f), block), list(f)) for f in draws("filters"))
        if pools <= fits:
            return None
        return (pools, f"filters: {deepest} at block_size {block} makes {pools} blocks; {pools} blocks of 2x2 pooling ",
                f"use at most {fits} blocks (at most {fits * block} convolutions at block_size {block})")
