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

    [filters]
    distribution = "int_list"        # layers whole numbers, each from low, low + step, ..., high
    layers = 3
    low = 32
    high = 128
    step = 32

The distributions are in ``hpsearch.space.distributions``.

Every value a space can draw is checked when it is read (``hpsearch.space.checks``), so a space
that cannot train is refused at once rather than scoring NaN config after config.

Config ``i`` of a seed is drawn from its own random stream, so ``gen_values(n)[:k]`` equals
``gen_values(k)``: a resumed or extended search draws the configs an uninterrupted one would.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UsageError, did_you_mean, param
from ..training.models import is_user_model, module_keys, trust
from ..training.models.user import ModuleImportError, add_module_path, run_folder_holding
from .checks import NET_CHECKS, check_model_kinds, check_space
from .distributions import (
    Categorical,
    Constant,
    distribution_from,
)

__all__ = ["SearchSpace", "ParamGenerator", "load_space", "PARAMETERS", "SEARCHES_DIR", "module_folder"]

SEARCHES_DIR = Path(__file__).resolve().parents[2] / "searches"

# Every hyperparameter a space may name, and what it means. A model-specific name needs a model
# kind in the space that takes it, and every value the space can draw must be one the model (or
# the optimizer) accepts (hpsearch.space.checks; the image size is checked once the data are loaded).
PARAMETERS: dict[str, str] = {
    "model": "model kind: 'mlp', 'cnn' or 'gapcnn', or your own module as \"module:Class\" (mynets.py beside the "
             "space file, built as Class(image_shape=(C, H, W), n_classes=K, **params)); categorical to mix kinds",
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
    "loss": "'ce' (cross-entropy), 'bce' (binary cross-entropy) or 'worst_class' (extra weight on the "
            "currently worst classes)",
    "head": "output activation: 'softmax' or 'sigmoid' (per position for multi-digit labels)",
    "rounds": "rounds of a worst_class loss (epochs = rounds x round_epochs)",
    "round_epochs": "epochs per round of a worst_class loss; the worst classes are re-picked after each",
    "worst_weight": "weight (>= 0) of a worst_class loss's extra cross-entropy on the worst classes",
    "schedule": "learning-rate schedule over the fit's epochs: 'none', 'cosine', 'step', 'plateau' or 'onecycle'",
    "augment": "augmentation of training batches: 'none', 'flip', 'flip-crop' or 'flip-crop-noise'",
}


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
        model = distribution_from("model", spec["model"]) if "model" in spec else Constant("mlp")
        check_model_kinds(model)  # the model first: its constructor says which other names are known
        own = {key for kind in model.support() if is_user_model(kind) for key in module_keys(kind)}
        unknown = [k for k in spec if k not in PARAMETERS and k not in own]
        if unknown:
            key = unknown[0]
            if own:  # your module: its constructor's arguments are the space's words too
                mine = " or ".join(k for k in model.support() if is_user_model(k))
                # suggested: the module's arguments and the training settings (a built-in model's own words
                # only where the space also draws a built-in model: "kernel_size" would be refused next)
                built_in = any(not is_user_model(kind) for kind in model.support())
                words = [*own, *(PARAMETERS if built_in else NET_CHECKS)]
                raise UsageError(f"unknown hyperparameter {key!r} in search space {name!r}: neither an argument of "
                                 f"{mine} ({', '.join(sorted(own))}) nor a training setting"
                                 f"{did_you_mean(key, words)}")
            raise UsageError(
                f"unknown hyperparameter {key!r} in search space {name!r}"
                f"{did_you_mean(key, PARAMETERS) or '.'} Allowed: {', '.join(PARAMETERS)}"
            )
        params = {key: distribution_from(key, value) for key, value in spec.items()}
        params.setdefault("model", Constant("mlp"))
        return cls(params, source, name)

    def draws_one_config(self) -> bool:
        """Whether every draw is the same config: constants, and choices of one value (or of one with p > 0)."""
        def one(dist) -> bool:
            if isinstance(dist, Constant):
                return True
            if isinstance(dist, Categorical):
                drawn = [c for c, w in zip(dist.choices, dist.p or [1] * len(dist.choices), strict=True) if w > 0]
                return len({repr(c) for c in drawn}) == 1
            return False

        return all(one(dist) for dist in self.params.values())

    def constant(self, key: str, default=None):
        dist = self.params.get(key)
        return dist.value if isinstance(dist, Constant) else default


