"""Targets of the attribution methods for a net with one label per position (logits
``(n, positions, classes)``): ``(position, class)`` pairs, and the form Captum takes them in (a
list of tuples: Captum's target selection picks ``output[i, position, class]``)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import UsageError

__all__ = ["resolve_targets", "pair_targets", "captum_target"]


def _is_pair(value) -> bool:
    return (isinstance(value, tuple | list) and len(value) == 2
            and all(v is None or isinstance(v, int | np.integer) for v in value))


def pair_targets(logits: torch.Tensor, target) -> torch.Tensor:
    """``target`` for a net with one label per position, checked against its ``logits``
    ``(n, positions, classes)``: a LongTensor ``(n, 2)`` of ``(position, class)``.

    ``target`` is one ``(position, class)`` pair for every image, a sequence of one pair per
    image, or an ``(n, 2)`` array or tensor; a class None means the one predicted at that position.
    None is refused: a net with several labels has no one predicted class to explain.
    """
    n, positions, n_classes = logits.shape
    how = ("target=(position, class) (class None: the predicted one), one pair for all images or one "
           f"per image; positions 0..{positions - 1}, classes 0..{n_classes - 1}")
    if target is None:
        raise UsageError(f"this net gives one label per position ({positions}); say which to explain: {how}")
    if torch.is_tensor(target):
        target = target.detach().cpu().numpy()
    if isinstance(target, np.ndarray) and target.ndim == 2 and target.shape[1] == 2:
        pairs = [tuple(int(v) for v in row) for row in target]
    elif _is_pair(target):
        pairs = [tuple(target)] * n
    elif isinstance(target, list | tuple) and all(_is_pair(p) for p in target):
        pairs = [tuple(p) for p in target]
    else:
        raise UsageError(f"target must be one (position, class) pair or one per image, got {target!r}: {how}")
    if len(pairs) != n:
        raise UsageError(f"target must be one (position, class) pair or one per image ({n}), got {len(pairs)}")
    out = torch.empty((n, 2), dtype=torch.long)
    for i, (k, c) in enumerate(pairs):
        if not 0 <= int(k) < positions:
            raise UsageError(f"target position must be in 0..{positions - 1}, got {k}")
        c = int(logits[i, int(k)].argmax()) if c is None else int(c)
        if not 0 <= c < n_classes:
            raise UsageError(f"target classes must be in 0..{n_classes - 1}, got {c}")
        out[i] = torch.tensor((int(k), c))
    return out.to(logits.device)


def captum_target(t: torch.Tensor):
    """What Captum takes as ``target``: the LongTensor of classes ``(n,)`` as it is, the
    ``(position, class)`` rows ``(n, 2)`` of a net with one label per position as a list of tuples
    (Captum picks ``output[i, position, class]``)."""
    return t if t.ndim == 1 else [tuple(row) for row in t.tolist()]


def resolve_targets(module: nn.Module, X: torch.Tensor, target=None) -> torch.Tensor:
    """Class index per image: the predicted class when ``target`` is None, else ``target`` (one
    int for all images, or one per image), checked against the number of classes.

    For a net with one label per position (logits ``(n, positions, classes)``) a target is a
    ``(position, class)`` pair, ``class`` None meaning the class predicted at that position: one
    pair for all images or one per image (an ``(n, 2)`` array). The result is then a LongTensor
    ``(n, 2)`` of ``(position, class)`` (``captum_target`` makes it Captum's list of tuples)."""
    with torch.no_grad():
        logits = module(X)
    if logits.ndim == 3:
        return pair_targets(logits, target)
    n, n_classes = logits.shape
    if target is None:
        return logits.argmax(dim=1)
    given = target.detach().cpu() if isinstance(target, torch.Tensor) else target  # a GPU tensor too
    t = torch.as_tensor(np.asarray(given), dtype=torch.long, device=X.device).reshape(-1)
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise UsageError(f"target must be one class or one per image ({n}), got {t.numel()} values")
    if (t < 0).any() or (t >= n_classes).any():
        raise UsageError(f"target classes must be in 0..{n_classes - 1}, got {t.tolist()}")
    return t.clone()
