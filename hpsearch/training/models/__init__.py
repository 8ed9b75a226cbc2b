"""The model kinds a space can name (``model = "cnn"``): torch modules that return logits and take
their device from their inputs. A new kind is one file here, a module class, plus one line in
``MODELS``; everything else is read off the class:

- the config keys that go to the module: its constructor's arguments (``module_keys``), checked with
  ``parameters.PARAMETER_CHECKS`` where one is declared;
- its input: ``n_inputs`` (pixels x channels, flattened), ``in_channels`` and ``image_size``, or
  ``image_shape`` ``(C, H, W)`` (your own modules' contract, ``user``);
- one label per position (Triple-MNIST) when it takes ``positions``, else ``one_label_only`` says why not;
- optional class methods the space checks call: ``check_draws(draws)`` (values that cannot go together)
  and ``too_deep(draws, fits)`` (more 2x2 poolings than the images take).

A space may also name your own module by import path (``model = "mynets:SmallCNN"``): ``model_class``
resolves it through ``user.user_model``, and everything above is read off its constructor the same way.
"""

from __future__ import annotations

import inspect

from torch import nn

from .cnn import CNN
from .gapcnn import GAPCNN
from .mlp import MLP
from .user import is_user_model, user_model

__all__ = ["MODELS", "model_class", "module_keys", "takes_positions", "STRUCTURAL_ARGUMENTS", "is_user_model",
           "model_arguments", "class_arguments", "config_keys"]

MODELS: dict[str, type[nn.Module]] = {
    "mlp": MLP,
    "cnn": CNN,
    "gapcnn": GAPCNN,
}
# Constructor arguments that come from the data (make_net fills them), not from a config.
STRUCTURAL_ARGUMENTS = ("n_inputs", "in_channels", "image_size", "image_shape", "n_classes", "positions")


def model_class(kind: str) -> type[nn.Module]:
    """The module class of model ``kind``: a built-in kind, or your module named ``"module:Class"``."""
    if kind in MODELS:
        return MODELS[kind]
    if is_user_model(kind):
        return user_model(kind)
    from ...errors import UsageError, did_you_mean

    raise UsageError(f"model must be one of {', '.join(MODELS)} or your module as \"module:Class\", got {kind!r}"
                     + (did_you_mean(kind, MODELS) if isinstance(kind, str) else ""))


def class_arguments(cls: type) -> list[str]:
    """The named arguments of a module class's constructor (not ``*args``, ``**kwargs``)."""
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in inspect.signature(cls).parameters.values() if p.kind in named]


def model_arguments(kind: str) -> list[str]:
    """The named arguments of model ``kind``'s constructor (not ``*args``, ``**kwargs``)."""
    return class_arguments(model_class(kind))


def config_keys(cls: type) -> tuple[str, ...]:
    """The config keys that go to a module class: its constructor's arguments but the data's."""
    return tuple(name for name in class_arguments(cls) if name not in STRUCTURAL_ARGUMENTS)


def module_keys(kind: str) -> tuple[str, ...]:
    """The config keys that go to model ``kind``'s module: its constructor's own arguments."""
    return config_keys(model_class(kind))


def takes_positions(kind: str) -> bool:
    """Whether model ``kind`` gives one label per position (it takes ``positions``)."""
    return "positions" in model_arguments(kind)
