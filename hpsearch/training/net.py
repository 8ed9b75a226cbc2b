"""From a config (a plain dict) to a skorch ``NeuralNetClassifier``.

Config keys map onto skorch's dunder names: ``hidden`` -> ``module__hidden``, ``dropout`` ->
``module__dropout``, ``weight_decay`` -> ``optimizer__weight_decay``, ``lr``, ``batch_size`` and
``max_epochs`` as they are. So the nets work unchanged with ``cross_val_score`` and ``GridSearchCV``.
"""

from __future__ import annotations

import math
from numbers import Integral

import numpy as np
import torch
from skorch import NeuralNetClassifier
from skorch.dataset import unpack_data
from skorch.utils import to_tensor

from ..data.dataset import Dataset, square_image_shape
from ..errors import UsageError, param, plural
from ..setting_checks import device_name
from ..settings import DEFAULT_BATCH_SIZE, DEFAULT_MAX_EPOCHS, DEFAULT_PATIENCE  # noqa: F401 - one place, which --help reads
from ..tasks import SingleLabel
from .augment import augment_batch, check_augment_name
from .callbacks import ContinuableEarlyStopping, StopOnNonFiniteLoss
from .heads import head_probabilities
from .losses import fit_epochs, loss_setup
from .models import MODELS, class_arguments, config_keys, is_user_model, model_class, takes_positions
from .models.shipping import received
from .schedules import schedule_callback

__all__ = ["SeededNet", "make_net", "OPTIMIZERS", "resolve_device", "missing_gpu"]

OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "rmsprop": torch.optim.RMSprop,
    "sgd": torch.optim.SGD,
    "adamw": torch.optim.AdamW,
}


class SeededNet(NeuralNetClassifier):
    """A ``NeuralNetClassifier`` whose weights, shuffling and dropout are seeded by
    ``random_state`` each time it is initialized, so ``fit`` is reproducible on the CPU and a
    clone inside ``cross_val_score`` trains exactly as the original would.

    ``augment`` (one of ``hpsearch.training.augment.AUGMENTS``, default ``"none"``) augments the images
    of each training batch, on the net's device, in ``train_step_single``: only training steps
    see augmented images (never the validation split, ``predict``/``predict_proba`` or a scored
    fold), on the lean path and the plain one alike; its draws come from torch's generator, so
    ``random_state`` seeds them too."""

    def __init__(self, module, *args, random_state: int | None = None, lean: bool = False,
                 augment: str = "none", **kwargs):
        super().__init__(module, *args, **kwargs)
        self.random_state = random_state
        self.lean = lean
        self.augment = augment

    def initialize(self):
        check_augment_name(self.augment)
        if self.random_state is not None:
            torch.manual_seed(self.random_state)
        return super().initialize()

    def predict(self, X):
        """The class of each image, or of each position (``argmax`` over the last axis)."""
        return self.predict_proba(X).argmax(axis=-1)

    def train_step_single(self, batch, **fit_params):
        if self.augment != "none":
            Xi, yi = unpack_data(batch)
            batch = (augment_batch(to_tensor(Xi, device=self.device), self.augment), yi)
        return super().train_step_single(batch, **fit_params)

    # The lean path (``lean=True``): the same DataLoader, sampler and RNG draws as skorch's, so
    # batches, dropout masks and scores are identical, but the data are tensors prepared once
    # (on the net's device) and each batch is one indexing op, not per-sample ``__getitem__`` +
    # collation; and PrintLog, which tabulates the history every epoch even at verbose=0, is off.
    def get_default_callbacks(self):
        callbacks = super().get_default_callbacks()
        if self.lean and not self.verbose:
            callbacks = [(name, cb) for name, cb in callbacks if name != "print_log"]
        return callbacks

    def get_dataset(self, X, y=None):
        if self.lean and isinstance(X, (np.ndarray, torch.Tensor)) and (
                y is None or isinstance(y, (np.ndarray, torch.Tensor))):
            return TensorBatches(X, y, device=self.device)
        return super().get_dataset(X, y)

    def get_split_datasets(self, X, y=None, **fit_params):
        train, valid = super().get_split_datasets(X, y, **fit_params)
        return TensorBatches.materialize(train), TensorBatches.materialize(valid)

    def get_iterator(self, dataset, training=False):
        if not isinstance(dataset, TensorBatches):
            return super().get_iterator(dataset, training)
        kwargs = self.get_params_for("iterator_train" if training else "iterator_valid")
        kwargs.setdefault("batch_size", self.batch_size)
        if kwargs["batch_size"] == -1:
            kwargs["batch_size"] = len(dataset)
        kwargs["collate_fn"] = _batch_as_is
        return (self.iterator_train if training else self.iterator_valid)(dataset, **kwargs)


