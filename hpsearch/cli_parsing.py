"""argparse as hpsearch's command line uses it: a bad flag is one line (not the whole usage block) with
exit code 2, no abbreviated flag is taken, and an unknown flag is named with the closest real ones."""

from __future__ import annotations

import argparse
import difflib
import re

__all__ = ["OneLineParser", "is_flag", "unrecognized", "empty_value", "subparser", "whole_number", "number",
           "value_type"]


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (not the whole usage block), exit code 2, and takes
    no abbreviated flag: ``--max-epoch 3`` is named with the flag it was near (``--max-epochs``), not
    silently taken for it, so a command line means the same after a flag is added."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)  # the subcommands' parsers are made by this class too
        super().__init__(*args, **kwargs)
        # "-inf", "-1x", "-1e3" are a flag's (bad) value, not a missing one: argparse takes only -12 and -1.5 so
        self._negative_number_matcher = re.compile(r"^-(\d|\.\d|inf|nan)", re.IGNORECASE)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def is_flag(word: str) -> bool:
    """Whether a word argparse left over is an option (``--epochs``, ``-x``), not a value (``5``, ``-1``)."""
    if not word.startswith("-") or word == "-":
        return False
    try:
        float(word)
    except ValueError:
        return True
    return False


def _closest_flags(word: str, flags: list[str]) -> list[str]:
    """The flags of ``flags`` closest to ``word`` (``--epochs``: ``--max-epochs``, ``--min-epochs``), the
    equally close ones in their declared order; none when nothing is close. Compared without the
    dashes, which every flag shares."""
    names = {f.lstrip("-"): f for f in flags}
    stem = word.split("=", 1)[0].lstrip("-")
    close = difflib.get_close_matches(stem, names, n=3)
    if not close:
        return []
    ratio = {c: difflib.SequenceMatcher(None, c, stem).ratio() for c in close}
    best = max(ratio.values())
    return [names[c] for c in names if c in ratio and ratio[c] == best]


def unrecognized(parser: argparse.ArgumentParser, extra: list[str]) -> str:
    """``unrecognized argument --epochs; did you mean --max-epochs or --min-epochs?``: the words no flag
    took (an unknown flag's value is left out: argparse cannot tell it from a stray word), and the
    closest real flags of ``parser`` (the subcommand's)."""
    flags = [o for action in parser._actions for o in action.option_strings if o.startswith("--")]
    unknown = [word.split("=", 1)[0] for word in extra if is_flag(word)] or extra
    text = f"unrecognized argument{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}"
    hints = [(word, close) for word in unknown if is_flag(word) and (close := _closest_flags(word, flags))]
    if len(unknown) == 1 and hints:
        text += f"; did you mean {_either(hints[0][1])}?"
    elif hints:
        text += "; did you mean " + ", ".join(f"{_either(close)} for {word}" for word, close in hints) + "?"
    return text


def empty_value(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str | None:
    """``--resume is empty ('')...`` for the first flag or name of ``parser`` given as an empty word, else None.
    No value of hpsearch's means anything empty, and some were taken as not given: ``--resume "$RUN"``
    with RUN unset started a new search, ``--out ''`` wrote to the default folder."""
    for action in parser._actions:
        value = getattr(args, action.dest, None)
        if value == "" or (isinstance(value, list) and "" in value):
            if action.option_strings:
                return f"{action.option_strings[-1]} is empty (''); give a value, or leave the flag out"
            return f"{action.metavar or action.dest} is empty (''); give a value"
    return None


def _either(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def subparser(parser: argparse.ArgumentParser, command: str | None) -> argparse.ArgumentParser:
    """The parser of the subcommand ``command`` (its flags, its --help), else ``parser`` itself."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return action.choices[command]
    return parser


def whole_number(text: str) -> int:
    """An int flag's value, or argparse's one line saying what it takes (not "invalid int value")."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None


def number(text: str) -> float:
    """A float flag's value, or argparse's one line saying what it takes."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None


def value_type(kind):
    """The argparse type for a setting's kind: ints and floats said in words, any other as it is."""
    return {int: whole_number, float: number}.get(kind, kind)
