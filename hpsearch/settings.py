"""The settings of a search, declared once: each field of ``SearchSettings`` carries its default, its
check, its help and what it is for, and everything else derives from that one table — the command
line's flags (``hpsearch.cli``), ``validate``, the fingerprint a resume must match, the retraining's
defaults and the report's settings table.

Library errors name the parameter as a Python user types it (``cv``); the command line renders the
same messages with its flags (``--cv``) through ``hpsearch.errors.param``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from . import setting_checks as checks
from .errors import UsageError, param, parameter_names

__all__ = ["SearchSettings", "Spec", "setting_specs", "retrain_defaults", "fingerprint", "report_settings",
           "check_applies", "dataset_options", "check_stored"]

MAX_SEED = 2**32 - 1  # scikit-learn's folds take a 32-bit seed
MAX_N = 1_000_000  # every config becomes a trial in the store; halving trains them all at once
MAX_EPOCHS, MAX_IMAGES = checks.MAX_EPOCHS, checks.MAX_IMAGES
HALVING_STRATEGIES = ("halving", "hyperband", "tpe-halving")
TPE_STRATEGIES = ("tpe", "tpe-halving")
FOLDER_DATASETS = ("folder",)
FILE_DATASETS = ("mnist", "fashion-mnist", "cifar10", "triple-mnist", "npz", "folder")  # all but the bundled digits
WINNER_RULES = ("cv", "test")
# make_net's defaults (hpsearch.training.net, which imports torch: the command line's --help must not),
# the same numbers: tests/test_cli_startup.py checks them
DEFAULT_MAX_EPOCHS = 100
DEFAULT_BATCH_SIZE = 128
DEFAULT_PATIENCE = 15


@dataclass(frozen=True)
class Spec:
    """What one setting is, besides its name and default (the field's own)."""

    help: str
    group: str = "search"  # "search": the search's flags; "retrain": also ``hpsearch retrain``'s; "backend": both
    kind: type = str  # what the command line parses the flag as
    check: Callable[[str, Any], None] | None = None  # check(name, value): raises UsageError naming it
    choices: Callable[[], Iterable[str]] | None = None  # the allowed values (the command line's help lists them)
    strict: bool = True  # the command line refuses other values (else the library does, with a better hint)
    metavar: str | None = None
    flag: bool = True  # whether the command line has a flag for it
    identity: bool = False  # in the run's fingerprint as it is (dataset, space and strategy enter it derived)
    # (setting, values): it acts only where that setting is one of values (else refused when given, and
    # left out of the report): a strategy's own settings, an image folder's
    applies: tuple[str, tuple[str, ...]] | None = None
    unset: str = "default"  # how the report reads None
    report: bool = True  # shown in the report's settings table
    identity_if_set: bool = False  # in the run's fingerprint when not None (older runs, made without it, resume)

    def holds(self, stored: dict) -> bool:
        """Whether the setting acts in a run whose settings are ``stored`` (missing ones: their defaults)."""
        if self.applies is None:
            return True
        key, values = self.applies
        value = stored.get(key, _DEFAULTS.get(key))
        return (checks.canonical_dataset(value) if key == "dataset" else value) in values  # --dataset Folder, cifar-10


def setting(default, help: str, **spec) -> Any:
    """A field of ``SearchSettings`` with its declaration."""
    factory = {"default_factory": default} if callable(default) else {"default": default}
    return field(**factory, metadata={"spec": Spec(help=help, **spec)})


@dataclass
class SearchSettings:
    """Everything that defines a search; each field is one setting, declared here once (the command
    line's flags are these names with dashes: ``max_epochs`` is ``--max-epochs``)."""

    n: int = setting(150, "number of configs to evaluate", kind=int,
                     check=checks.whole(1, MAX_N, " configs (each one is a trial in the store)"))
    dataset: str = setting("digits", "the data: a bundled or published dataset, or your own (folder: image "
                           "folders; npz: arrays); any case, _ for -, and fashionmnist, cifar-10 and triplemnist "
                           "are read too", choices=checks.datasets, strict=False)
    data_dir: str | None = setting(
        None, "where the dataset's files are: your images (folder: DIR/train/<class>/<image>, and test/ if you have "
        "one), your arrays (npz: FILE.npz with X_train, y_train, X_test, y_test), the idx files (raw or .gz) of "
        "mnist and fashion-mnist, CIFAR-10's batches (cifar-10-batches-py or -bin, or the folder holding it), or "
        "Triple-MNIST's train/ val/ test/ folders of PNGs (hpsearch make-triple); default for the published "
        "datasets: the cache, Debian's /usr/share/datasets, or a checksummed download", report=False,
        applies=("dataset", FILE_DATASETS))
    space: str = setting("mlp_mnist", "search space: a TOML file or a name in searches/ (mlp_mnist is the Lab 3 "
                         "space)")
    module_path: str | None = setting(None, "the folder of your own network's module, for a space with model = "
                                      "\"mynets:SmallCNN\" (default: the space file's folder; an installed module "
                                      "is found anyway)", metavar="DIR", report=False)
    cv: int = setting(4, "cross-validation folds, shuffled and seeded, stratified for one label per image", kind=int,
                      check=checks.whole(2), identity=True)
    n_jobs: int = setting(-1, "parallel jobs, taking fold tasks of any config; -1 = one per core (on a GPU at most "
                          "one per fold); torch threads per job = cores // jobs; each job holds a fold's training "
                          "rows (~0.3 GB for 60k MNIST images), so lower it if memory is short", kind=int,
                          check=checks.n_jobs, report=False)
    max_epochs: int = setting(DEFAULT_MAX_EPOCHS, "epochs per fit unless the space sets max_epochs", kind=int,
                              check=checks.whole(1, MAX_EPOCHS), identity=True)
    patience: int = setting(DEFAULT_PATIENCE, "early stopping: epochs without improvement of the loss on an "
                            "internal 20%% validation split; 0 = off", kind=int, check=checks.whole(0, MAX_EPOCHS),
                            identity=True)
    batch_size: int = setting(DEFAULT_BATCH_SIZE, "mini-batch size unless the space sets batch_size", kind=int,
                              check=checks.whole(1, MAX_IMAGES), identity=True)
    scoring: str = setting("neg_log_loss", "what ranks configs: neg_log_loss, the held-out fold's log-loss; "
                           "accuracy is recorded either way", choices=checks.scorings,
                           check=checks.one_of(checks.scorings), identity=True)
    seed: int = setting(0, "seeds the configs, folds and weights", kind=int, identity=True,
                        check=checks.whole(0, MAX_SEED, " (2**32 - 1)", grouped=False))
    out: str | None = setting(None, "run folder (default results/<dataset>_<space>_seed<seed>, with _<strategy> "
                              "before _seed unless random)", report=False)
    device: str = setting("cpu", "cpu, cuda, cuda:N or auto (auto: cuda when this machine, or a Dask worker, has a "
                          "CUDA GPU, else cpu)", check=checks.device_name)
    progress: bool = setting(True, "a progress bar (the command line's --no-progress turns it off)", flag=False,
                             report=False)
    engine: str = setting("skorch", "skorch: one skorch net per config x fold, the reference; batched: many MLP "
                          "(config, fold) models trained at once as one stack on a GPU, one per chunk without "
                          "skorch's overhead on the CPU (other model kinds fall back to skorch)",
                          choices=checks.engines, check=checks.one_of(checks.engines), identity=True)
    max_models_per_chunk: int | None = setting(None, "batched engine: (config, fold) models trained together; "
                                               "default: automatic (GPU memory; on the CPU one)", kind=int,
                                               check=checks.optional(checks.whole(1)), report=False,
                                               applies=("engine", ("batched",)))
    strategy: str = setting(
        "random", "which configs get how many epochs: random (every config the full max-epochs), halving "
        "(successive halving: all configs train min-epochs on every fold, the best 1/factor continue from where "
        "they stopped, up to max-epochs), hyperband (several halving brackets starting at different epochs), tpe "
        "(Optuna's TPE sampler proposes each config from the scores so far) or tpe-halving (TPE proposes, and a "
        "config continues past a rung only while in the top 1/factor of all scored there)", choices=checks.strategies,
        strict=False)
    factor: int | None = setting(
        None, "halving/hyperband/tpe-halving: 1/FACTOR of a rung's configs continue, and each rung trains FACTOR "
        "times longer (default: 3; a run resumes with the factor it began with)", kind=int, unset="automatic",
        applies=("strategy", HALVING_STRATEGIES))
    min_epochs: int | None = setting(None, "halving/hyperband/tpe-halving: epochs of the first rung (default: "
                                     "automatic, so the rungs end at max-epochs with at most FACTOR configs)",
                                     kind=int, unset="automatic",
                                     applies=("strategy", HALVING_STRATEGIES))
    fold_racing: float | str | None = setting(
        None, "halving: train each rung's folds in turn and stop a config, from the 2nd fold on, once it is below "
        "the rung's cut-off config on every fold so far by more than MARGIN (in the score's units); the last rung "
        "runs every fold; off: every fold of every config (default: 0.02 with --cv 3 or more, measured on the "
        "tables in BENCHMARKS.md to choose as without racing for 12-15%% less compute; a run made without racing "
        "resumes without)", kind=checks.margin_or_off, metavar="MARGIN|off", check=checks.optional(checks.margin),
        unset="off", applies=("strategy", ("halving",)))
    trend: float | str | None = setting(
        None, "halving: rank each rung after the first by its score extrapolated to max-epochs along the config's "
        "trend since the previous rung (in log-epochs), the extrapolated gain weighted by WEIGHT, so that a slow "
        "starter still climbing goes on; off: by the score alone (default: off; in BENCHMARKS.md 0.5 with --factor 4 "
        "spent half the compute but chose configs that tested worse in real runs; a run made with a trend resumes "
        "with it). The scores stored and shown stay the scores",
        kind=checks.weight_or_off, metavar="WEIGHT|off", check=checks.optional(checks.weight), unset="off",
        applies=("strategy", ("halving",)))
    n_startup: int = setting(10, "tpe/tpe-halving: configs drawn at random before TPE proposes", kind=int,
                             applies=("strategy", TPE_STRATEGIES))
    max_train: int | None = setting(None, "search (and retrain) on a stratified, seeded slice of N training "
                                    "images, for a quick try on a large dataset (default: all; the test set is "
                                    "always whole)", kind=int, metavar="N",
                                    check=checks.optional(checks.whole(1, MAX_IMAGES)), unset="all",
                                    identity_if_set=True)
    test_size: float = setting(0.2, "folder without test/: the share of each class held out as the test set, "
                               "stratified and seeded by --seed", kind=float, check=checks.share,
                               applies=("dataset", FOLDER_DATASETS), identity_if_set=True)
    image_size: str | None = setting(None, "folder: the size every image is resized to, a side (28) or WIDTHxHEIGHT "
                                     "(default: the most common size in train/)", metavar="SIZE",
                                     check=checks.optional(checks.image_size), applies=("dataset", FOLDER_DATASETS),
                                     identity_if_set=True, unset="most common")
    color: str | None = setting(None, "folder: read the images as grey or rgb (default: rgb when any image holds "
                                "colour, else grey; gray is grey)", choices=checks.colors, kind=checks.color_name,
                                check=checks.optional(checks.one_of(checks.colors)),
                                applies=("dataset", FOLDER_DATASETS), identity_if_set=True, unset="automatic")
    backend: str = setting("loky", "where the jobs run: loky, processes on this machine; dask, the workers of a "
                           "Dask cluster (pip install -e '.[dask]'); the trial store stays here either way",
                           group="backend", choices=checks.backends, report=False)
    scheduler: str | None = setting(None, "with backend dask: a running scheduler's address (tcp://HOST:8786), "
                                    "or local:N for a cluster of N worker processes on this machine (default "
                                    "local: one per core)", group="backend", metavar="ADDRESS", report=False)
    # What follows the search; stored so that a resume (and a later hpsearch retrain) retrains as asked.
    top: int = setting(15, "retrain the best TOP configs", group="retrain", kind=int, check=checks.whole(1, MAX_N))
    retrain_epochs: int = setting(300, "epochs of each retraining on the whole training set, no early stopping",
                                  group="retrain", kind=int, check=checks.whole(1, MAX_EPOCHS))
    schedule: str | None = setting(None, "the retraining's learning-rate schedule over retrain-epochs",
                                   group="retrain", choices=checks.schedules,
                                   check=checks.optional(checks.one_of(checks.schedules)), report=False,
                                   unset="each config's own: none unless the space searched one")
    winner_by: str = setting("cv", "how the winner is chosen among the retrained configs: cv, the best search (CV) "
                             "rank that retrained without failing, so the test set is never read for the choice and "
                             "its accuracy is an honest estimate; test, the Lab 3 seed's rule, the best test "
                             "accuracy (labelled: selected on the test set, optimistic)", group="retrain",
                             choices=lambda: WINNER_RULES, check=checks.one_of(lambda: WINNER_RULES))
    checkpoint_every: int = setting(1, "the retraining saves each config's whole state every N epochs (0: never), "
                                    "so the same command after Ctrl-C, kill -9 or a crash goes on from there",
                                    group="retrain", kind=int, metavar="N", check=checks.whole(0, MAX_EPOCHS),
                                    report=False)
    extra: dict = setting(dict, "free-form notes kept with the run", flag=False, report=False)

    def dataset_options(self) -> dict:
        """The data loader's own options (``hpsearch.data.load_dataset``): the dataset's settings that
        are set, and the seed (an image folder's held-out split)."""
        return dataset_options(asdict(self))

    def validate(self) -> None:
        """Raise ``UsageError`` naming the first setting that cannot run."""
        from .jobs.backends import check_backend_flags
        from .strategies import make_strategy

        defaults = {f.name: f.default for f in fields(self)}
        for name, spec in setting_specs().items():
            if spec.check is not None:
                spec.check(name, getattr(self, name))
        make_strategy(self)  # checks the strategy and its own settings
        for name in setting_specs():
            if getattr(self, name) != defaults[name]:
                check_applies(name, {"strategy": self.strategy, "dataset": self.dataset, "engine": self.engine})
        check_backend_flags(self.backend, self.scheduler)


_DEFAULTS = {f.name: f.default for f in fields(SearchSettings)}


def dataset_options(stored: dict) -> dict:
    """The loader options of a run whose settings are ``stored`` (a settings.json, or ``asdict``)."""
    options = {name: stored.get(name) for name, spec in setting_specs().items()
               if spec.applies and spec.applies[0] == "dataset" and spec.holds(stored) and stored.get(name) is not None
               and name != "data_dir"}  # the loaders' first argument, not an option
    return {**options, "seed": int(stored.get("seed", 0))}


def check_applies(name: str, stored: dict) -> None:
    """Refuse a setting the run would ignore (``factor`` with random search, ``image_size`` with digits):
    never dropped silently. ``stored``: the settings it depends on (missing ones: their defaults)."""
    spec = setting_specs()[name]
    if spec.holds(stored):
        return
    key, values = spec.applies
    choose = f"{param(key)} {values[0]}" if len(values) == 1 else "one of those"
    raise UsageError(f"{param(name)} applies only with {param(key)} {' or '.join(values)}; {param(key)} "
                     f"{stored.get(key, _DEFAULTS[key])} would ignore it: leave it out, or choose {choose}")


# A field's annotation, name by name: the types a settings.json value may have, and how to say them.
_KINDS = {"int": ((int,), "a whole number"), "float": ((int, float), "a number"), "str": ((str,), "a string"),
          "bool": ((bool,), "true or false"), "dict": ((dict,), "an object"), "None": ((type(None),), "null")}


def check_stored(stored: dict, where) -> None:
    """Raise a ``UsageError`` naming file ``where`` (a run's settings.json) and its first setting whose value
    no search writes: of another type (``"cv": "two"``) or out of range. It is the file's fault, so the
    message names the file's key, not the flag, which the command reading it may not even have."""
    try:
        for f in fields(SearchSettings):
            if f.name not in stored:
                continue  # an older run's: the default
            value, spec = stored[f.name], f.metadata["spec"]
            kinds = [_KINDS[name.strip()] for name in f.type.split("|")]
            allowed = tuple(t for types, _ in kinds for t in types)
            if isinstance(value, bool) and bool not in allowed or not isinstance(value, allowed):
                raise UsageError(f"{f.name} must be {' or '.join(words for _, words in kinds)}, got {value!r}")
            if spec.check is not None:
                with parameter_names(str):
                    spec.check(f.name, value)
        chance = stored.get("chance")
        if not isinstance(chance, dict | None):  # None: labels per position have no chance level
            raise UsageError(f"chance must be an object or null, got {chance!r}")
        levels = {k: v for k, v in (chance or {}).items() if k != "scoring"}  # scoring: the score's name
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in levels.values()):
            raise UsageError(f"chance must hold numbers (the chance levels of each score), got {chance!r}")
    except UsageError as exc:
        raise UsageError(f"{where} is damaged: its {exc}; put back a copy of it (hpsearch search wrote it)") from None


