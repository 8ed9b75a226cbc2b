"""The registry behind ``hpsearch plot <method> RUN_DIR``: every picture the CLI can draw.

Each entry names a method, says when it applies to a winner (``applies(module) -> None`` when it
does, else the reason it is skipped) and draws it (``draw(net, dataset, options) -> {stem: Figure}``;
the CLI saves each Figure as ``<run>/<stem>.png``; a ``str`` value is text saved as ``<run>/<stem>``,
e.g. ``{"class_report.csv": "..."}``). Library functions stay in their own modules
(neurons, evaluation, attribution ...); this file only wires them to the command line.

A winner with one label per position (``module.positions > 0``, Triple-MNIST) gets the pictures of
``hpsearch.viz.positions`` under the same names (one confusion matrix, class report and heat map per
position); the methods that explain one class per image (MLP receptive fields and maximizers, CAM)
do not apply to it and say why.
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


def _positions(module) -> int:
    """The positions of a net (a module or a skorch net) with one label per position, else 0."""
    return int(getattr(getattr(module, "module_", module), "positions", 0) or 0)


def single_label(applies: Callable, why: str, first: bool = False) -> Callable:
    """``applies``, refusing also a net with one label per position, for the reason ``why``:
    after ``applies``' own reason (an MLP picture on a CNN says it needs an MLP), or before it
    with ``first``."""
    def check(module):
        reason = None if first else applies(module)
        if reason is not None:
            return reason
        if _positions(module):
            return f"the winner gives one label per position ({_positions(module)} positions), and {why}"
        return applies(module) if first else None
    return check


def register(name: str, draw: Callable, applies: Callable = always, help: str = "") -> None:
    REGISTRY[name] = PlotMethod(name, draw, applies, help)


# --- neuron pictures and how-the-winner-does (the retrain/winner work registers here) ---


def _mlp_only(module):
    from .neurons import mlp_only

    return mlp_only(module)


def _layer_stems(net, prefix: str) -> list[tuple[int, str]]:
    from .neurons import mlp_linears

    n = len(mlp_linears(net))
    return [(i, f"{prefix}_layer{i + 1}" if i < n - 1 else f"{prefix}_output") for i in range(n)]


def _draw_receptive_fields(net, dataset, options):
    from .neurons import plot_receptive_fields

    return {stem: plot_receptive_fields(net, i, options.units, class_names=dataset.class_names,
                                        image_shape=dataset.image_shape)
            for i, stem in _layer_stems(net, "receptive_fields")}


def _draw_maximizers(net, dataset, options):
    from .neurons import plot_maximizers

    kw = dict(class_names=dataset.class_names, image_shape=dataset.image_shape,
              steps=options.extra.get("steps", 200), lr=options.extra.get("lr", 0.05))
    figures = {}
    for i, stem in _layer_stems(net, "maximizers"):
        figures[stem] = plot_maximizers(net, i, options.units, **kw)
        if i == 0:  # the seed's exact maximizer of a first-layer unit
            figures[stem + "_box"] = plot_maximizers(net, i, options.units, method="box", **kw)
    return figures


def _test_predictions(net, dataset, options):
    """predict_proba on the test set, computed once per CLI call (cached in ``options.extra``)."""
    key = ("_test_proba", id(net))
    if key not in options.extra:
        options.extra[key] = net.predict_proba(dataset.X_test)
    proba = options.extra[key]
    return proba, proba.argmax(-1)  # (n,) classes, or (n, positions)


def _draw_confusion_matrix(net, dataset, options):
    from .evaluation import plot_confusion_matrix
    from .positions import plot_position_confusion

    _, pred = _test_predictions(net, dataset, options)
    draw = plot_position_confusion if pred.ndim == 2 else plot_confusion_matrix
    return {"confusion_matrix": draw(dataset.y_test, pred, dataset.class_names)}


def _draw_class_report(net, dataset, options):
    from .evaluation import class_report, plot_class_report
    from .positions import plot_position_report, position_report

    _, pred = _test_predictions(net, dataset, options)
    report, draw = (position_report, plot_position_report) if pred.ndim == 2 else (class_report, plot_class_report)
    text, table = report(dataset.y_test, pred, dataset.class_names)
    return {"class_report": draw(table), "class_report.txt": text,
            "class_report.csv": table.to_csv(float_format="%.6f")}


def _draw_misclassified(net, dataset, options):
    from .evaluation import plot_misclassified
    from .positions import plot_position_misclassified

    proba, pred = _test_predictions(net, dataset, options)
    draw = plot_position_misclassified if pred.ndim == 2 else plot_misclassified
    return {"misclassified": draw(dataset.X_test, dataset.y_test, pred, dataset.class_names,
                                  proba=proba, n=options.n_images)}


def _draw_learning_curves(net, dataset, options):
    from .evaluation import plot_learning_curves

    label = getattr(net, "winner_", {}).get("valid_label")
    return {"learning_curves": plot_learning_curves(net.history, valid_label=label)}


_PER_CLASS = "its output units are (position, digit) pairs, not the classes these pictures label"
register("receptive-fields", _draw_receptive_fields, single_label(_mlp_only, _PER_CLASS),
         "MLP: the first --units units of each hidden layer and every class, weights (products for deeper layers)")
register("maximizers", _draw_maximizers, single_label(_mlp_only, _PER_CLASS),
         "MLP: images in [0, 1] maximizing each unit (gradient ascent; exact box for layer 1)")
register("confusion-matrix", _draw_confusion_matrix, always, "test-set confusion matrix")
register("class-report", _draw_class_report, always,
         "per-class precision, recall, F1 on the test set (PNG + .txt + .csv)")
register("misclassified", _draw_misclassified, always,
         "misclassified test images, most confident first (--images of them)")
register("learning-curves", _draw_learning_curves, always, "loss per epoch from the winner's history")

# --- CNN explanations (the CNN/attribution work registers here) ---


def _gap_only(module):
    from .modules import gap_only

    return gap_only(module)


def _conv_only(module):
    from .modules import conv_only

    return conv_only(module)


def _relu_only(module):
    from .modules import relu_only

    return relu_only(module)


def _draw_attribution(method: str, stem: str) -> Callable:
    def draw(net, dataset, options):
        from .heatmaps import plot_attribution
        from .positions import plot_position_attribution

        plot = plot_position_attribution if _positions(net) else plot_attribution
        return {stem: plot(net, dataset.X_test[:options.n_images], method, options.target,
                           class_names=dataset.class_names, **options.extra.get(method, {}))}
    return draw


def _draw_explanations(net, dataset, options):
    from .heatmaps import plot_explanations
    from .modules import gap_only
    from .positions import plot_position_explanations

    methods = ["gradcam", "hirescam", "saliency", "guided_backprop", "occlusion"]
    if gap_only(net) is None:
        methods.insert(0, "cam")
    plot = plot_position_explanations if _positions(net) else plot_explanations
    return {"explanations": plot(net, dataset.X_test[:options.n_images], methods, options.target,
                                 class_names=dataset.class_names,  # --layer: its Grad-CAM and HiResCAM columns too
                                 options={m: options.extra[m] for m in methods if m in options.extra})}


def _draw_feature_maps(net, dataset, options):
    from .conv import feature_maps
    from .conv_plots import plot_feature_maps

    image = dataset.X_test[0]
    return {"feature_maps": plot_feature_maps(feature_maps(net, image), image)}


def _draw_filters(net, dataset, options):
    from .conv import first_layer_filters
    from .conv_plots import plot_filters

    return {"filters": plot_filters(first_layer_filters(net))}


def _draw_conv_maximizers(net, dataset, options):
    from .conv import conv_layers, conv_maximizers
    from .conv_plots import plot_images

    figures = {}
    for i, (_, conv) in enumerate(conv_layers(net, after_activation=False)):
        images = conv_maximizers(net, dataset.image_shape, layer=i, channels=options.units, seed=options.seed,
                                 steps=options.extra.get("steps", 100))
        figures[f"conv_maximizers_layer{i + 1}"] = plot_images(
            images, titles=[str(c) for c in range(len(images))],
            suptitle=f"conv {i + 1} ({conv.out_channels} channels): images that maximize the first {len(images)}")
    return figures


def _draw_deepdream(net, dataset, options):
    from .conv import deep_dream
    from .conv_plots import plot_deep_dream

    images = dataset.X_test[:options.n_images]
    dreamed = deep_dream(net, images, steps=options.extra.get("steps", 20), seed=options.seed)
    return {"deepdream": plot_deep_dream(images, dreamed)}


register("cam", _draw_attribution("cam", "cam"),
         single_label(_gap_only, "CAM needs a GAP net, which maps each class to one channel (one label per image)",
                      first=True),
         "GAP-CNN: class activation maps sum_k w_ck A_k over --images test images")
register("grad-cam", _draw_attribution("gradcam", "grad_cam"), _conv_only,
         "CNN: Grad-CAM at the last conv layer (Captum) over --images test images")
register("hires-cam", _draw_attribution("hirescam", "hires_cam"), _conv_only,
         "CNN: HiResCAM at the last conv layer (gradient x activation per cell: where a dense head looked)")
register("saliency", _draw_attribution("saliency", "saliency"), always,
         "|gradient| of the explained class's logit per pixel (Captum)")
register("guided-backprop", _draw_attribution("guided_backprop", "guided_backprop"), _relu_only,
         "guided backpropagation (Captum); needs ReLU modules")
register("occlusion", _draw_attribution("occlusion", "occlusion"), always,
         "drop of the class logit when a 3x3 patch (smaller images: their side) is zeroed (Captum)")
register("explanations", _draw_explanations, _conv_only,
         "CNN: input, CAM (GAP nets), Grad-CAM, saliency, guided backprop, occlusion side by side")
register("feature-maps", _draw_feature_maps, _conv_only, "CNN: each conv layer's maps for the first test image")
register("filters", _draw_filters, _conv_only, "CNN: the first conv layer's filters")
register("conv-maximizers", _draw_conv_maximizers, _conv_only,
         "CNN: images in [0, 1] maximizing each conv channel (gradient ascent, jitter, blur)")
register("deepdream", _draw_deepdream, _conv_only,
         "CNN: --images test images DeepDreamed at the last conv layer")

# --- the sanity check of the explanations (Adebayo et al., 2018) ---


def _draw_sanity(net, dataset, options):
    """At most ``sanity.MAX_IMAGES`` (8) of the --images test images: the CLI's default 25 would
    triple the time of ``plot all`` for no change in the verdict."""
    from .attribution import METHODS
    from .sanity import MAX_IMAGES, plot_sanity, sanity_check, verdict_text

    n = min(options.n_images, MAX_IMAGES)
    images, target, note = dataset.X_test[:n], options.target, ""
    if _positions(net):  # one (position, digit) per image, every position in turn: one map per image
        from .positions import cycling_targets, position_names

        target = cycling_targets(net, images)
        if options.target is not None:
            target[:, 1] = int(options.target)
        names = position_names(_positions(net))
        note = (f"One label per position: image i explains position i mod {len(names)} ({names[0]}, ...), "
                "the digit the trained net predicts there.\n")
    frame = sanity_check(net, images, target=target, n_images=n, seed=options.seed,
                         options={k: v for k, v in options.extra.items() if k in METHODS})
    return {"sanity": plot_sanity(frame), "sanity.csv": frame.to_csv(index=False, float_format="%.6f"),
            "sanity.txt": note + verdict_text(frame)}


register("sanity", _draw_sanity, always,
         "sanity check: rank correlation of each method's maps, trained vs layers re-initialized from the "
         "output down (Adebayo et al.); a method that barely changes is flagged (PNG + .csv + .txt)")
