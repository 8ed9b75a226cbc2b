"""The sanity check of the explanations (Adebayo et al., 2018, "Sanity Checks for Saliency Maps").

Cascading randomization: a copy of the winner has its layers re-initialized from the output to the
input, one more at each step, and every explanation method explains the same test images at each
step. A method that explains the model must change its maps as the weights it explains are
destroyed; a method whose maps stay the same (an edge detector, the input itself) shows the image,
not the model. ``sanity_check`` gives the numbers, ``sanity_verdict`` / ``verdict_text`` the flag
per method, ``plot_sanity`` the picture.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from functools import partial

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from scipy.stats import spearmanr
from torch import nn

from ..errors import UsageError
from ..jobs.resources import rng_kept
from .attribution import METHODS, attribute
from .modules import as_batch, as_module, conv_only, gap_only, model_session, relu_only
from .targets import resolve_targets

__all__ = ["THRESHOLD", "MAX_IMAGES", "randomizable_layers", "rank_correlation", "occlusion_options", "sanity_check",
           "sanity_verdict", "verdict_text", "plot_sanity"]

THRESHOLD = 0.5  # mean rank correlation with every layer randomized above this: the method is flagged
MAX_IMAGES = 8  # images explained by default (and at most by ``hpsearch plot sanity``): seconds, not minutes
_APPLIES = {"cam": gap_only, "gradcam": conv_only, "hirescam": conv_only, "guided_backprop": relu_only}
COLUMNS = ["step", "layer", "label", "kind", "method", "spearman_mean", "spearman_std", "n_images"]


def randomizable_layers(model) -> list[tuple[str, nn.Module]]:
    """``(qualified name, module)`` of every layer with parameters of its own and a
    ``reset_parameters`` method (Linear, Conv2d, BatchNorm, ...), from the output to the input
    (the reverse of registration order, which is the forward order of hpsearch's nets)."""
    module = as_module(model)
    layers = [(name, m) for name, m in module.named_modules()
              if any(True for _ in m.parameters(recurse=False)) and callable(getattr(m, "reset_parameters", None))]
    return layers[::-1]


def rank_correlation(trained, randomized) -> np.ndarray:
    """Spearman rank correlation per image between two batches of maps, on absolute values.

    Each map is made one value per pixel: absolute values summed over channels (as Adebayo et al.'s
    main figures, which compare absolute maps: the sign of a gradient flips freely). Ties get
    average ranks (``scipy.stats.spearmanr``).

    A constant map makes Spearman undefined. The rule: two identical maps correlate 1.0 (exactly,
    so step 0 of ``sanity_check`` is 1.0 even for an all-zero map); otherwise a constant map on either
    side (e.g. Grad-CAM all zeros after randomization) counts as 0.0: it no longer carries the trained
    net's ranking of the pixels. A non-finite correlation counts as 0.0 too.

    Returns
    -------
    ndarray (n,) of float64
    """
    a, b = (_per_pixel(m) for m in (trained, randomized))
    if a.shape != b.shape:
        raise UsageError(f"trained and randomized maps must have the same shape, got {a.shape} and {b.shape}")
    out = np.zeros(len(a))
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if np.array_equal(x, y):
            out[i] = 1.0
        elif np.ptp(x) > 0 and np.ptp(y) > 0:
            rho = spearmanr(x, y).statistic
            out[i] = float(rho) if np.isfinite(rho) else 0.0
    return out


def _ranks_pixels(maps) -> np.ndarray:
    """Per image: whether its map ranks the pixels (finite, not constant), so that a change can be measured."""
    flat = _per_pixel(maps)
    return np.isfinite(flat).all(axis=1) & (np.ptp(np.nan_to_num(flat), axis=1) > 0)


def _per_pixel(maps) -> np.ndarray:
    maps = maps.detach().cpu().numpy() if torch.is_tensor(maps) else np.asarray(maps)
    maps = np.abs(maps.astype(np.float64))
    if maps.ndim == 4:
        maps = maps.sum(axis=1)
    return maps.reshape(len(maps), -1)


def occlusion_options(image_shape) -> dict:
    """Occlusion's settings in the sanity check: stride ``ceil(min(H, W) / 10)``, window
    ``max(3, stride)``, at most the shorter side. On 8x8 digits that is ``plot occlusion``'s 3x3
    window moved 1 pixel; on 28x28 images a 3x3 window moved 3 pixels (81 windows instead of 676:
    seconds, not a minute, for the check's every step)."""
    stride = max(1, -(-min(image_shape[-2:]) // 10))
    return {"window": min(max(3, stride), *image_shape[-2:]), "stride": stride}


def _builtin(name: str, kw: dict, module: nn.Module, X: torch.Tensor, target: torch.Tensor):
    return attribute(module, X, name, target.cpu().numpy(), **kw)


def _on_the_copy(original: nn.Module, copied: nn.Module, options: dict | None) -> dict | None:
    """``options`` with each module of ``original`` they hold (Grad-CAM's ``layer``) replaced by the same
    module of ``copied``: the test explains the copy, whose hooks the original's module would never see."""
    if not options:
        return options
    names = {id(m): name for name, m in original.named_modules()}
    return {method: {key: copied.get_submodule(names[id(value)]) if isinstance(value, nn.Module)
                     and id(value) in names else value for key, value in opts.items()}
            for method, opts in options.items()}


def _methods(module: nn.Module, methods, extra, options, image_shape) -> tuple[dict[str, Callable], dict[str, str]]:
    """The callables ``(module, X, target) -> maps`` to run, and the skipped built-ins with why."""
    chosen, skipped = {}, {}
    unknown = [k for k in options or {} if k not in METHODS]
    if unknown:
        raise UsageError(f"options are keyed by method ({', '.join(METHODS)}), got {unknown[0]!r}")
    options = {"occlusion": occlusion_options(image_shape), **(options or {})}
    for name in METHODS if methods is None else methods:
        if name not in METHODS:
            raise UsageError(f"methods must be among {', '.join(METHODS)}, got {name!r}")
        reason = _APPLIES.get(name, lambda m: None)(module)
        if reason is None:
            chosen[name] = partial(_builtin, name, options.get(name, {}))
        elif methods is None:
            skipped[name] = reason
        else:
            raise UsageError(f"method {name!r} does not apply to this net: {reason}")
    for name, fn in (extra or {}).items():
        if not callable(fn):
            raise UsageError(f"extra[{name!r}] must be a callable (module, X, target) -> maps, got {fn!r}")
        chosen[name] = fn
    if not chosen:
        raise UsageError("no explanation method to check; give methods=[...] or extra={name: callable}")
    return chosen, skipped


def sanity_check(model, X, *, methods: Sequence[str] | None = None,
                 extra: Mapping[str, Callable] | None = None, options: Mapping[str, dict] | None = None,
                 target=None, n_images: int = MAX_IMAGES, seed: int = 0,
                 threshold: float = THRESHOLD) -> pd.DataFrame:
    """Cascading randomization: rank correlation between each method's maps of the trained net
    and of the net with its top k layers re-initialized, k = 0 .. every layer.

    The caller's net is never changed: a deep copy is randomized. Step 0 is the trained net (its
    correlation is exactly 1.0); step k re-initializes, cumulatively, the k layers nearest the
    output (``randomizable_layers``) with their own ``reset_parameters()`` after
    ``torch.manual_seed(seed)`` (the global RNG state is restored afterwards), so a layer's random
    weights depend only on ``seed`` and the architecture. Every step explains the class the
    *trained* net predicts (or ``target``), not what the randomized net predicts.

    Parameters
    ----------
    model : torch module or fitted skorch net
    X : array (n, C, H, W)
        Test images; the first ``n_images`` are explained.
    methods : sequence of str, optional
        Built-in methods (``hpsearch.viz.attribution.METHODS``); default: every one that applies
        (CAM on GAP nets, Grad-CAM on CNNs, guided backprop with ReLU modules, saliency, occlusion).
        A named method that does not apply is an error.
    extra : dict name -> callable, optional
        More methods, each ``(module, X, target) -> maps`` with ``X`` a float tensor (n, C, H, W) and
        ``target`` a LongTensor (n,); maps (n, H, W) or (n, C, H, W), array or tensor.
    options : dict method -> dict, optional
        Keyword arguments of a built-in method, e.g. ``{"occlusion": {"stride": 1}}``; occlusion
        defaults to ``occlusion_options(image shape)``.
    target : None, int or sequence of int
        Class to explain; None: the trained net's predicted class per image.
    n_images : int
    seed : int
    threshold : float
        Kept in ``frame.attrs["threshold"]`` for ``sanity_verdict``.

    Returns
    -------
    DataFrame
        One row per (step, method): ``step``, ``layer`` (qualified name of the layer re-initialized
        last, ``"none"`` at step 0), ``label`` (``"trained"``, ``"output"``, ``"layer 2"``, ...
        counting from the input), ``kind`` (its class), ``method``, ``spearman_mean`` and
        ``spearman_std`` over the images, ``n_images`` (those whose trained map ranks the pixels: a
        constant or non-finite trained map is left out, and a method with none left has NaN, said
        untestable). ``attrs`` holds ``images`` (explained), ``untestable`` ({method: images left out}),
        ``threshold``, ``seed``
        and ``skipped`` (built-in methods that do not apply, with the reason).
    """
    if isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 1:
        raise UsageError(f"n_images must be a whole number >= 1, got {n_images!r}")
    net = copy.deepcopy(as_module(model))
    options = _on_the_copy(as_module(model), net, options)  # a --layer names the original's module
    layers = randomizable_layers(net)
    if not layers:
        raise UsageError(f"{type(net).__name__} has no layer with parameters to re-initialize")
    X = as_batch(net, X[:n_images] if getattr(X, "ndim", 0) == 4 else X)[:n_images]
    if len(X) == 0:
        raise UsageError("X holds no image; give at least one test image")
    chosen, skipped = _methods(net, methods, extra, options, X.shape)
    with model_session(net):
        t = resolve_targets(net, X, target)
    fresh = copy.deepcopy(net)
    with rng_kept():  # the caller's draws, a GPU's included, are not reseeded
        torch.manual_seed(seed)
        for _, layer in randomizable_layers(fresh):
            layer.reset_parameters()

    def explain(fn):
        with model_session(net):
            return fn(net, X.clone(), t.clone())

    trained = {name: explain(fn) for name, fn in chosen.items()}
    # an image whose trained map is constant (or not finite) has no ranking of pixels to lose: it is
    # left out of that method's test, not counted as a map that changed
    testable = {name: _ranks_pixels(maps) for name, maps in trained.items()}
    rows = []
    steps = [("none", "trained", "-")] + [(name, "output" if i == 0 else f"layer {len(layers) - i}", type(m).__name__)
                                         for i, (name, m) in enumerate(layers)]
    for step, (layer, label, kind) in enumerate(steps):
        if step:
            net.get_submodule(layer).load_state_dict(fresh.get_submodule(layer).state_dict())
        for method, fn in chosen.items():
            kept = testable[method]
            rho = rank_correlation(trained[method], trained[method] if step == 0 else explain(fn))[kept] \
                if kept.any() else np.zeros(0)
            rows.append({"step": step, "layer": layer, "label": label, "kind": kind, "method": method,
                         "spearman_mean": float(rho.mean()) if len(rho) else float("nan"),
                         "spearman_std": float(rho.std()) if len(rho) else float("nan"), "n_images": len(rho)})
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame.attrs.update(threshold=float(threshold), seed=int(seed), skipped=skipped, images=len(X),
                       untestable={m: int((~k).sum()) for m, k in testable.items() if not k.all()})
    return frame


def sanity_verdict(frame: pd.DataFrame, threshold: float | None = None) -> pd.DataFrame:
    """Per method: the mean correlation with every layer randomized (the last step) and whether it
    is flagged (above ``threshold``, default ``frame.attrs["threshold"]`` or ``THRESHOLD``): its maps
    barely change when the model is destroyed, so they do not explain the model."""
    threshold = frame.attrs.get("threshold", THRESHOLD) if threshold is None else threshold
    last = frame[frame["step"] == frame["step"].max()].set_index("method")
    return pd.DataFrame({"spearman_randomized": last["spearman_mean"],
                         "flagged": last["spearman_mean"] > threshold})


def verdict_text(frame: pd.DataFrame, threshold: float | None = None) -> str:
    """The verdict as plain text, one line per method (and the methods skipped)."""
    threshold = frame.attrs.get("threshold", THRESHOLD) if threshold is None else threshold
    verdict = sanity_verdict(frame, threshold)
    n_layers, n = int(frame["step"].max()), int(frame.attrs.get("images", frame["n_images"].max()))
    lines = [f"Sanity check (cascading randomization, Adebayo et al. 2018): {n_layers} layers re-initialized "
             f"from the output down, seed {frame.attrs.get('seed', 0)}, {n} test images.",
             "Spearman rank correlation of |map| between the trained and the fully randomized net; "
             f"a method above {threshold:g} is flagged: its maps barely change, so they do not explain the model.",
             ""]
    untestable, total = frame.attrs.get("untestable", {}), frame.attrs.get("images", n)
    for method, row in verdict.iterrows():
        rho = row["spearman_randomized"]
        if not np.isfinite(rho):
            lines.append(f"{method}: untestable: its trained map is constant (or not finite) on every one of the "
                         f"{total} images, so no change can be measured")
            continue
        said = (f"> {threshold:g}  FLAGGED: not explaining the model" if row["flagged"]
                else f"<= {threshold:g}  ok: depends on the weights")
        left = untestable.get(method, 0)
        lines.append(f"{method}: {rho:.3f} {said}" + (f" (over {total - left} of {total} images: {left} trained "
                                                       "maps constant, left out)" if left else ""))
    for method, reason in frame.attrs.get("skipped", {}).items():
        lines.append(f"{method}: skipped ({reason})")
    return "\n".join(lines) + "\n"


def plot_sanity(frame: pd.DataFrame, threshold: float | None = None) -> Figure:
    """Mean rank correlation (± std over the images) against cumulative randomization, one line
    per method, the threshold dashed; flagged methods say so in the legend."""
    threshold = frame.attrs.get("threshold", THRESHOLD) if threshold is None else threshold
    flagged = sanity_verdict(frame, threshold)["flagged"]
    steps = frame.drop_duplicates("step").sort_values("step")
    ticks = ["trained"] + [f"+{label}\n{kind}" for label, kind in zip(steps["label"][1:], steps["kind"][1:],
                                                                       strict=True)]
    fig = Figure(figsize=(max(7.5, 3.0 + 0.9 * len(ticks)), 4.5), layout="constrained")
    ax = fig.add_subplot()
    for method, rows in frame.groupby("method", sort=False):
        rows = rows.sort_values("step")
        x, y, s = rows["step"].to_numpy(), rows["spearman_mean"].to_numpy(), rows["spearman_std"].to_numpy()
        name = (f"{method} (FLAGGED)" if flagged[method] else
                f"{method} (untestable: constant maps)" if rows["spearman_mean"].isna().all() else method)
        (line,) = ax.plot(x, y, marker="X" if flagged[method] else "o", label=name)
        ax.fill_between(x, y - s, y + s, color=line.get_color(), alpha=0.15, linewidth=0)
    ax.axhline(threshold, color="grey", linestyle="--", linewidth=1.2, label=f"threshold {threshold:g}")
    ax.set_xticks(steps["step"].to_numpy(), ticks, fontsize=8)
    ax.set_ylim(min(-0.1, float((frame["spearman_mean"] - frame["spearman_std"]).min()) - 0.05), 1.05)
    ax.set_xlabel("layers re-initialized, cumulatively from the output")
    ax.set_ylabel("Spearman rank correlation of |map|\n(trained vs randomized)")
    ax.set_title("Sanity check: maps of the trained vs the randomized net")
    ax.margins(x=0.06)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig
