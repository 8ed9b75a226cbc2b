"""The plumbing every picture of a net shares: its torch module, a batch on its device, a session
that leaves it as it was found (mode restored, every hook removed), and whether a picture applies
to it (each check returns None or the reason it does not)."""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from ..errors import UsageError

__all__ = ["as_module", "device_of", "as_batch", "model_session", "positions_of", "to_numpy", "gap_only", "conv_only",
           "relu_only"]

_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
               "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
               "_forward_pre_hooks_with_kwargs")


def as_module(model) -> nn.Module:
    """The torch module of a fitted skorch net (``net.module_``), or ``model`` itself."""
    module = getattr(model, "module_", model)
    if not isinstance(module, nn.Module):
        raise UsageError(f"expected a torch module or a fitted skorch net, got {type(model).__name__}")
    return module


def device_of(module: nn.Module) -> torch.device:
    """Where ``module``'s parameters live (the CPU for a module without any)."""
    for p in module.parameters():
        return p.device
    return torch.device("cpu")


def as_batch(module: nn.Module, X) -> torch.Tensor:
    """``X`` (n, C, H, W) or one image (C, H, W) as a float32 tensor on the module's device."""
    X = torch.as_tensor(np.asarray(X) if not torch.is_tensor(X) else X, dtype=torch.float32)
    if X.ndim == 3:
        X = X[None]
    if X.ndim != 4:
        raise UsageError(f"images must have shape (n, channels, height, width), got {tuple(X.shape)}")
    return X.detach().clone().to(device_of(module))


@contextmanager
def model_session(module: nn.Module):
    """Put ``module`` in eval mode; afterwards restore every submodule's mode and remove every
    hook added meanwhile (by Captum or anyone), also when the body raises."""
    modes = {m: m.training for m in module.modules()}
    hooks = {m: {name: set(getattr(m, name, {})) for name in _HOOK_DICTS} for m in module.modules()}
    module.eval()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
            yield module
    finally:
        for m, before in hooks.items():
            for name, keys in before.items():
                table = getattr(m, name, None)
                for key in [k for k in (table or {}) if k not in keys]:
                    del table[key]
        for m, mode in modes.items():
            m.training = mode


def positions_of(model) -> int:
    """The positions of a net with one label per position (logits ``(n, positions, classes)``),
    0 for one label per image."""
    return int(getattr(as_module(model), "positions", 0) or 0)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A float32 numpy copy of ``t`` (detached, on the CPU)."""
    return t.detach().cpu().numpy().astype(np.float32, copy=False)


def gap_only(model) -> str | None:
    """None when CAM applies to ``model`` (a GAP net), else the reason it does not."""
    module = as_module(model)
    ok = getattr(module, "last_conv_activation", None) is not None and isinstance(
        getattr(module, "classifier", None), nn.Linear)
    return None if ok else f"CAM needs a GAP net (model 'gapcnn'), not {type(module).__name__}"


def conv_only(model) -> str | None:
    """None when ``model`` has a Conv2d layer, else the reason a CNN picture does not apply."""
    module = as_module(model)
    if any(isinstance(m, nn.Conv2d) for m in module.modules()):
        return None
    return f"needs a CNN (a Conv2d layer); {type(module).__name__} has none"


def relu_only(model) -> str | None:
    """None when ``model`` has ``nn.ReLU`` modules (what guided backprop modifies)."""
    module = as_module(model)
    if any(isinstance(m, nn.ReLU) for m in module.modules()):
        return None
    return f"guided backprop needs nn.ReLU modules; {type(module).__name__} has none (it would be the saliency)"
