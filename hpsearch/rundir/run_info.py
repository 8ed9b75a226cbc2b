"""A run's settings and dataset, read back from its folder (retraining, pictures, the report)."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..data import load_dataset
from ..data.dataset import Dataset, arrays_digest
from ..errors import UsageError, brief, shell
from ..settings import check_stored, dataset_options, setting_specs
from ..training.models import trust
from ..training.models.user import add_module_path, run_folder_holding
from .atomic import atomic_write, atomic_write_text
from .names import DATASET_FILE, SETTINGS_FILE, SOURCE_FILE, TRIALS_DB
from .store import run_fingerprint

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["run_dataset", "read_settings", "read_stored_settings", "read_json", "read_table", "check_dataset_of",
           "check_settings_of", "check_code_of", "write_dataset_file", "read_dataset_file", "record_source",
           "check_source"]


def read_json(path, *, replace_damaged: bool = False) -> dict:
    """A run file holding one JSON object (settings.json, summary.json); ``{}`` when there is none. A
    damaged one (truncated, overwritten) is a ``UsageError`` naming it, or, for a caller that writes
    the file anew (``replace_damaged``), ``{}`` and a warning: never a traceback, never a file that
    every later command trips over."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text())
        if not isinstance(value, dict):
            raise ValueError(f"a JSON {type(value).__name__}, not an object")
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # json.JSONDecodeError is a ValueError
        why = str(exc).splitlines()[0][:100] if not isinstance(exc, RecursionError) else "nested too deeply"
        if replace_damaged:
            print(f"hpsearch: warning: {path} is damaged ({why}); writing it anew", file=sys.stderr, flush=True)
            return {}
        raise UsageError(f"{path} is damaged ({why}); put back a copy of it, or remove it and run the command "
                         "that writes it again (hpsearch retrain for summary.json; the search's own command "
                         "line, which resumes, for settings.json)") from None
    return value


def read_table(path, required: tuple, then: str, **read_csv) -> pd.DataFrame | None:
    """A run's CSV that a command keeps as a cache of finished rows (retrain.csv, compare.csv) or writes again
    (trials.csv); None, with a warning saying ``then`` (what happens instead), when it is missing a column
    of ``required`` or cannot be read (damaged, overwritten): never a traceback from the command that would
    write it again."""
    import pandas as pd

    try:
        table = pd.read_csv(path, **read_csv)
        missing = [c for c in required if c not in table]
        if missing:
            raise ValueError(f"no {', '.join(missing)} column")
    except (ValueError, UnicodeDecodeError, OSError, pd.errors.ParserError) as exc:  # EmptyDataError: ValueError
        print(f"hpsearch: warning: {path} is damaged ({brief(exc)}); {then}", file=sys.stderr, flush=True)
        return None
    return table


def read_stored_settings(run_dir) -> dict:
    """A run folder's ``settings.json`` as stored (``{}`` when there is none), its values checked: a
    damaged or hand-edited one is a ``UsageError`` naming the file and the key (``check_stored``)."""
    path = Path(run_dir) / SETTINGS_FILE
    stored = read_json(path)
    check_stored(stored, path)
    return stored


def read_settings(run_dir: Path) -> dict:
    """A run folder's ``settings.json``, or a ``UsageError`` naming the folder (or the damaged file). A run
    of your own module makes its module path known (``hpsearch.training.models.user``): reading the run
    names where the code is; the code itself is never in the run folder."""
    path = Path(run_dir) / SETTINGS_FILE
    if not path.is_file():
        raise UsageError(f"{run_dir} holds no settings.json; is it a run folder made by hpsearch search?")
    settings = read_stored_settings(run_dir)
    trust.on_a_run(run_dir)  # from now on the modules this run names need trust (see trust)
    folder = settings.get("module_path")
    if isinstance(folder, str) and folder:  # the run's own network is found where the search found it, if trusted
        if Path(folder).is_absolute() and (trust.trusted("", folder) or run_folder_holding(folder) is not None):
            add_module_path(folder)  # (one in a run folder is refused there, in one line)
        elif Path(folder).is_absolute():
            trust.note_named(folder)  # kept off the import path: a folder shipped beside the run is code
    return settings


