"""The search's settings as the command line gives them: the flags given, and for ``--resume`` the
run's stored settings under them, a flag that would make other trials refused at once. Light imports
only (``hpsearch.cli`` builds its parser from here without torch)."""

from __future__ import annotations

from pathlib import Path

from .errors import UsageError, param
from .rundir.names import SETTINGS_FILE, SPACE_FILE
from .settings import SearchSettings, check_applies, setting_specs

__all__ = ["search_settings", "read_json", "read_stored_settings"]


def read_json(path, **options) -> dict:
    """``hpsearch.rundir.run_info.read_json``, imported on first use (it imports torch)."""
    from .rundir.run_info import read_json

    return read_json(path, **options)


def read_stored_settings(run_dir) -> dict:
    """``hpsearch.rundir.run_info.read_stored_settings``, imported on first use (it imports torch)."""
    from .rundir.run_info import read_stored_settings

    return read_stored_settings(run_dir)


def _search_flags() -> list[str]:
    """The settings the command line has a flag for (``hpsearch.settings`` declares them)."""
    return [name for name, spec in setting_specs().items() if spec.flag]


def search_settings(args) -> SearchSettings:
    """``SearchSettings`` from the parsed flags (and, with ``--resume``, the run's stored ones)."""
    given = {k: getattr(args, k) for k in _search_flags() if getattr(args, k) is not None}
    if "module_path" in given:
        _check_module_path(given["module_path"])
    if args.resume is None:  # a flag the strategy or dataset ignores is refused, even at its default value
        for name in given:
            check_applies(name, given)
    if args.resume:
        stored_path = Path(args.resume) / SETTINGS_FILE
        if not Path(args.resume).exists():  # a search killed before it made its folder, or a typo
            raise UsageError(f"--resume {args.resume}: no such folder; pass the folder a search wrote (its --out), "
                             "or run the search's own command again, without --resume, to start it")
        if not stored_path.is_file():
            raise UsageError(f"--resume {args.resume}: no settings.json there; is it a run folder "
                             "made by hpsearch search?")
        if args.out is not None and Path(args.out).resolve() != Path(args.resume).resolve():
            raise UsageError(f"--resume {args.resume} continues the search in that folder, and --out {args.out} "
                             "would start a new one elsewhere with its settings; leave out --out to resume, or "
                             "--resume to start a new search in --out")
        stored = read_stored_settings(args.resume)
        _check_resume_keeps(args.resume, given, stored)
        # a stored setting its own run ignores is dropped: older runs stored defaults that did not apply
        # (factor 3 with random search, before halving's became automatic), which a resume would refuse
        specs = setting_specs()
        base = {k: stored[k] for k in _search_flags() if k in stored and specs[k].holds(stored)}
        base["out"] = str(args.resume)
        base["space"] = str(Path(args.resume) / SPACE_FILE)  # the space exactly as stored
        if "data_dir" not in given and base.get("data_dir") and not Path(base["data_dir"]).exists():
            raise UsageError(f"--resume {args.resume} was searched on {base['data_dir']}, which is not there now: "
                             "put it back there, or pass --data-dir with where it is now (a resume reads the same "
                             "images: they are checked against the ones the run read)")
        base.update(given)
        given = base
    return SearchSettings(**given, progress=not args.no_progress)


def _check_module_path(folder: str) -> None:
    """--module-path names a folder (the one holding mynets.py), not the file and not a missing folder."""
    path = Path(folder).expanduser()
    if path.is_file():
        raise UsageError(f"--module-path {folder} is a file; pass the folder it is in ({path.parent}): the space's "
                         f"model names the module (\"{path.stem}:MyClass\")")
    if not path.is_dir():
        raise UsageError(f"--module-path {folder}: no such folder; pass the folder holding your module's .py file")


# What makes a run's trials, besides the space (compared as TOML once it is read): a resume that names
# another value is refused at once, by that flag (not later by another flag it clashes with, nor after
# loading another dataset).
_TRIAL_SETTINGS = ("dataset", "strategy", "factor", "min_epochs", "fold_racing", "trend", "n_startup")


def _check_resume_keeps(run_dir, given: dict, stored: dict) -> None:
    specs = setting_specs()
    names = [k for k in given if k in _TRIAL_SETTINGS or specs[k].identity or specs[k].identity_if_set]
    changed = [k for k in names if k in stored and not _same_setting(k, given[k], stored[k])]
    framing_keys = {spec.applies[0] for spec in specs.values() if spec.applies}  # dataset, strategy, engine
    framing = [k for k in changed if k in framing_keys]  # what the other flags apply to: said first
    if not framing:
        for name in given:  # a flag the run's own strategy or dataset ignores: said so (not "searched with None")
            if not specs[name].holds(stored):
                check_applies(name, stored)
    changed = framing or changed
    if changed:
        now = ", ".join(f"{param(k)} {given[k]}" for k in changed)
        was = ", ".join(f"{param(k)} {stored[k]}" if stored[k] is not None else f"no {param(k)}" for k in changed)
        raise UsageError(f"--resume {run_dir}: {now}, but the run was searched with {was}; leave "
                         f"{' and '.join(param(k) for k in changed)} out to resume it, or start a new search "
                         "in another --out")


def _same_setting(name: str, given, stored) -> bool:
    if name == "trend":  # weight 0 ranks by the score, as off does (halving's fingerprint is one for both)
        given, stored = ("0" if v == "off" else v for v in (given, stored))
    try:  # "0.02" from the command line, 0.02 in settings.json
        return float(given) == float(stored)
    except (TypeError, ValueError):
        return str(given) == str(stored)
