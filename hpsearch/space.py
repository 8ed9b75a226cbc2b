"""Search spaces: distributions over hyperparameters, read from TOML, and the ParamGenerator that
samples configurations from them reproducibly.

A space file maps each hyperparameter to either a constant or a table naming a distribution::

    model = "mlp"
    batch_size = 128

    [lr]
    distribution = "log_uniform"     # 10 ** U[log10(low), log10(high)]
    low = 1e-4
    high = 1e-1

    [hidden]
    distribution = "decreasing_int"  # widths h1 > h2 > ... each in [low, high]
    layers = 2                       # or [min, max] to sample the depth too
    low = 50
    high = 600

Every value a space can draw is checked when it is read (``hpsearch.space_checks``), so a space
that cannot train is refused at once rather than scoring NaN config after config.

Config ``i`` of a seed is drawn from its own random stream, so ``gen_values(n)[:k]`` equals
``gen_values(k)``: a resumed or extended search draws the configs an uninterrupted one would.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UsageError, did_you_mean
from .space_checks import check_space, check_space_for_data

__all__ = [
    "SearchSpace", "ParamGenerator", "load_space", "Uniform", "LogUniform", "IntUniform",
    "Categorical", "DecreasingInts", "Constant", "PARAMETERS", "SEARCHES_DIR", "check_space_for_data",
]

SEARCHES_DIR = Path(__file__).resolve().parent.parent / "searches"

# Every hyperparameter a space may name, and what it means. A model-specific name needs a model
# kind in the space that takes it, and every value the space can draw must be one the model (or
# the optimizer) accepts (hpsearch.space_checks; the image size is checked once the data are loaded).
PARAMETERS: dict[str, str] = {
    "model": "model kind: 'mlp', 'cnn' or 'gapcnn' (categorical to mix kinds in one search)",
    "hidden": "hidden-layer widths of an MLP (decreasing)",
    "dropout": "dropout probability after each hidden layer",
    "lr": "learning rate",
    "weight_decay": "L2 penalty (the optimizer's weight_decay)",
    "optimizer": "'adam', 'rmsprop', 'sgd' or 'adamw'",
    "batch_size": "mini-batch size",
    "max_epochs": "maximum number of training epochs",
    "negative_slope": "LeakyReLU slope for negative inputs",
    "momentum": "momentum of SGD or RMSprop",
    "filters": "output channels of each convolution of a CNN or GAP-CNN, e.g. [32, 32, 64, 64]",
    "block_size": "convolutions per pooling block of a CNN (conv-conv-pool: 2)",
    "dense": "widths of the dense layers after a CNN's convolutions, e.g. [256]",
    "conv_dropout": "dropout after each pooling step of a CNN",
    "batch_norm": "batch normalization after each convolution (true/false)",
    "kernel_size": "odd kernel size of every convolution",
    "pool_after": "2x2 max-pool after these convolutions of a GAP-CNN (from 1), e.g. [2]",
    "loss": "'ce' (cross-entropy) or 'worst_class' (extra weight on the currently worst classes)",
    "rounds": "rounds of a worst_class loss (epochs = rounds x round_epochs)",
    "round_epochs": "epochs per round of a worst_class loss; the worst classes are re-picked after each",
    "worst_weight": "weight (>= 0) of a worst_class loss's extra cross-entropy on the worst classes",
    "schedule": "learning-rate schedule over the fit's epochs: 'none', 'cosine', 'step', 'plateau' or 'onecycle'",
    "augment": "augmentation of training batches: 'none', 'flip', 'flip-crop' or 'flip-crop-noise'",
}


def _number(table: Mapping, key: str, name: str) -> float:
    if key not in table:
        raise UsageError(f"[{name}] needs '{key}'; add e.g. {key} = 1")
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UsageError(f"[{name}] {key} must be a finite number, got {value!r}")
    return value


def _range(table: Mapping, name: str, positive: bool = False) -> tuple[float, float]:
    low, high = _number(table, "low", name), _number(table, "high", name)
    if positive and low <= 0:
        raise UsageError(
            f"[{name}] a log range needs 0 < low < high, got low = {low!r}; use a positive low "
            "such as 1e-6 (or distribution = 'uniform' to allow zero)"
        )
    if not low < high:
        hint = "; did you swap them?" if low > high else "; use a constant for a fixed value"
        raise UsageError(f"[{name}] must satisfy low < high, got ({low!r}, {high!r}){hint}")
    return low, high


def _int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{what} must be a whole number, got {value!r}")
    return value


# Each distribution's ``support()`` lists the values a check must pass so that every draw does:
# its constant, its choices, or the extremes of its range (the allowed sets are intervals, or the
# odd numbers of one for kernel_size, so a range's ends and the value after its low decide).

@dataclass(frozen=True)
class Constant:
    value: Any
    distribution = "constant"

    def sample(self, rng: np.random.Generator):
        return self.value

    def support(self) -> tuple:
        return (self.value,)


@dataclass(frozen=True)
class Uniform:
    low: float
    high: float
    distribution = "uniform"

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high))

    def support(self) -> tuple:
        return float(self.low), float(self.high)


@dataclass(frozen=True)
class LogUniform:
    """``10 ** U[log10(low), log10(high)]``: every decade equally likely, as in the Lab 3 seed."""

    low: float
    high: float
    distribution = "log_uniform"
    support = Uniform.support

    def sample(self, rng: np.random.Generator) -> float:
        return float(10 ** rng.uniform(math.log10(self.low), math.log10(self.high)))


@dataclass(frozen=True)
class IntUniform:
    """A whole number in [low, high], both included."""

    low: int
    high: int
    distribution = "int_uniform"

    def sample(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.low, self.high + 1))

    def support(self) -> tuple:
        return tuple(sorted({self.low, min(self.low + 1, self.high), self.high}))


@dataclass(frozen=True)
class Categorical:
    choices: tuple
    p: tuple[float, ...] | None = None
    distribution = "categorical"

    def sample(self, rng: np.random.Generator):
        return self.choices[int(rng.choice(len(self.choices), p=self.p))]

    def support(self) -> tuple:
        return self.choices


@dataclass(frozen=True)
class DecreasingInts:
    """Strictly decreasing widths, each in [low, high]: ``h1 ~ U{low+L-1 .. high}``, then each
    next ``h ~ U{low+left .. previous-1}`` (the seed's ``Nh2 = randint(Nh_min, Nh1)``)."""

    low: int
    high: int
    min_layers: int
    max_layers: int
    distribution = "decreasing_int"

    def support(self) -> tuple:
        """The shortest list of the smallest widths and the longest of the largest."""
        return (list(range(self.low + self.min_layers - 1, self.low - 1, -1)),
                list(range(self.high, self.high - self.max_layers, -1)))

    def sample(self, rng: np.random.Generator) -> list[int]:
        layers = int(rng.integers(self.min_layers, self.max_layers + 1))
        widths, upper = [], self.high + 1
        for left in range(layers - 1, -1, -1):
            width = int(rng.integers(self.low + left, upper))
            widths.append(width)
            upper = width
        return widths


def _distribution(name: str, spec):
    if not isinstance(spec, Mapping):
        if isinstance(spec, list):
            spec = tuple(spec)
        return Constant(spec)
    unknown = set(spec) - {"distribution", "low", "high", "choices", "p", "layers"}
    if unknown:
        key = sorted(unknown)[0]
        raise UsageError(f"[{name}] has unknown key {key!r}; allowed: distribution, low, high, "
                         f"choices, p, layers{did_you_mean(key, ['low', 'high', 'choices', 'p'])}")
    kind = spec.get("distribution")
    kinds = ("uniform", "log_uniform", "int_uniform", "categorical", "decreasing_int")
    if kind not in kinds:
        raise UsageError(f"[{name}] distribution must be one of {', '.join(kinds)}, got {kind!r}"
                         + (did_you_mean(kind, kinds) if isinstance(kind, str) else ""))
    if kind == "uniform":
        return Uniform(*_range(spec, name))
    if kind == "log_uniform":
        return LogUniform(*_range(spec, name, positive=True))
    if kind == "int_uniform":
        low, high = _range(spec, name)
        return IntUniform(_int(low, f"[{name}] low"), _int(high, f"[{name}] high"))
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise UsageError(f"[{name}] needs a non-empty list 'choices', got {choices!r}")
        p = spec.get("p")
        if p is not None:
            if not isinstance(p, list) or len(p) != len(choices):
                raise UsageError(f"[{name}] p must list one probability per choice "
                                 f"({len(choices)}), got {p!r}")
            if any(not isinstance(v, int | float) or v < 0 for v in p) or abs(sum(p) - 1) > 1e-9:
                raise UsageError(f"[{name}] probabilities p must be >= 0 and sum to 1, got {p!r} "
                                 f"(sum {sum(v for v in p if isinstance(v, int | float)):g}); "
                                 "rescale them")
            p = tuple(float(v) for v in p)
        return Categorical(tuple(tuple(c) if isinstance(c, list) else c for c in choices), p)
    # decreasing_int
    low, high = _range(spec, name)
    low, high = _int(low, f"[{name}] low"), _int(high, f"[{name}] high")
    layers = spec.get("layers", 1)
    lo_l, hi_l = (layers, layers) if not isinstance(layers, list) else tuple(layers + [None])[:2]
    lo_l, hi_l = _int(lo_l, f"[{name}] layers"), _int(hi_l, f"[{name}] layers")
    if not 1 <= lo_l <= hi_l:
        raise UsageError(f"[{name}] layers must be >= 1 (or [min, max] with 1 <= min <= max), "
                         f"got {layers!r}")
    if low < 1 or high - low + 1 < hi_l:
        raise UsageError(f"[{name}] needs 1 <= low and room for {hi_l} strictly decreasing widths "
                         f"in [{low}, {high}]; widen the range or use fewer layers")
    return DecreasingInts(low, high, lo_l, hi_l)


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space: hyperparameter name -> distribution (or Constant)."""

    params: dict
    source: str = ""
    name: str = "space"

    def __post_init__(self):
        check_space(self.params)

    @classmethod
    def from_dict(cls, spec: Mapping, name: str = "space", source: str = "") -> SearchSpace:
        unknown = [k for k in spec if k not in PARAMETERS]
        if unknown:
            key = unknown[0]
            raise UsageError(
                f"unknown hyperparameter {key!r} in search space {name!r}"
                f"{did_you_mean(key, PARAMETERS)} Allowed: {', '.join(PARAMETERS)}"
            )
        params = {key: _distribution(key, value) for key, value in spec.items()}
        params.setdefault("model", Constant("mlp"))
        return cls(params, source, name)

    def constant(self, key: str, default=None):
        dist = self.params.get(key)
        return dist.value if isinstance(dist, Constant) else default


def load_space(path_or_name: str | os.PathLike) -> SearchSpace:
    """Read a TOML space from a path, or by name from ``searches/`` (``"mlp_mnist"``)."""
    path = Path(path_or_name)
    if not path.is_file() and not path.suffix:
        candidate = SEARCHES_DIR / f"{path}.toml"
        if candidate.is_file():
            path = candidate
    if not path.is_file():
        known = sorted(p.stem for p in SEARCHES_DIR.glob("*.toml"))
        raise UsageError(f"--space {path_or_name}: no such file; give a TOML path or one of "
                         f"{', '.join(known)}")
    try:
        text = path.read_bytes().decode("utf-8-sig")  # a byte-order mark (Notepad's "UTF-8 with BOM") is fine
    except UnicodeDecodeError as exc:
        raise UsageError(f"--space {path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                         f"{exc.start}: {exc.reason}); save it as UTF-8") from None
    except OSError as exc:
        raise UsageError(f"--space {path}: cannot be read ({exc.strerror}); check its permissions") from None
    try:
        spec = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"--space {path}: not valid TOML: {exc}") from None
    try:
        return SearchSpace.from_dict(spec, name=path.stem, source=text)
    except UsageError as exc:
        raise UsageError(f"--space {path}: {exc}") from None


class ParamGenerator:
    """Samples configurations (plain dicts) from a search space, as the Lab 3 ``Param_generator``.

    Parameters
    ----------
    space : SearchSpace, mapping or path
        The space; a mapping is validated like a TOML file, a path is read with ``load_space``.
    seed : int
        Config ``i`` is drawn from ``numpy.random.default_rng([seed, i])``.
    """

    def __init__(self, space, seed: int = 0):
        self.space = space
        self.seed = seed

    @property
    def space_(self) -> SearchSpace:
        if isinstance(self.space, SearchSpace):
            return self.space
        if isinstance(self.space, Mapping):
            return SearchSpace.from_dict(self.space)
        return load_space(self.space)

    def sample(self, index: int) -> dict:
        """Config number ``index`` (0-based) of this seed."""
        rng = np.random.default_rng([self.seed, index])
        return {key: dist.sample(rng) for key, dist in sorted(self.space_.params.items())}

    def gen_values(self, n: int) -> list[dict]:
        """The first ``n`` configs."""
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise UsageError(f"n must be a whole number >= 0, got {n!r}")
        space = self.space_
        return [ParamGenerator(space, self.seed).sample(i) for i in range(n)]
