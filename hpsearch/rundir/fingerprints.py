"""How two fingerprints of a run differ (``hpsearch.settings.fingerprint``: what makes its trials comparable),
said as the user gives each setting: a resume with other settings is refused naming them."""

from __future__ import annotations

import json
import tomllib

from ..errors import param

__all__ = ["differences_shown"]

# keys an earlier version's fingerprint lacks: compared only where the stored one has them (such a run resumes)
_RECORDED_SINCE = {"module_code"}


def differences_shown(stored: dict, now: dict) -> str:
    """The differences that stop a resume, named and shown (``--cv: stored 4, now 5``); "" when none."""
    return "; ".join(f"{_named(k)}: stored {_short(was, k)}, now {_short(now, k)}{_why(k)}"
                     for k, was, now in _first_causes(_differences(stored, now)))


# where an image folder was, kept in fingerprints before a run could follow its folder to a new place: the
# images themselves are compared by dataset.json's digest (check_source)
_MOVABLE = {"source.root"}


def _differences(stored: dict, now: dict, prefix: str = "") -> list[tuple[str, object, object]]:
    """``(key, stored value, value now)`` where two fingerprints differ, inside nested settings too
    (``strategy.fold_racing``), so the message names the setting rather than a cut-off dict."""
    diffs = []
    for key in sorted(set(stored) | set(now)):
        if prefix + key in _MOVABLE or (not prefix and key in _RECORDED_SINCE and key not in stored):
            continue
        was, is_now = stored.get(key), now.get(key)
        if key == "space" and not prefix:  # a space file's text: compared as TOML, comments and layout aside
            was, is_now = _toml_or_text(was), _toml_or_text(is_now)
        if key == "module_code" and not prefix and isinstance(was, dict) and isinstance(is_now, dict):
            diffs += _code_differences(was, is_now)
            continue
        if isinstance(was, dict) and isinstance(is_now, dict):
            diffs += _differences(was, is_now, f"{prefix}{key}.")
        elif was != is_now:
            diffs.append((prefix + key, was, is_now))
    return diffs


def _code_differences(stored: dict, now: dict) -> list[tuple[str, object, object]]:
    """Your networks whose code differs (``same_code``: the same bytes, or the same syntax under one Python)."""
    from ..training.models.code import same_code

    return [(f"module_code.{ref}", stored.get(ref), now.get(ref)) for ref in sorted(set(stored) | set(now))
            if not (ref in stored and ref in now and same_code(stored[ref], now[ref]))]


def _first_causes(differences: list[tuple[str, object, object]]) -> list[tuple[str, object, object]]:
    """The differences to name: another strategy first, without the settings only that strategy has
    (random search keeps no factor: "--factor: stored 3, now default" says nothing the name does not);
    and a strategy's plan (Hyperband's brackets, halving's rungs) only where no setting that makes it
    differs (--n 15 for 12: the brackets follow)."""
    from ..settings import setting_specs

    if any(key == "strategy.name" for key, _, _ in differences):
        return sorted((d for d in differences if d[0] == "strategy.name" or not d[0].startswith("strategy.")),
                      key=lambda d: d[0] != "strategy.name")
    derived = [d for d in differences
               if d[0].startswith("strategy.") and d[0].rsplit(".", 1)[-1] not in setting_specs()]
    return [d for d in differences if d not in derived] or differences


def _toml_or_text(text):
    try:
        return tomllib.loads(text) if isinstance(text, str) else text
    except (tomllib.TOMLDecodeError, RecursionError):
        return text


def _short(value, key: str = "", width: int = 60) -> str:
    if value is None:  # a setting the fingerprint leaves out when unset: as the report reads it (fold racing: off)
        from ..settings import setting_specs

        spec = setting_specs().get(key.rsplit(".", 1)[-1])
        return spec.unset if spec is not None else "(not set)"
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value.replace("\n", " ")
    return text if len(text) <= width else text[: width - 3] + "..."


def _named(key: str) -> str:
    """A fingerprint's key as the user gives it: a setting as its flag (``strategy.fold_racing`` is
    ``--fold-racing`` on the command line), a space's parameter as ``space.lr.high``."""
    from ..settings import setting_specs

    if key == "strategy.name":
        return param("strategy")
    if key.startswith("module_code."):
        return f"the code of {key.removeprefix('module_code.')}"
    last = key.rsplit(".", 1)[-1]
    return param(last) if not key.startswith("space.") and last in setting_specs() else key


def _why(key: str) -> str:
    """Why a difference cannot resume, where the setting's name does not say it."""
    if key.startswith("module_code."):
        return (" (a digest of your module's files and the modules beside it that it imports: its trials were "
                "trained on the code as it was; put that code back, or search the edited one in a new folder)")
    if key == "strategy.n":
        return f" (halving's and Hyperband's rungs are planned for their {param('n')}: another is a new search)"
    return ""
