"""Pieces the model kinds share: argument parsing, 'same'-padded convolution units, 2x2 pooling
and logits grouped per position."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ...errors import UsageError
from .parameters import _whole, check_widths

__all__ = ["image_size_of", "ints", "positions_of", "grouped", "conv_unit", "pool"]


def image_size_of(image_size) -> tuple[int, int]:
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in size):
        raise UsageError(f"image_size must be a positive int or (height, width), got {image_size!r}")
    return size


def ints(values, name: str, empty: bool = True) -> tuple[int, ...]:
    """``check_widths``, also taking one whole number for a list of one."""
    if _whole(values):
        values = (values,)
    elif isinstance(values, Iterable) and not isinstance(values, str):
        values = tuple(values)
    return check_widths(values, name, empty)


def positions_of(value) -> int:
    if not _whole(value) or value < 0:
        raise UsageError(f"positions must be a whole number >= 0 (0: one label per image), got {value!r}")
    return int(value)


def grouped(logits: torch.Tensor, positions: int) -> torch.Tensor:
    """``(n, positions * classes)`` logits as ``(n, positions, classes)``; as they are for 0."""
    return logits.unflatten(1, (positions, -1)) if positions else logits


def conv_unit(c_in: int, c_out: int, kernel_size: int, batch_norm: bool) -> list[nn.Module]:
    """Conv2d ('same' padding), optional BatchNorm2d, and a ReLU module of its own (never
    reused, never in-place, so guided backprop and layer hooks see each activation)."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2,
                                         bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.ReLU())
    return layers


def pool(size: tuple[int, int], what: str) -> tuple[int, int]:
    if min(size) < 2:
        raise UsageError(f"{what}: the feature maps are {size[0]}x{size[1]}, too small to pool "
                         "2x2; use fewer pooling steps or larger images")
    return size[0] // 2, size[1] // 2
