"""The model kinds a space can name (``model = "cnn"``): torch modules that return logits and take
their device from their inputs. A new kind is one file here, a module class, plus one line in
``MODELS``; everything else is read off the class:

- the config keys that go to the module: its constructor's arguments (``module_keys``), checked with
  ``parameters.PARAMETER_CHECKS`` where one is declared;
- its input: ``n_inputs`` (pixels x channels, flattened) or ``in_channels`` and ``image_size``;
- one label per position (Triple-MNIST) when it takes ``positions``, else ``one_label_only`` says why not;
- optional class methods the space checks call: ``check_draws(draws)`` (values that cannot go together)
  and ``too_deep(draws, fits)`` (more 2x2 poolings than the images take).
"""

from __future__ import annotations

import inspect

from torch import nn

from .cnn import CNN
from .gapcnn import GAPCNN
from .mlp import MLP

__all__ = ["MODELS", "module_keys", "takes_positions", "STRUCTURAL_ARGUMENTS"]

MODELS: dict[str, type[nn.Module]] = {
    "mlp": MLP,
    "cnn": CNN,
    "gapcnn": GAPCNN,
}
# Constructor arguments that come from the data (make_net fills them), not from a config.
STRUCTURAL_ARGUMENTS = ("n_inputs", "in_channels", "image_size", "n_classes", "positions")


def _arguments(kind: str) -> list[str]:
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)  # not *args, **kwargs
    return [p.name for p in inspect.signature(MODELS[kind]).parameters.values() if p.kind in named]


def module_keys(kind: str) -> tuple[str, ...]:
    """The config keys that go to model ``kind``'s module: its constructor's own arguments."""
    return tuple(name for name in _arguments(kind) if name not in STRUCTURAL_ARGUMENTS)


def takes_positions(kind: str) -> bool:
    """Whether model ``kind`` gives one label per position (it takes ``positions``)."""
    return "positions" in _arguments(kind)
