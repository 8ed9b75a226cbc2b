"""Pictures of what a trained classifier learned and how it does; each plot returns a Figure.

The CNN methods live in submodules loaded on first use (``hpsearch.viz.attribution.cam``,
``hpsearch.viz.conv.feature_maps``, ...), so ``import hpsearch.viz`` stays light.
"""

import importlib

from .fonts import use_fallback_fonts

use_fallback_fonts()  # before any figure: class names in scripts DejaVu Sans lacks (零) are drawn, not boxes

from .evaluation import (  # noqa: E402
    class_report,
    learning_curves,
    misclassified,
    plot_class_report,
    plot_confusion_matrix,
    plot_learning_curves,
    plot_misclassified,
)
from .neurons import (  # noqa: E402
    box_maximizer,
    maximize_activation,
    plot_maximizers,
    plot_receptive_fields,
    receptive_fields,
    unit_activations,
)

__all__ = [
    "receptive_fields", "box_maximizer", "maximize_activation", "unit_activations",
    "plot_receptive_fields", "plot_maximizers",
    "class_report", "misclassified", "learning_curves", "plot_confusion_matrix", "plot_class_report",
    "plot_misclassified", "plot_learning_curves",
]

_SUBMODULES = ("attribution", "conv", "conv_plots", "heatmaps", "plots", "evaluation", "neurons")


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