class TensorBatches(torch.utils.data.Dataset):
    """``X`` (and ``y``) as tensors, converted once and kept on ``device``. A ``DataLoader``
    fetches a whole batch through ``__getitems__`` (one indexing op); with
    ``collate_fn=_batch_as_is`` it yields ``(X[idx], y[idx])`` exactly as the default collation
    of per-sample items would, values and dtypes alike."""

    def __init__(self, X, y=None, device=None):
        self.X = torch.as_tensor(X, device=device)
        self.y = None if y is None else torch.as_tensor(y, device=self.X.device)

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return self.X[i], (torch.zeros((), dtype=torch.int64) if self.y is None else self.y[i])

    def __getitems__(self, indices):
        # index_select, not X[idx]: the same rows, and on the CPU ~6x faster than advanced indexing
        idx = torch.as_tensor(indices, dtype=torch.int64, device=self.X.device)
        return self.X.index_select(0, idx), (None if self.y is None else self.y.index_select(0, idx))

    @classmethod
    def materialize(cls, dataset):
        """A ``Subset`` of ``TensorBatches`` (as ``ValidSplit`` returns) gathered into one."""
        if isinstance(dataset, torch.utils.data.Subset) and isinstance(dataset.dataset, cls):
            idx = torch.as_tensor(dataset.indices, dtype=torch.int64, device=dataset.dataset.X.device)
            parent = dataset.dataset
            return cls(parent.X.index_select(0, idx), None if parent.y is None else parent.y.index_select(0, idx))
        return dataset


def _batch_as_is(batch):
    """The collate function of the lean path: ``__getitems__`` already returns the batch."""
    return batch


