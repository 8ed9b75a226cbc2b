"""The GAP-CNN model kind: convolutions, global average pooling, one Linear layer (the layout class
activation maps need)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ...errors import UsageError
from .layers import conv_unit, image_size_of, ints, pool
from .parameters import check_bool, check_fraction, check_kernel_size

__all__ = ["GAPCNN", "gapcnn_pools", "check_pool_after"]


def gapcnn_pools(n_filters: int, pool_after: Sequence[int]) -> int:
    """2x2 pooling steps of a GAP-CNN: after each listed convolution but the last (GAP follows it)."""
    return len({p for p in pool_after if p < n_filters})


def check_pool_after(pool_after: Sequence[int], n_filters: int) -> None:
    bad = [p for p in pool_after if p > n_filters]
    if bad:
        raise UsageError(f"pool_after counts convolutions 1..{n_filters}, got {bad[0]}; "
                         "drop it or add filters")


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
        size = image_size_of(image_size)
        self.filters = ints(filters, "filters", empty=False)
        self.pool_after = ints(pool_after, "pool_after") if pool_after else ()
        check_pool_after(self.pool_after, len(self.filters))
        check_kernel_size(kernel_size)
        check_bool(batch_norm, "batch_norm")
        check_fraction(dropout, "dropout")
        layers: list[nn.Module] = []
        c_in = in_channels
        for i, c_out in enumerate(self.filters, start=1):
            layers += conv_unit(c_in, c_out, kernel_size, batch_norm)
            c_in = c_out
            if i in self.pool_after and i < len(self.filters):
                size = pool(size, f"GAPCNN with pool_after={list(self.pool_after)}")
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

    # No ``positions`` argument: one label per image only, and why (make_net and the space checks say it).
    one_label_only = "maps each class to one channel (for CAM)"

    @classmethod
    def check_draws(cls, draws: Callable[[str], list]) -> None:
        """Refuse a space that can draw a ``pool_after`` beyond its fewest ``filters``."""
        filters = min(draws("filters"), key=len)
        for pool_after in draws("pool_after"):
            try:
                check_pool_after(pool_after, len(filters))
            except UsageError as exc:
                raise UsageError(f"pool_after: {list(pool_after)} with filters {list(filters)} (this space can "
                                 f"draw both): {exc}") from None

    @classmethod
    def too_deep(cls, draws: Callable[[str], list], fits: int) -> tuple[int, str, str] | None:
        """As ``CNN.too_deep``: the most 2x2 poolings a space can draw against the ``fits`` the images take."""
        longest = max(len(f) for f in draws("filters"))
        pools, most = max((gapcnn_pools(longest, p), list(p)) for p in draws("pool_after"))
        if pools <= fits:
            return None
        return (pools, f"pool_after: {most} with {longest} filters pools 2x2 {pools} times; {pools} poolings ",
                f"pool at most {fits} times")