def run_dataset(run_dir) -> Dataset:
    """The dataset a run searched on, loaded again: the same files and the same ``--max-train``
    slice (the test set is always whole)."""
    settings = read_settings(Path(run_dir))
    if settings.get("dataset_file"):  # the caller's own Dataset object, kept by run_search
        dataset = read_dataset_file(Path(run_dir) / DATASET_FILE, settings.get("dataset_name", "dataset"))
    else:
        gone = settings.get("data_dir") and not Path(settings["data_dir"]).exists()
        if gone:  # the loader would name --data-dir, which a command on a run folder does not take
            raise UsageError(f"{run_dir} was searched on {settings['data_dir']}, which is not there now: put it back "
                             f"there, or tell the run where it is now with hpsearch search --resume {shell(run_dir)} "
                             "--data-dir NEW (the images are checked against the ones the run read)")
        dataset = load_dataset(settings["dataset"], settings.get("data_dir"), **dataset_options(settings))
    dataset = dataset.training_slice(settings.get("max_train"), int(settings.get("seed", 0)))
    check_source(Path(run_dir), dataset)  # a changed folder is named as such, before the counts below
    check_dataset_of(run_dir, dataset)
    check_settings_of(run_dir, settings)
    return dataset


def check_code_of(run_dir) -> dict | None:
    """Raise a UsageError when your network's code (its module and the modules beside it that it imports)
    changed since the run's trials were made: a retraining or a comparison would build its configs from the
    edited code and crown a winner under scores that code never earned. A run made before the code was
    recorded passes. (Not in ``run_dataset``: a report only reads what the run holds.) Returns the recorded
    ``{ref: digest}`` (None where there is none), which each job's class is checked against again
    (``shipped``): an edit during a long retraining."""
    from ..training.models.code import code_digest, same_code

    if not (Path(run_dir) / TRIALS_DB).is_file():
        return None
    made = run_fingerprint(run_dir).get("module_code")
    if not isinstance(made, dict):
        return None
    for ref, digest in made.items():
        if not same_code(digest, code_digest(ref)):
            raise UsageError(f"{run_dir}: the code of {ref} (its module and the modules beside it that it imports) "
                             "changed since the run's search, so its trials' scores are not the edited code's; put "
                             "the code back as it was, or search the edited one in a new run folder")
    return made


def _digest(dataset: Dataset) -> str:
    """The images and labels as read (pixels, not files): a moved, added, removed or edited image
    changes it."""
    return arrays_digest(dataset.X_train, dataset.y_train, dataset.X_test, dataset.y_test)


def _source(dataset: Dataset) -> dict:
    return {**dataset.source, "images": [len(dataset.y_train), len(dataset.y_test)], "digest": _digest(dataset)}


def record_source(run_dir: Path, dataset: Dataset, source: dict | None = None) -> None:
    """Keep a digest of the images and labels as read, and their counts, in ``dataset.json`` (for an image
    folder also where they came from and how they were read: size, colour, the held-out test files), so
    later steps and a resume can tell the same data from changed files. ``source``: what ``check_source``
    computed of this dataset, if it did (the digest reads every pixel)."""
    atomic_write_text(Path(run_dir) / SOURCE_FILE, json.dumps(source or _source(dataset), indent=1) + "\n")


def check_source(run_dir: Path, dataset: Dataset) -> dict | None:
    """Raise a UsageError when ``dataset`` is not the one ``run_dir`` was searched on (its images or labels,
    as the digest in ``dataset.json`` keeps them; runs made before it kept one are not checked). Returns
    what it computed of ``dataset`` (for ``record_source``), None when there was nothing to check."""
    recorded = read_json(Path(run_dir) / SOURCE_FILE)
    if not recorded:
        return None
    now = _source(dataset)
    if not dataset.source:  # a named dataset (MNIST, CIFAR-10 files, an npz): its files, not a folder of images
        # other counts are another slice or dataset (an edited settings.json): check_dataset_of says that
        if recorded.get("images") == now["images"] and recorded.get("digest", now["digest"]) != now["digest"]:
            raise UsageError(f"{dataset.name}: its images or labels are not the ones the run was searched on (digest "
                             f"{now['digest'][:12]}, the run's {recorded['digest'][:12]} in "
                             f"{Path(run_dir) / SOURCE_FILE}); the data changed since the search (its files, or the "
                             "arrays given): put them back as they were, or search the new data in a new run folder")
        return now
    for key, what in (("image_size", "image size is"), ("color", "colour is"), ("test", "test set is"),
                      ("images", "training and test images are"), ("test_files", "held-out test files are"),
                      ("digest", "images or labels differ: digest")):
        if key in recorded and recorded[key] != now[key]:  # a key a run recorded (older runs lack some)
            if isinstance(now[key], list) and len(now[key]) > 3:  # files: which changed, not two cut-off lists
                said = f"{what} now other files ({_changed_files(recorded[key], now[key])})"
            else:
                said = f"{what} now {_shown(now[key], key)}, but the run was searched with {_shown(recorded[key], key)}"
            raise UsageError(f"{dataset.source.get('root')}: its {said} ({Path(run_dir) / SOURCE_FILE}); the folder "
                             "changed since the search: put it back as it was, or search it anew in a new run folder")
    return now