def missing_gpu(device) -> str | None:
    """Why a CUDA ``device`` (``torch.device`` or its name) is not on this machine, or None (it is, or it is
    no CUDA device): no GPU visible, or an index past the ones there."""
    kind = torch.device(device)
    if kind.type != "cuda":
        return None
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not count:
        return "no CUDA GPU is visible"
    if kind.index is not None and kind.index >= count:
        return f"this machine shows {plural(count, 'GPU')} (cuda:0 to cuda:{count - 1}); choose one of them"
    return None


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when CUDA is present, else ``"cpu"``; checks ``"cuda"`` exists."""
    device_name("device", device)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    why = missing_gpu(device)
    if why == "no CUDA GPU is visible":
        raise UsageError(f"{param('device')} {device} asked for CUDA, but {why}; use {param('device')} cpu (or auto)")
    if why is not None:
        raise UsageError(f"{param('device')} {device}: {why}")
    return device


def _image_shape(image_shape, n_features: int, kind: str) -> tuple[int, int, int]:
    if image_shape is None:
        shape = square_image_shape(n_features)
        if shape is None:
            raise UsageError(f"model {kind!r} needs image_shape=(channels, height, width); "
                             f"{n_features} features are neither a square grey image nor a square RGB one")
        return shape
    if len(image_shape) != 3:
        raise UsageError(f"model {kind!r} needs image_shape=(channels, height, width), got {image_shape!r}")
    return tuple(int(v) for v in image_shape)


def _shape_of(data, n_classes, image_shape, task):
    """``(n_features, n_classes, image_shape, task)`` from a Dataset (or anything with
    ``image_shape``, ``class_names`` and ``task``), or the integers and task given."""
    if isinstance(data, Integral):
        if n_classes is None:
            raise UsageError("make_net needs n_classes with n_features: make_net(config, n_features, "
                             "n_classes), or make_net(config, dataset)")
        return int(data), int(n_classes), image_shape, task or SingleLabel()
    if not (hasattr(data, "image_shape") and hasattr(data, "class_names")):
        raise UsageError(f"make_net's second argument must be a Dataset (hpsearch.load_dataset) or the "
                         f"number of input features, got {type(data).__name__}")
    if n_classes is not None:
        raise UsageError("make_net(config, dataset) takes the classes from dataset.class_names; "
                         f"drop n_classes={n_classes!r}")
    shape = tuple(int(v) for v in (image_shape or data.image_shape))
    return math.prod(shape), len(data.class_names), shape, task or getattr(data, "task", SingleLabel())


def _with_callbacks(own: list, extra) -> list | str:
    """hpsearch's callbacks plus the caller's: an extra one adds to them, except that a
    ``(name, callback)`` pair named like one of hpsearch's replaces it; skorch's ``"disable"``
    (no callbacks at all, skorch's defaults included) is passed on as it is."""
    if extra is None:
        return own
    if isinstance(extra, str):
        return extra
    names = {item[0] for item in extra if isinstance(item, tuple)}
    return [item for item in own if item[0] not in names] + list(extra)


def make_net(config: dict, n_features: int | Dataset, n_classes: int | None = None, *, device: str = "cpu",
             max_epochs: int = DEFAULT_MAX_EPOCHS, batch_size: int = DEFAULT_BATCH_SIZE,
             patience: int = DEFAULT_PATIENCE, random_state: int | None = 0,
             image_shape: tuple[int, ...] | None = None, lean: bool = True, callbacks=None,
             task=None, **net_kwargs) -> SeededNet:
    """Build an unfitted skorch net for ``config``.

    Parameters
    ----------
    config : dict
        Hyperparameters as sampled by ``ParamGenerator``; ``max_epochs`` and ``batch_size`` in
        it override the keyword defaults. ``loss = "worst_class"`` trains with
        ``hpsearch.training.losses.WorstClassLoss`` (``worst_weight``) and its ``("worst_class",
        WorstClassRounds(round_epochs))`` callback, for ``rounds * round_epochs`` epochs unless
        the config's ``max_epochs`` says otherwise; ``"ce"`` (the default) is cross-entropy;
        ``"bce"`` binary cross-entropy, and ``head = "softmax" | "sigmoid"`` the output
        activation (``hpsearch.training.heads``: the Triple-MNIST seed's 2 x 2).
    n_features : Dataset or int
        A ``Dataset`` (``make_net(config, dataset)``): the input size, the image shape and the
        number of classes are taken from it (``image_shape``, ``class_names``). Or the input
        size (pixels of one image), with ``n_classes``.
    n_classes : int, optional
        Number of classes, with an integer ``n_features``; not with a Dataset.
    task : hpsearch.tasks.SingleLabel or Positions, optional
        One label per image (the default with an integer ``n_features``) or one per position
        (logits and ``predict_proba`` of shape ``(n, positions, classes)``; ``predict`` gives
        ``(n, positions)``); with a Dataset, its own ``task``.
    callbacks : list, optional
        skorch callbacks (instances or ``(name, callback)`` pairs, e.g. an ``LRScheduler`` or a
        ``Checkpoint``), *added* to hpsearch's own: ``("non_finite", StopOnNonFiniteLoss())``
        and, with ``patience > 0``, ``("early_stopping", ContinuableEarlyStopping(patience))``.
        A pair named ``"non_finite"`` or ``"early_stopping"`` replaces that one;
        ``callbacks="disable"`` turns every callback off, as in skorch.
    patience : int
        ``EarlyStopping(patience)`` on the validation loss of an internal stratified 20% split
        of the training data, as skorch (and the Lab 3 seed) do by default; ``0`` trains on all
        of it for ``max_epochs``.
    random_state : int or None
        Seeds initial weights, batch order and dropout.
    lean : bool
        Train from tensors prepared once (on ``device``), a batch per indexing op, without the
        per-epoch PrintLog (see ``SeededNet``). The scores are identical to ``lean=False``, the
        plain skorch path (per-sample ``__getitem__`` + DataLoader collation), kept to compare.
    image_shape : (channels, height, width), optional
        Shape of one image, needed by the convolutional kinds (``cnn``, ``gapcnn``); when not
        given, a square image of ``n_features`` pixels is assumed: one channel when
        ``n_features`` is a square (784: 1x28x28), else three when a third of it is (3,072:
        3x32x32 RGB); with a Dataset, its own image shape.
    **net_kwargs
        Any other ``NeuralNetClassifier`` argument (``train_split``, ``iterator_train__*``, ...).
    """
    n_features, n_classes, image_shape, task = _shape_of(n_features, n_classes, image_shape, task)
    kind = config.get("model", "mlp")
    if is_user_model(kind) and "module" in net_kwargs:  # a job's worker: the class it was sent
        module = net_kwargs["module"] = received(net_kwargs["module"])
    else:
        module = model_class(kind)
    takes = class_arguments(module)
    if task.positions and "positions" not in takes:
        per_position = " or ".join(repr(k) for k in MODELS if takes_positions(k))
        raise UsageError(f"model {kind!r} {getattr(module, 'one_label_only', 'gives one label per image')}, "
                         f"not one label per position; use model {per_position} (or a module taking positions) "
                         "for these labels")
    if task.positions and "flip" in str(config.get("augment", "none")):
        raise UsageError(f"augment {config['augment']!r} mirrors each image, which swaps the digits of a label "
                         "per position while their labels stay; use augment 'none' for these labels")
    optimizer = config.get("optimizer", "adam")
    if optimizer not in OPTIMIZERS:
        raise UsageError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    # lists (TOML arrays) as tuples: a module's widths are its own, never shared with the config
    params = {f"module__{k}": tuple(config[k]) if isinstance(config[k], list) else config[k]
              for k in config_keys(module) if k in config}
    if "n_inputs" in takes:  # a flat input: pixels x channels
        params["module__n_inputs"] = n_features
    elif "image_shape" in takes or "in_channels" not in takes:  # your module's contract: (C, H, W)
        params["module__image_shape"] = _image_shape(image_shape, n_features, kind)
    else:
        channels, *size = _image_shape(image_shape, n_features, kind)
        params["module__in_channels"], params["module__image_size"] = channels, tuple(size)
    params["module__n_classes"] = n_classes
    if task.positions:
        params["module__positions"] = task.positions
    params["optimizer__weight_decay"] = float(config.get("weight_decay", 0.0))
    if "momentum" in config and optimizer in ("sgd", "rmsprop"):
        params["optimizer__momentum"] = float(config["momentum"])

    own = [("non_finite", StopOnNonFiniteLoss())]
    if patience > 0:
        own.append(("early_stopping", ContinuableEarlyStopping(patience=patience)))
        train_split = task.valid_split()
    else:
        train_split = None
    # a worst-class loss picks its classes on the split made here, else on the training data (a
    # caller's train_split may be the test set: retrain's monitor)
    criterion, loss_params, loss_callbacks = loss_setup(
        config, n_classes, use_valid=train_split is not None and "train_split" not in net_kwargs,
        positions=task.positions)
    params.update(loss_params)
    if "criterion__head" in loss_params:  # probabilities that sum to 1 per label, for every head
        params["predict_nonlinearity"] = head_probabilities(loss_params["criterion__head"])
    own += loss_callbacks
    # a schedule spans the fit's epochs; plateau watches the validation loss only of a split made
    # here (a caller's train_split may be the test set: retrain's monitor), else the training loss
    schedule = schedule_callback(config.get("schedule", "none"), fit_epochs(config, max_epochs),
                                 float(config.get("lr", 1e-3)),
                                 validates=train_split is not None and "train_split" not in net_kwargs)
    if schedule is not None:
        own.append(schedule)
    kwargs = dict(
        module=module,
        criterion=criterion,  # the modules return logits
        optimizer=OPTIMIZERS[optimizer],
        lr=float(config.get("lr", 1e-3)),
        max_epochs=fit_epochs(config, max_epochs),
        batch_size=int(config.get("batch_size", batch_size)),
        iterator_train__shuffle=True,
        train_split=train_split,
        callbacks=_with_callbacks(own, callbacks),
        device=resolve_device(device) if device == "auto" else device,  # auto: where the net is built (a worker)
        verbose=0,
        random_state=random_state,
        lean=lean,
        augment=config.get("augment", "none"),
        classes=np.arange(n_classes),
    )
    kwargs.update(params)
    kwargs.update(task.net_params())
    kwargs.update(net_kwargs)
    return SeededNet(**kwargs)
