"""Torch modules the search trains. They return logits (CrossEntropyLoss applies) and take their
device from their inputs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["MLP"]


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