def _changed_files(was: list, now: list) -> str:
    """``"2 held out that were not: a.png, b.png; 1 no longer: c.png"``."""
    def some(files):
        return ", ".join(map(str, files[:3])) + (", ..." if len(files) > 3 else "")

    new, gone = [f for f in now if f not in set(was)], [f for f in was if f not in set(now)]
    parts = ([f"{len(new)} held out that were not: {some(new)}"] if new else []) + \
        ([f"{len(gone)} no longer: {some(gone)}"] if gone else [])
    return "; ".join(parts) or "the same files in another order"


def _shown(value, key: str = "") -> str:
    if key == "digest":
        return value[:12]
    if key == "images":
        return f"{value[0]:,} and {value[1]:,}"
    if isinstance(value, list) and len(value) > 3:
        return f"{len(value)} files ({', '.join(map(str, value[:2]))}, ...)"
    return "x".join(map(str, value)) if isinstance(value, list) else str(value)


def write_dataset_file(path: Path, dataset: Dataset) -> None:
    """Keep ``dataset`` in the run folder as plain arrays (``np.savez``: no pickle), atomically."""
    arrays = {"X_train": dataset.X_train, "y_train": dataset.y_train, "X_test": dataset.X_test,
              "y_test": dataset.y_test, "class_names": np.array([str(n) for n in dataset.class_names])}
    atomic_write(Path(path), lambda fh: np.savez(fh, **arrays), binary=True)


def read_dataset_file(path: Path, name: str) -> Dataset:
    """The dataset ``write_dataset_file`` kept, read as data only (``allow_pickle=False``)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in ("X_train", "y_train", "X_test", "y_test", "class_names")}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise UsageError(f"{path} cannot be read ({type(exc).__name__}: {brief(exc)}); it keeps the data "
                         "run_search was given: put back a copy, or search again") from None
    return Dataset(name, arrays["X_train"], arrays["y_train"], arrays["X_test"], arrays["y_test"],
                   tuple(str(n) for n in arrays["class_names"]))


def check_settings_of(run_dir, settings: dict) -> None:
    """Raise a UsageError unless the settings that made the run's trials (cv, seed, max_epochs, ...: the
    fingerprint in trials.db) are the ones ``settings`` (its settings.json) gives: one copied in from
    another run on the same data would retrain with that run's seed and retraining budget, silently."""
    made = run_fingerprint(run_dir) if (Path(run_dir) / TRIALS_DB).is_file() else {}
    differ = [name for name, spec in setting_specs().items()
              if spec.identity and name in made and name in settings and made[name] != settings[name]]
    if differ:
        was = ", ".join(f"{name} {made[name]}" for name in differ)
        now = ", ".join(f"{name} {settings[name]}" for name in differ)
        raise UsageError(f"{run_dir}: its trials were made with {was}, but its settings.json gives {now}; that "
                         "settings.json is another run's (copied in?): put back this run's own, or retrain the run "
                         "it came from")


def check_dataset_of(run_dir, dataset: Dataset) -> None:
    """Raise a UsageError unless ``dataset`` is the one the run's trials were made on (its name and
    training-set size, as the fingerprint in trials.db keeps them): an edited or copied settings.json
    must not retrain the search's configs on other data and crown a winner of them."""
    if not (Path(run_dir) / TRIALS_DB).is_file():
        return
    made = run_fingerprint(run_dir)
    if not made:
        return
    was = (made.get("dataset"), made.get("n_train"))
    now = (dataset.name, int(len(dataset.y_train)))
    if was != now and dataset.source and was[0] == now[0]:  # the same folder, other images
        raise UsageError(f"{dataset.source.get('root')}: it now gives {now[1]:,} training images, but the run's "
                         f"trials were made on {was[1]:,}; the folder changed since the search: put it back as it "
                         "was, or search it anew in a new run folder")
    if was != now:
        raise UsageError(
            f"{run_dir}: its trials were made on {was[0]} ({was[1]} training images), but its settings.json now "
            f"gives {now[0]} ({now[1]}); put back the run's dataset, data_dir and max_train in settings.json, "
            "or search the new data in a new folder")
