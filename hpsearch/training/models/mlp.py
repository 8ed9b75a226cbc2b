"""The MLP model kind (the Lab 3 seed's network)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .layers import grouped, ints, positions_of
from .parameters import check_fraction, check_number

__all__ = ["MLP"]


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
        self.positions = positions_of(positions)
        self.hidden = ints(hidden, "hidden")
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
        return grouped(self.layers(x), self.positions)

    @property
    def linears(self) -> list[nn.Linear]:
        """The Linear layers in order, the output layer last."""
        return [m for m in self.layers if isinstance(m, nn.Linear)]