def load_space(path_or_name: str | os.PathLike, module_path=None) -> SearchSpace:
    """Read a TOML space from a path, or by name from ``searches/`` (``"mlp_mnist"``).

    A space naming your own module (``model = "mynets:SmallCNN"``) finds it in ``module_path``, else
    in the space file's folder (never a run folder's: its ``space.toml`` is a copy, and a run folder
    holds no code; reading a run's settings makes its module path known), else installed."""
    path = Path(path_or_name)
    if not path.is_file() and not path.suffix:
        candidate = SEARCHES_DIR / f"{path}.toml"
        if candidate.is_file():
            path = candidate
    if path.is_dir():  # it said "no such file" of a folder that is there
        raise UsageError(f"{param('space')} {path_or_name} is a folder; give the .toml file in it (a run folder keeps "
                         "its space as space.toml)")
    if not path.is_file():
        known = sorted(p.stem for p in SEARCHES_DIR.glob("*.toml"))
        raise UsageError(f"{param('space')} {path_or_name}: no such file; give a TOML path or one of "
                         f"{', '.join(known)}")
    try:
        text = path.read_bytes().decode("utf-8-sig")  # a byte-order mark (Notepad's "UTF-8 with BOM") is fine
    except UnicodeDecodeError as exc:
        raise UsageError(f"{param('space')} {path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                         f"{exc.start}: {exc.reason}); save it as UTF-8") from None
    except OSError as exc:
        raise UsageError(f"{param('space')} {path}: cannot be read ({exc.strerror}); check its permissions") from None
    try:
        spec = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{param('space')} {path}: not valid TOML: {exc}") from None
    except RecursionError:  # a crafted file: tomllib recurses per level of nesting
        raise UsageError(f"{param('space')} {path}: not valid TOML: nested too deeply") from None
    folder, tops = module_folder(path, module_path), module_tops(spec)
    run = run_folder_holding(path)
    if run is not None:  # a run's copy of its space: what it names is imported only when trusted
        trust.on_a_run(run)
    elif tops:  # your own space file: you chose what it names
        trust.trust([folder] if folder else [], tops)
    if folder is not None and tops:
        if run is None or trust.trusted("", folder):
            add_module_path(folder)
        else:
            trust.note_named(folder)
    try:
        return SearchSpace.from_dict(spec, name=path.stem, source=text)
    except trust.UntrustedModule:
        raise  # as it is: it names the run, not a --space the command was never given
    except ModuleImportError as exc:  # kept as such: a command on a run folder says where the module was
        raise ModuleImportError(f"{param('space')} {path}: {exc}", exc.why, exc.top) from None
    except UsageError as exc:
        raise UsageError(f"{param('space')} {path}: {exc}") from None


def module_folder(space_path, module_path=None) -> str | None:
    """Where a space's own modules are looked for: ``module_path``, else the space file's folder (not
    a run folder's, nor the bundled ``searches/``)."""
    if module_path:
        return str(Path(module_path).expanduser().resolve())
    folder = Path(space_path).resolve().parent
    if (folder / "trials.db").exists() or folder == SEARCHES_DIR or not Path(space_path).is_file():
        return None
    return str(folder)


def module_tops(spec: Mapping) -> list[str]:
    """The top-level modules the space's model values name (``mynets`` of ``"mynets.cnn:Small"``)."""
    model = spec.get("model")
    values = model.get("choices", [model.get("value")]) if isinstance(model, dict) else [model]
    return [v.split(":")[0].split(".")[0] for v in values if isinstance(v, str) and is_user_model(v)]



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
