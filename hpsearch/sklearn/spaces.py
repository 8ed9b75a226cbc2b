"""An hpsearch ``SearchSpace`` as ``param_distributions``: its configs compiled to the net's parameters.

A space (``load_space("mlp_mnist")``, or ``SearchSpace.from_dict``) draws configs as ``hpsearch
search`` does (``ParamGenerator(space, seed)``: the same configs at the same seed), and each config
becomes skorch parameters through ``make_net``'s own mapping (``hidden`` -> ``module__hidden``,
``optimizer = "sgd"`` -> ``optimizer=torch.optim.SGD``, ``weight_decay`` -> ``optimizer__weight_decay``,
the model kind -> ``module``, the data's shape -> ``module__n_inputs`` / ``module__image_shape``, the
loss -> ``criterion``). Those parameters are the candidate set on the user's net, so any skorch
``NeuralNetClassifier`` takes them; ``cv_results_["config"]`` keeps each row's config as the space
wrote it, and ``best_config_`` the best one's.

What a space says through hpsearch's own training loop (a learning-rate schedule, augmentation, the
worst-class loss's rounds) is not a net parameter: such a space is refused, naming the skorch way
(a callback on your net) or ``hpsearch search``.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import UsageError
from ..space.distributions import Constant
from ..space.search_space import ParamGenerator, SearchSpace
from .continuing import described
from .fitting import seed_of

__all__ = ["is_space", "check_space_door", "check_space_on_rows", "net_params", "space_configs", "config_column"]

# the space's words that act through hpsearch's training loop, not through a net parameter, and what
# a value of theirs other than the harmless one would need
_LOOP_ONLY = {
    "schedule": ("none", "add a skorch LRScheduler callback to your net"),
    "augment": ("none", "augment in your net's dataset or iterator_train"),
}
_NET_KEYS = ("lr", "batch_size")


def is_space(param_distributions) -> bool:
    return isinstance(param_distributions, SearchSpace)


def _values(space: SearchSpace, key: str) -> tuple:
    dist = space.params.get(key)
    if dist is None:
        return ()
    return (dist.value,) if isinstance(dist, Constant) else tuple(dist.support())


def check_space_door(space: SearchSpace) -> None:
    """Refuse, in one line before any training, a space the estimators cannot express as net parameters."""
    if "max_epochs" in space.params:
        raise UsageError(f"search space {space.name!r} names max_epochs, the budget the search gives each candidate; "
                         "remove it (the net's own max_epochs, or max_resources, is the full budget)")
    for key, (harmless, how) in _LOOP_ONLY.items():
        drawn = [v for v in _values(space, key) if v != harmless]
        if drawn:
            raise UsageError(f"search space {space.name!r} draws {key} {drawn[0]!r}, which hpsearch's own training "
                             f"loop applies, not a net parameter; {how}, or run the space with `hpsearch search`")
    if "worst_class" in _values(space, "loss"):
        raise UsageError(f"search space {space.name!r} draws loss 'worst_class', whose rounds run in hpsearch's own "
                         "training loop; use loss 'ce' or 'bce' here, or run the space with `hpsearch search`")


def _shape(X) -> tuple[int, tuple | None]:
    """Features per row and, for images ``(n, C, H, W)`` (or ``(n, H, W)``: one channel), their shape."""
    shape = tuple(int(v) for v in np.shape(X)[1:])
    if len(shape) == 2:
        shape = (1, *shape)
    return math.prod(shape), (shape if len(shape) == 3 else None)


def check_space_on_rows(space: SearchSpace, X, y, random_state) -> None:
    """What ``hpsearch search`` checks once its data are loaded, on the rows given to ``fit``: labels that are
    the net's output indices (0..K-1, as the net the space builds has K outputs), a net not too deep for
    the images, and each model kind built with the first config and run on two rows (your module
    included): one that raises or does not give ``(n, K)`` logits is refused in one line, before training."""
    import torch

    from ..space.checks import check_space_for_data, probe_first_config
    from ..training.net import make_net

    labels = np.unique(y)
    if not np.array_equal(labels, np.arange(len(labels))):
        shown = ", ".join(str(v) for v in labels[:6]) + (", ..." if len(labels) > 6 else "")
        raise UsageError(f"y's labels must be 0..{len(labels) - 1} with a SearchSpace (the net it builds has one "
                         f"output per class), got {shown}; encode them: y = LabelEncoder().fit_transform(y), and "
                         "inverse_transform the predictions")
    n_features, image_shape = _shape(X)
    if image_shape is not None:
        check_space_for_data(space, image_shape)
    first = ParamGenerator(space, seed_of(random_state)).sample(0)  # the search's own first config
    rows = torch.as_tensor(np.asarray(X[:2]))
    hint = " (images go in as (n, C, H, W): X[:, None] adds grey images' channel axis)" if np.ndim(X) != 4 else ""
    for kind in _values(space, "model") or ("mlp",):
        probe_first_config(
            f"search space {space.name!r}: model {kind!r}",
            lambda kind=kind: make_net({**first, "model": kind}, n_features, len(labels), image_shape=image_shape,
                                       patience=0),
            rows, (len(rows), len(labels)), given=f"with X of shape {np.shape(X)}{hint}", unit="rows",
            needs=f"the search needs logits ({len(rows)}, {len(labels)})", per_class="one score per class of y")


def net_params(config: dict, X, y) -> dict:
    """The skorch parameters ``make_net`` gives ``config`` on data shaped like ``X`` with ``y``'s classes:
    the module and its arguments, the optimizer and its, the criterion and its, ``lr`` and ``batch_size``."""
    from ..training.net import make_net

    n_features, image_shape = _shape(X)
    net = make_net(config, n_features, len(np.unique(y)), image_shape=image_shape, patience=0)
    made = net.get_params(deep=False)
    params = {k: v for k, v in made.items() if k in ("module", "optimizer", "criterion", *_NET_KEYS)
              or k.startswith(("module__", "optimizer__", "criterion__"))}
    if "criterion__head" in made:  # probabilities that sum to 1 per label, for every head
        params["predict_nonlinearity"] = made["predict_nonlinearity"]
    return params


def space_configs(space: SearchSpace, n: int, random_state) -> list[dict]:
    """The first ``n`` configs ``hpsearch search --seed`` draws (``random_state``: an int, else 0)."""
    return ParamGenerator(space, seed=seed_of(random_state)).gen_values(int(n))


def config_column(params: list[dict], configs: list[dict], compiled: list[dict]) -> list[dict | None]:
    """Each ``cv_results_`` row's config: the one whose compiled parameters its ``params`` hold."""
    def key(p: dict) -> str:
        return repr(described({k: v for k, v in p.items() if k != "max_epochs"}))

    by_params = {key(c): config for config, c in zip(configs, compiled, strict=True)}
    return [by_params.get(key(p)) for p in params]
