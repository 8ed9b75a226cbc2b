"""Output heads and their losses: the Triple-MNIST seed's 2 x 2 (``head = "softmax" | "sigmoid"``
times ``loss = "ce" | "bce"``), as Keras computes them, over the last axis of the logits.

The logits are ``(n, classes)`` for one label per image or ``(n, positions, classes)`` for one
label per position (each position is one group of ``classes``). With ``p`` the head's outputs
(``softmax(z)`` or ``sigmoid(z)``, per group) and ``t`` the one-hot target:

- ``ce`` (categorical cross-entropy): ``-log(p_y / sum(p))``; for the softmax head that is plain
  cross-entropy, for the sigmoid head Keras' ``categorical_crossentropy``, which renormalizes;
- ``bce`` (binary cross-entropy): ``mean_c -[t_c log p_c + (1 - t_c) log(1 - p_c)]``, Keras'
  ``binary_crossentropy`` (``p`` clipped to ``[1e-7, 1 - 1e-7]`` as Keras does);

each averaged over images and positions. What ``predict_proba`` returns is ``p / sum(p)`` per group
(:func:`head_probabilities`): probabilities that sum to 1, so log-loss scoring and accuracy mean the
same for every head. Everything is computed from log-probabilities (``log_softmax``,
``logsigmoid``), so no head overflows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["HEADS", "HEAD_LOSSES", "HeadLoss", "head_probabilities", "softmax_probabilities",
           "sigmoid_probabilities"]

HEADS = ("softmax", "sigmoid")
HEAD_LOSSES = ("ce", "bce")
_EPS = 1e-7  # Keras' backend epsilon: binary_crossentropy clips its probabilities to [eps, 1 - eps]


def _log_outputs(logits: torch.Tensor, head: str) -> torch.Tensor:
    return F.log_softmax(logits, dim=-1) if head == "softmax" else F.logsigmoid(logits)


def softmax_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """The softmax head's probabilities per group (a module-level function: nets pickle)."""
    return torch.softmax(logits, dim=-1)


def sigmoid_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """The sigmoid head's outputs, renormalized per group so that they sum to 1."""
    log_p = F.logsigmoid(logits)
    return torch.exp(log_p - torch.logsumexp(log_p, dim=-1, keepdim=True))


def head_probabilities(head: str):
    """The ``predict_nonlinearity`` for ``head``: logits -> probabilities summing to 1 per group."""
    return softmax_probabilities if head == "softmax" else sigmoid_probabilities


class HeadLoss(nn.Module):
    """The loss of ``head`` x ``loss`` (see the module docstring) on logits ``(..., classes)`` and
    integer targets of the logits' shape without its last axis.

    Parameters
    ----------
    head : {"softmax", "sigmoid"}
    loss : {"ce", "bce"}
    """

    def __init__(self, head: str = "softmax", loss: str = "ce"):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        if loss not in HEAD_LOSSES:
            raise ValueError(f"loss must be one of {HEAD_LOSSES}, got {loss!r}")
        self.head, self.loss = head, loss

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.long()
        log_p = _log_outputs(logits, self.head)
        if self.loss == "ce":
            log_q = log_p - torch.logsumexp(log_p, dim=-1, keepdim=True)  # renormalized (a no-op for softmax)
            return -log_q.gather(-1, target.unsqueeze(-1)).mean()
        p = torch.exp(log_p).clamp(_EPS, 1 - _EPS)
        one_hot = F.one_hot(target, logits.shape[-1]).to(p.dtype)
        return -(one_hot * torch.log(p) + (1 - one_hot) * torch.log1p(-p)).mean()