def setting_specs(group: str | None = None) -> dict[str, Spec]:
    """``{name: Spec}`` of every setting (of one ``group``), in declaration order."""
    specs = {f.name: f.metadata["spec"] for f in fields(SearchSettings)}
    return {k: s for k, s in specs.items() if group is None or s.group == group}


def retrain_defaults() -> dict[str, Any]:
    """The retraining's settings and their defaults (the Lab 3 seed's 15 configs x 300 epochs)."""
    defaults = {f.name: f.default for f in fields(SearchSettings)}
    return {name: defaults[name] for name in setting_specs("retrain")}


def report_settings(stored: dict) -> list[str]:
    """The settings the report shows for a run whose stored settings are ``stored``."""
    return [name for name, spec in setting_specs().items()
            if spec.report and spec.holds(stored)]


def fingerprint(settings: SearchSettings, space, dataset) -> dict:
    """What makes a run's trials comparable; a resume with another fingerprint is refused."""
    from .strategies import make_strategy

    identity = {name: getattr(settings, name) for name, spec in setting_specs().items() if spec.identity}
    return {
        **identity,
        "dataset": dataset.name,
        "n_train": int(len(dataset.y_train)),
        "space": space.source or json.dumps({k: repr(v) for k, v in space.params.items()}),
        # which configs get how many epochs (n may change: it extends a random or TPE search)
        "strategy": make_strategy(settings).fingerprint(),
        **{name: getattr(settings, name) for name, spec in setting_specs().items()
           if spec.identity_if_set and getattr(settings, name) is not None and spec.holds(asdict(settings))},
        # an image folder's classes; not where it is (a run follows its folder when moved): its images are
        # compared by their digest in dataset.json, so another folder's do not resume this run
        **({"source": {"classes": list(dataset.class_names)}} if dataset.source else {}),
        # your network's code: trials of an edited module do not rank against the old one's
        **({"module_code": code} if (code := module_code(space)) else {}),
    }


def module_code(space) -> dict[str, str]:
    """``{ref: code_digest(ref)}`` for each of your own networks the space names (``model = "mynets:Small"``)."""
    from .training.models.code import code_digest
    from .training.models.user import is_user_model

    model = space.params.get("model")
    kinds = model.support() if model is not None else []
    return {kind: code_digest(kind) for kind in kinds if is_user_model(kind)}
