"""Whether a search space can train, checked before anything is trained.

``check_space`` runs when a space is built (``load_space``, ``SearchSpace``): every value each
distribution can draw (its constant, its choices, the ends of its range) must be one the model
kinds that use the parameter accept (``hpsearch.training.models.PARAMETER_CHECKS``, the checks the modules'
constructors make) or the net and optimizer accept (``NET_CHECKS``); the model kinds and optimizers
are ``hpsearch.training.net``'s. ``check_space_for_data`` runs once the data are loaded: the deepest,
most-pooled net the space can draw must still fit the images.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping

from ..errors import UsageError, did_you_mean, param
from ..setting_checks import MAX_EPOCHS, MAX_IMAGES
from ..training import augment, losses, schedules
from ..training.heads import HEADS
from ..training.losses import WORST_CLASS_KEYS
from ..training.models import MODELS, is_user_model, model_class, module_keys, takes_positions
from ..training.models.parameters import PARAMETER_CHECKS, check_number, max_pools
from ..training.models.trust import UntrustedModule
from ..training.models.user import ModuleImportError, user_model
from ..training.net import OPTIMIZERS

__all__ = ["NET_CHECKS", "check_model_kinds", "check_space", "check_space_for_data", "check_modules_for_data",
           "probe_first_config"]


def _one_of(allowed: Callable[[], Mapping], what: str):
    """A check that the value is a key of ``allowed()`` (read at call time)."""
    def check(value, name: str) -> str:
        names = list(allowed())
        if not isinstance(value, str) or value not in names:
            hint = did_you_mean(value, names) if isinstance(value, str) else ""
            raise UsageError(f"{name} must be one of {', '.join(map(repr, names))} ({what}), got {value!r}{hint}")
        return value
    return check


def _bounded(low: float, high: float | None, fix: str, low_open: bool = False):
    """A check for a number in [low, high) (or (low, ...) with ``low_open``)."""
    def check(value, name: str) -> float:
        check_number(value, name)
        if value < low or (low_open and value == low) or (high is not None and value >= high):
            allowed = f"> {low}" if low_open else f">= {low}" if high is None else f"in [{low}, {high})"
            raise UsageError(f"{name} must be {allowed}, got {value!r}; {fix}")
        return value
    return check


def _count(fix: str, high: int = MAX_EPOCHS):
    """A check for a whole number from 1 to ``high`` (beyond it, a typo: the store keeps 64-bit integers)."""
    def check(value, name: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UsageError(f"{name} must be a whole number >= 1, got {value!r}; {fix}")
        if value > high:
            raise UsageError(f"{name} must be at most {high:,}, got {value:,}; {fix}")
        return value
    return check


def _model_kind(value, name: str) -> str:
    """A built-in model kind, or your module named ``"module:Class"`` (imported and checked now)."""
    if is_user_model(value):
        user_model(value)
        return value
    return _one_of(lambda: MODELS, "the model kinds, or your module as \"module:Class\"")(value, name)


# The parameters that go to the net or the optimizer, not to the module (make_net maps them).
NET_CHECKS = {
    "model": _model_kind,
    "optimizer": _one_of(lambda: OPTIMIZERS, "the optimizers"),
    "lr": _bounded(0, None, "use a positive learning rate such as 1e-3", low_open=True),
    "weight_decay": _bounded(0, None, "use 0 for no L2 penalty"),
    "momentum": _bounded(0, 1, "use e.g. 0.9 (0 for none)"),
    "batch_size": _count("use e.g. batch_size = 128", MAX_IMAGES),
    "max_epochs": _count("0 epochs would rank untrained nets; use e.g. max_epochs = 20"),
    "loss": _one_of(lambda: losses.LOSSES, "the training losses"),
    "head": _one_of(lambda: dict.fromkeys(HEADS), "the output activations"),
    "schedule": _one_of(lambda: schedules.SCHEDULES, "the learning-rate schedules"),
    "augment": _one_of(lambda: augment.AUGMENTS, "the augmentations"),
    "rounds": _count("use e.g. rounds = 6 (the CAM seed's 6 x 15 epochs)"),
    "round_epochs": _count("use e.g. round_epochs = 15"),
    "worst_weight": _bounded(0, None, "use e.g. 1.0 (the CAM seed), 0 for plain cross-entropy"),
}


def _where(key: str, dist) -> str:
    """How a failing value was drawn, to start the message: "" for a constant."""
    kind = getattr(dist, "distribution", "constant")
    if kind == "constant":
        return ""
    if kind == "categorical":
        return f"[{key}] choices: "
    if hasattr(dist, "low") and kind != "decreasing_int":
        return f"[{key}] {kind} range [{dist.low!r}, {dist.high!r}]: "
    return f"[{key}] {kind}: "


def _passes(check, value, key: str) -> bool:
    try:
        check(value, key)
    except UsageError:
        return False
    return True


def _check_draws(key: str, dist, check) -> None:
    for value in dist.support():
        try:
            check(value, key)
        except (ModuleImportError, UntrustedModule):
            raise  # as it is: a command on a run folder says where the search found the module
        except UsageError as exc:
            if (getattr(dist, "distribution", "") in ("uniform", "log_uniform") and isinstance(value, float)
                    and value.is_integer() and _passes(check, int(value), key)):
                raise UsageError(f"[{key}] {dist.distribution} draws fractions, but {key} must be a whole "
                                 "number; use distribution = 'int_uniform' (or 'categorical')") from None
            raise UsageError(f"{_where(key, dist)}{exc}") from None


def _support(params: Mapping, key: str, default) -> tuple:
    dist = params.get(key)
    return (default,) if dist is None else tuple(dist.support())


def _default(model: type, key: str):
    return inspect.signature(model).parameters[key].default


def _draws(params: Mapping, model: type) -> Callable[[str], list]:
    """``draws(key)``: every value ``params`` can draw for ``key`` (the model's default where it sets none)."""
    return lambda key: _support(params, key, _default(model, key))


def _check_like_default(key: str, dist, kind: str) -> None:
    """A quoted value for an argument of your module that defaults to a number or a bool is refused, naming the
    key: the constructor would fail on it ("not all arguments converted during string formatting")."""
    default = _default(model_class(kind), key)
    if isinstance(default, bool | int | float):
        quoted = next((v for v in dist.support() if isinstance(v, str)), None)
        if quoted is not None:
            kind_of = "true or false" if isinstance(default, bool) else "a number"
            raise UsageError(f"{key} draws {quoted!r}, a string, but {kind}'s default is {key}={default!r}, "
                             f"{kind_of}: write {quoted} without quotes")


def check_model_kinds(dist) -> None:
    """Raise a UsageError unless every model ``dist`` can draw is a kind or your importable module."""
    _check_draws("model", dist, NET_CHECKS["model"])


def check_space(params: Mapping) -> None:
    """Raise a UsageError unless every value ``params`` (name -> distribution) can draw is one
    the model kinds that use it (and the net and optimizer) accept."""
    if "model" in params:
        _check_draws("model", params["model"], NET_CHECKS["model"])
    kinds = _support(params, "model", "mlp")
    used = {key for kind in kinds for key in module_keys(kind)}
    for key, dist in params.items():
        users = [kind for kind in MODELS if key in module_keys(kind)]
        if users and key not in used:
            raise UsageError(f"{key} is a parameter of {' and '.join(users)} models, but this space's model "
                             f"is {' or '.join(map(repr, kinds))}, so it would be ignored; remove {key} "
                             "or add a model kind that takes it")
        built_in = any(key in module_keys(kind) for kind in kinds if kind in MODELS)  # your module checks its own
        clashing = [kind for kind in kinds if is_user_model(kind) and key in NET_CHECKS and key in module_keys(kind)]
        if clashing:
            raise UsageError(f"{key} is a training setting, and {clashing[0]!r} also takes an argument {key!r}: one "
                             f"value would go to both; rename the module's argument (e.g. module_{key})")
        for kind in (k for k in kinds if is_user_model(k) and key in module_keys(k)):
            _check_like_default(key, dist, kind)
        check = NET_CHECKS.get(key) or (PARAMETER_CHECKS.get(key) if built_in else None)
        if check is not None and key != "model":
            _check_draws(key, dist, check)
    optimizers = _support(params, "optimizer", "adam")
    if "momentum" in params and not {"sgd", "rmsprop"} & set(optimizers):  # the net passes it to those two only
        raise UsageError(f"momentum applies to the sgd and rmsprop optimizers, but this space's optimizer is "
                         f"{' or '.join(map(repr, optimizers))}, so it would be ignored; remove momentum or add "
                         "optimizer = \"sgd\" (or \"rmsprop\")")
    worst_keys = [key for key in WORST_CLASS_KEYS if key in params]
    if worst_keys and "worst_class" not in _support(params, "loss", "ce"):
        raise UsageError(f"{worst_keys[0]} sets up a worst_class loss, but this space's loss is "
                         f"{' or '.join(map(repr, _support(params, 'loss', 'ce')))}, so it would be ignored; "
                         f"remove {worst_keys[0]} or add loss = \"worst_class\"")
    heads = [h for h in _support(params, "head", "softmax") if h != "softmax"]
    if heads and "worst_class" in _support(params, "loss", "ce"):  # each config that drew both would fail
        raise UsageError(f"loss 'worst_class' trains one softmax label per image, but this space's head may be "
                         f"{heads[0]!r}, so the configs that draw both would fail; draw head \"softmax\" with "
                         "worst_class, or loss 'ce' or 'bce' with the other heads")
    for kind in kinds:
        if hasattr(model_class(kind), "check_draws"):
            model_class(kind).check_draws(_draws(params, model_class(kind)))


def check_space_for_data(space, dataset) -> None:
    """Raise a UsageError unless the images of ``dataset`` are large enough for the deepest,
    most-pooled net ``space`` can draw: each 2x2 pooling halves them and must leave a pixel.

    Parameters
    ----------
    space : SearchSpace
    dataset : Dataset or (channels, height, width)
        The loaded data (its ``image_shape``), or the shape of one image.
    """
    shape = tuple(dataset.image_shape) if hasattr(dataset, "image_shape") else tuple(dataset)
    height, width = shape[-2:]
    fits = max_pools((height, width))
    params = space.params
    kinds = _support(params, "model", "mlp")
    data = f"{dataset.name} images" if hasattr(dataset, "name") else "the images"
    need = "need images of at least {side}x{side}, " + data + " are {height}x{width}"
    start = f"search space {space.name!r}: "
    positions = getattr(getattr(dataset, "task", None), "positions", 0)
    for kind in kinds:
        if positions and not takes_positions(kind):
            per_position = " or ".join(repr(k) for k in MODELS if takes_positions(k))
            why = getattr(model_class(kind), "one_label_only", "gives one label")
            raise UsageError(f"{start}model {kind!r} {why}, but {data} carry {positions} labels each; "
                             f"use model {per_position}")
    if positions and "worst_class" in _support(params, "loss", "ce"):
        raise UsageError(f"{start}loss 'worst_class' trains one label per image, but {data} carry "
                         f"{positions} labels each; use loss 'ce' or 'bce'")
    flips = [a for a in _support(params, "augment", "none") if "flip" in a]
    if positions and flips:  # a mirrored row of digits reads right to left, and mirrored digits are no digits
        raise UsageError(f"{start}augment {flips[0]!r} mirrors each image, which swaps the left and right "
                         f"digits of {data} while their labels stay; use augment = \"none\"")
    for kind in kinds:
        model = model_class(kind)
        deep = model.too_deep(_draws(params, model), fits) if hasattr(model, "too_deep") else None
        if deep is not None:
            pools, what, fix = deep
            raise UsageError(f"{start}{what}" + need.format(side=2 ** pools, height=height, width=width) + f"; {fix}")


BYTES_PER_WEIGHT = 16  # float32 weights, their gradients and Adam's two moments


def check_space_fits_memory(space, dataset, memory_bytes: int) -> None:
    """Raise a UsageError when the widest MLP ``space`` can draw needs more than ``memory_bytes`` to train on
    the CPU: a mistyped ``high = 100000`` drew 4.6e9 weights, and Linux's overcommit let it hang the machine
    for minutes, silent, with no config failing. (A GPU refuses what it cannot hold: that config fails.)"""
    if "mlp" not in _support(space.params, "model", "mlp") or "hidden" not in space.params:
        return
    outputs = dataset.n_classes * (getattr(dataset.task, "positions", 0) or 1)

    def weights(widths) -> int:
        layers = [dataset.n_features, *[int(w) for w in widths], outputs]
        return sum(a * b for a, b in zip(layers, layers[1:], strict=False))

    hidden = space.params["hidden"]
    widest = max(hidden.support(), key=weights)
    need = weights(widest) * BYTES_PER_WEIGHT
    fix = "lower [hidden] high (or the layers)" if hasattr(hidden, "high") else "use narrower [hidden] widths"
    if need > memory_bytes:
        raise UsageError(f"search space {space.name!r}: [hidden] can draw {list(widest)}, {weights(widest):.2g} "
                         f"weights on {dataset.n_features} inputs: about {need / 2**30:,.0f} GiB to train (weights, "
                         f"gradients, Adam's moments), more than this machine's {memory_bytes / 2**30:.0f} GiB; {fix}")


def probe_first_config(start: str, build: Callable, rows, expected: tuple, *, given: str, unit: str, needs: str,
                       per_class: str, fix: str = "") -> None:
    """Build a net with ``build()`` and run ``rows`` (``unit``: "rows", "images") through its module: a
    constructor or forward that raises (``given``: what it was given; ``fix``: what to do), or an output
    that is not float logits of shape ``expected`` (``needs``: "... needs logits (n, K)"; ``per_class``:
    what a logit is), is refused in one line beginning ``start``."""
    import torch

    try:
        net = build()
        net.initialize()
        with torch.no_grad():
            out = net.module_(rows)
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - the module's code, yours included, whatever it raises
        raise UsageError(f"{start} fails on the first config {given}: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:160] if str(exc) else ''}{fix}") from None
    if not torch.is_tensor(out):  # a tuple (logits, features), a dict: it said "tuple of shape ()"
        raise UsageError(f"{start} returns {type(out).__name__}, not a tensor, for {len(rows)} {unit}; {needs}: "
                         "return only the logits from forward")
    shape = tuple(out.shape)
    if shape == expected and not torch.is_floating_point(out):
        raise UsageError(f"{start} returns {out.dtype} values; {needs.replace('logits', 'float logits', 1)}: "
                         "return the last layer's output as it is")
    if shape != expected:
        raise UsageError(f"{start} returns a tensor of shape {shape} for {len(rows)} {unit}; {needs}: {per_class}")


def check_modules_for_data(space, dataset, where: str | None = None, seed: int = 0) -> None:
    """Build each of your modules the space names with the first config's values on ``dataset``'s
    shape and run two blank images through it: a constructor that raises or an output that is not
    ``(n, K)`` (``(n, positions, K)``) is refused before the search, in one line naming the space
    (``where``: its file) and the module."""
    import torch

    from ..training.net import make_net
    from .search_space import ParamGenerator

    first = ParamGenerator(space, seed).sample(0)  # the search's own first config
    positions = dataset.task.positions
    expected = (2, positions, dataset.n_classes) if positions else (2, dataset.n_classes)
    what = f"(n, {positions}, {dataset.n_classes})" if positions else f"(n, {dataset.n_classes})"
    for kind in _support(space.params, "model", "mlp"):
        if not is_user_model(kind):
            continue
        start = f"{param('space')} {where}: model {kind!r}" if where else f"search space {space.name!r}: model {kind!r}"
        keys = {k: first[k] for k in module_keys(kind) if k in first}
        probe_first_config(
            start, lambda kind=kind: make_net({**first, "model": kind}, dataset, patience=0, max_epochs=1),
            torch.zeros((2, *dataset.image_shape)), expected,
            given=f"({keys}) with {dataset.image_shape} images", unit="images", needs=f"hpsearch needs logits {what}",
            per_class=f"one score per class of {dataset.name} ({dataset.n_classes} classes, "
                      f"n_classes={dataset.n_classes})", fix="; fix the module or the space's ranges")
