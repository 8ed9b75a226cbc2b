"""The registry behind ``hpsearch plot <method> RUN_DIR``: every picture the CLI can draw.

Each entry names a method, says when it applies to a winner (``applies(module) -> None`` when it
does, else the reason it is skipped) and draws it (``draw(net, dataset, options) -> {stem: Figure}``;
the CLI saves each Figure as ``<run>/<stem>.png``). Library functions stay in their own modules
(neurons, evaluation, attribution ...); this file only wires them to the command line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["PlotMethod", "PlotOptions", "REGISTRY", "register", "always"]


@dataclass
class PlotOptions:
    """What the CLI passes to every method."""

    n_images: int = 8          # images to explain, for per-image methods
    units: int = 25            # units per layer, for neuron pictures
    target: int | None = None  # class to explain; None = the predicted one
    seed: int = 0
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PlotMethod:
    name: str
    draw: Callable  # (net, dataset, options) -> dict[str, Figure]
    applies: Callable  # (module) -> None | str (the reason it does not apply)
    help: str = ""


REGISTRY: dict[str, PlotMethod] = {}


def always(module) -> None:
    return None


def register(name: str, draw: Callable, applies: Callable = always, help: str = "") -> None:
    REGISTRY[name] = PlotMethod(name, draw, applies, help)


# --- neuron pictures and how-the-winner-does (the retrain/winner work registers here) ---

# --- CNN explanations (the CNN/attribution work registers here) ---
