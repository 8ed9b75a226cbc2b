"""The distributions a search space draws from, and how a TOML table names one.

Each distribution samples from a numpy ``Generator`` and lists its ``support()``: the values a
check must pass so that every draw does (its constant, its choices, or the extremes of its range;
the allowed sets are intervals, or the odd numbers of one for kernel_size, so a range's ends and
the value after its low decide).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import UsageError, did_you_mean, unquote_hint

__all__ = ["Constant", "Uniform", "LogUniform", "IntUniform", "Categorical", "DecreasingInts", "IntLists",
           "distribution_from"]

def _number(table: Mapping, key: str, name: str) -> float:
    if key not in table:
        raise UsageError(f"[{name}] needs '{key}'; add e.g. {key} = 1")
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UsageError(f"[{name}] {key} must be a finite number, got {value!r}{unquote_hint(value)}")
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


@dataclass(frozen=True)
class IntLists:
    """``layers`` whole numbers, each drawn on its own from ``low, low + step, ..., high`` (the
    Triple-MNIST seed's filters per convolution: 32 to 128 in steps of 32)."""

    low: int
    high: int
    step: int
    layers: int
    distribution = "int_list"

    def grid(self) -> range:
        return range(self.low, self.high + 1, self.step)

    def support(self) -> tuple:
        return [self.low] * self.layers, [self.grid()[-1]] * self.layers

    def sample(self, rng: np.random.Generator) -> list[int]:
        grid = self.grid()
        return [int(grid[int(i)]) for i in rng.integers(0, len(grid), self.layers)]


def _int_lists(spec: Mapping, name: str) -> IntLists:
    low, high = _range(spec, name)
    low, high = _int(low, f"[{name}] low"), _int(high, f"[{name}] high")
    step, layers = _int(spec.get("step", 1), f"[{name}] step"), _int(spec.get("layers", 1), f"[{name}] layers")
    if low < 1 or step < 1 or layers < 1:
        raise UsageError(f"[{name}] int_list needs low >= 1, step >= 1 and layers >= 1, got low = {low}, "
                         f"step = {step}, layers = {layers}")
    if (high - low) % step:
        raise UsageError(f"[{name}] high - low must be a multiple of step: [{low}, {high}] in steps of {step} "
                         f"never reaches {high}; use high = {low + (high - low) // step * step}")
    return IntLists(low, high, step, layers)


KEYS_OF = {"uniform": ("low", "high"), "log_uniform": ("low", "high"), "int_uniform": ("low", "high"),
           "categorical": ("choices", "p"), "decreasing_int": ("low", "high", "layers"),
           "int_list": ("low", "high", "step", "layers")}


def _check_keys_of(kind: str, spec: Mapping, name: str) -> None:
    """A key another distribution reads is an error here: ``step = 16`` on an int_uniform drew 141 and 137
    without a word, a space other than the one written."""
    for key in spec:
        if key != "distribution" and key not in KEYS_OF[kind]:
            owners = [k for k, keys in KEYS_OF.items() if key in keys]
            raise UsageError(f"[{name}] {kind} takes no {key!r} (it takes {', '.join(KEYS_OF[kind])}); {key!r} "
                             f"is read by {' and '.join(owners)} only: remove it, or choose that distribution"
                             + (" (or a categorical listing the values: choices = [16, 32, 48])"
                                if key == "step" else ""))


def distribution_from(name: str, spec):
    """The distribution (or Constant) that TOML value ``spec`` of hyperparameter ``name`` names."""
    if not isinstance(spec, Mapping):
        if isinstance(spec, list):
            spec = tuple(spec)
        return Constant(spec)
    unknown = set(spec) - {"distribution", *(key for keys in KEYS_OF.values() for key in keys)}
    if unknown:
        key = sorted(unknown)[0]
        hint = did_you_mean(key, ["low", "high", "choices", "p", "step"]) or (
            f"; in TOML a 'name = value' line after [{name}] belongs to that table: put {key} above the first "
            "[table]")
        raise UsageError(f"[{name}] has unknown key {key!r}; allowed: distribution, low, high, "
                         f"choices, p, layers, step{hint}")
    kind = spec.get("distribution")
    kinds = ("uniform", "log_uniform", "int_uniform", "categorical", "decreasing_int", "int_list")
    if kind not in kinds:
        raise UsageError(f"[{name}] distribution must be one of {', '.join(kinds)}, got {kind!r}"
                         + (did_you_mean(kind, kinds) if isinstance(kind, str) else ""))
    _check_keys_of(kind, spec, name)
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
    if kind == "int_list":
        return _int_lists(spec, name)
    # decreasing_int
    low, high = _range(spec, name)
    low, high = _int(low, f"[{name}] low"), _int(high, f"[{name}] high")
    layers = spec.get("layers", 1)
    if isinstance(layers, list) and len(layers) != 2:  # [] was a traceback, [1, 2, 3] read as [1, 2]
        raise UsageError(f"[{name}] layers must be a whole number or [min, max], got {layers!r}")
    lo_l, hi_l = (layers, layers) if not isinstance(layers, list) else tuple(layers)
    lo_l, hi_l = _int(lo_l, f"[{name}] layers"), _int(hi_l, f"[{name}] layers")
    if not 1 <= lo_l <= hi_l:
        raise UsageError(f"[{name}] layers must be >= 1 (or [min, max] with 1 <= min <= max), "
                         f"got {layers!r}")
    if low < 1 or high - low + 1 < hi_l:
        raise UsageError(f"[{name}] needs 1 <= low and room for {hi_l} strictly decreasing widths "
                         f"in [{low}, {high}]; widen the range or use fewer layers")
    return DecreasingInts(low, high, lo_l, hi_l)
