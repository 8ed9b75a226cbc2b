"""From a config (a plain dict) to a skorch ``NeuralNetClassifier``.

Config keys map onto skorch's dunder names: ``hidden`` -> ``module__hidden``, ``dropout`` ->
``module__dropout``, ``weight_decay`` -> ``optimizer__weight_decay``, ``lr``, ``batch_size`` and
``max_epochs`` as they are. So the nets work unchanged with ``cross_val_score`` and ``GridSearchCV``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from skorch import NeuralNetClassifier
from skorch.callbacks import Callback, EarlyStopping
from skorch.dataset import ValidSplit

from .errors import DivergedError, UsageError
from .models import MLP

__all__ = ["SeededNet", "make_net", "OPTIMIZERS", "MODELS", "resolve_device"]

OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "rmsprop": torch.optim.RMSprop,
    "sgd": torch.optim.SGD,
    "adamw": torch.optim.AdamW,
}
MODELS = {"mlp": MLP}
# Config keys that go to the module, per model kind (everything else is the net's or optimizer's).
MODULE_KEYS = {"mlp": ("hidden", "dropout", "negative_slope")}
DEFAULT_BATCH_SIZE = 128
DEFAULT_MAX_EPOCHS = 100
DEFAULT_PATIENCE = 15


class SeededNet(NeuralNetClassifier):
    """A ``NeuralNetClassifier`` whose weights, shuffling and dropout are seeded by
    ``random_state`` each time it is initialized, so ``fit`` is reproducible on the CPU and a
    clone inside ``cross_val_score`` trains exactly as the original would."""

    def __init__(self, module, *args, random_state: int | None = None, **kwargs):
        super().__init__(module, *args, **kwargs)
        self.random_state = random_state

    def initialize(self):
        if self.random_state is not None:
            torch.manual_seed(self.random_state)
        return super().initialize()


class StopOnNonFiniteLoss(Callback):
    """Ends a fit whose training loss became NaN or infinite: the config has diverged."""

    def on_epoch_end(self, net, **kwargs):
        loss = net.history[-1].get("train_loss", 0.0)
        if not math.isfinite(loss):
            raise DivergedError(f"training loss became {loss} at epoch {len(net.history)}")


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when CUDA is present, else ``"cpu"``; checks ``"cuda"`` exists."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device} asked for CUDA, but no CUDA GPU is visible; "
                         "use --device cpu (or auto)")
    if device != "cpu" and not device.startswith("cuda"):
        raise UsageError(f"--device must be cpu, cuda, cuda:N or auto, got {device!r}")
    return device


def make_net(config: dict, n_features: int, n_classes: int, *, device: str = "cpu",
             max_epochs: int = DEFAULT_MAX_EPOCHS, batch_size: int = DEFAULT_BATCH_SIZE,
             patience: int = DEFAULT_PATIENCE, random_state: int | None = 0,
             **net_kwargs) -> SeededNet:
    """Build an unfitted skorch net for ``config``.

    Parameters
    ----------
    config : dict
        Hyperparameters as sampled by ``ParamGenerator``; ``max_epochs`` and ``batch_size`` in
        it override the keyword defaults.
    n_features, n_classes : int
        Input size (pixels of one image) and number of classes.
    patience : int
        ``EarlyStopping(patience)`` on the validation loss of an internal stratified 20% split
        of the training data, as skorch (and the Lab 3 seed) do by default; ``0`` trains on all
        of it for ``max_epochs``.
    random_state : int or None
        Seeds initial weights, batch order and dropout.
    """
    kind = config.get("model", "mlp")
    if kind not in MODELS:
        raise UsageError(f"model must be one of {', '.join(MODELS)}, got {kind!r}")
    optimizer = config.get("optimizer", "adam")
    if optimizer not in OPTIMIZERS:
        raise UsageError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    params = {f"module__{k}": config[k] for k in MODULE_KEYS[kind] if k in config}
    if kind == "mlp":
        params["module__n_inputs"] = n_features
        params["module__hidden"] = tuple(config.get("hidden", (100,)))
    params["module__n_classes"] = n_classes
    params["optimizer__weight_decay"] = float(config.get("weight_decay", 0.0))
    if "momentum" in config and optimizer in ("sgd", "rmsprop"):
        params["optimizer__momentum"] = float(config["momentum"])

    callbacks = [("non_finite", StopOnNonFiniteLoss())]
    if patience > 0:
        callbacks.append(("early_stopping", EarlyStopping(patience=patience)))
        train_split = ValidSplit(5, stratified=True)
    else:
        train_split = None
    kwargs = dict(
        module=MODELS[kind],
        criterion=torch.nn.CrossEntropyLoss,  # the modules return logits
        optimizer=OPTIMIZERS[optimizer],
        lr=float(config.get("lr", 1e-3)),
        max_epochs=int(config.get("max_epochs", max_epochs)),
        batch_size=int(config.get("batch_size", batch_size)),
        iterator_train__shuffle=True,
        train_split=train_split,
        callbacks=callbacks,
        device=device,
        verbose=0,
        random_state=random_state,
        classes=np.arange(n_classes),
    )
    kwargs.update(params)
    kwargs.update(net_kwargs)
    return SeededNet(**kwargs)
