"""Pickles read as data, bounded: a file whose memo references build a structure far larger than itself
is refused before it is loaded. Unpicklers that build only data (ours for CIFAR-10, torch's
``weights_only``) still hash what they build: a tuple nested 60 deep, each level holding the one below
twice by reference, is 200 bytes on disk and 2^60 steps to hash as a dict key, in C, deaf to Ctrl-C."""

from __future__ import annotations

import pickle
import pickletools
import zipfile
from pathlib import Path

__all__ = ["MAX_EXPANDED", "expanded_size", "TooLarge", "load_torch_data"]

# objects a pickle's structure holds, each reference counted again (a CIFAR-10 batch: some 70,000; a
# winner.pt or a state: a few thousand)
MAX_EXPANDED = 10_000_000
_GETS, _PUTS = {"GET", "BINGET", "LONG_BINGET"}, {"PUT", "BINPUT", "LONG_BINPUT"}


class TooLarge(pickle.UnpicklingError):
    """A pickle whose references would build more than ``MAX_EXPANDED`` objects."""




def expanded_size(raw: bytes) -> int:
    """The objects ``raw`` builds, each memo reference counted as a copy (what hashing them costs), by
    running its opcodes' stack effects on sizes alone; stops past ``MAX_EXPANDED``. A list or dict is
    memoized empty, before it is filled, so it counts as small: only immutable values (tuples) are hashed
    whole. A pickle too damaged to follow counts as 0: the unpickler then says what is wrong with it."""
    stack: list[int | None] = []  # None: a mark
    memo: dict[int, int] = {}
    largest = 0
    try:
        for op, arg, _ in pickletools.genops(raw):
            if op.name in _GETS:
                stack.append(memo[arg])
            elif op.name in _PUTS:
                memo[arg] = stack[-1]
            elif op.name == "MEMOIZE":
                memo[len(memo)] = stack[-1]
            elif op.name == "DUP":
                stack.append(stack[-1])
            else:
                consumed, before = 0, list(op.stack_before)
                if before and before[-1] is pickletools.stackslice:  # the items down to the mark
                    while (item := stack.pop()) is not None:
                        consumed += item
                    before = before[:-2]
                for _ in before:
                    consumed += stack.pop() or 0
                for item in op.stack_after:
                    stack.append(None if item is pickletools.markobject else consumed + 1)
            largest = max(largest, stack[-1] or 0) if stack else largest
            if largest > MAX_EXPANDED:
                break
    except (ValueError, IndexError, KeyError, TypeError):
        return 0
    return largest




def load_torch_data(path: Path):
    """``torch.load(path, weights_only=True)`` of a file ``torch.save`` wrote, its pickle first checked
    by ``expanded_size``: ``TooLarge`` past ``MAX_EXPANDED``; an ``UnpicklingError`` for a file that is no
    torch.save archive (torch's legacy format would be read without that check)."""
    import torch

    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
            raw = archive.read(names[0]) if len(names) == 1 else None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise pickle.UnpicklingError(f"not a torch.save archive ({exc})") from None
    if raw is None:
        raise pickle.UnpicklingError("not a torch.save archive (no single data.pkl)")
    if expanded_size(raw) > MAX_EXPANDED:
        raise TooLarge(f"its references build more than {MAX_EXPANDED:,} objects, which no file hpsearch writes "
                       "does (loading it would not end): possibly crafted, so never loaded")
    return torch.load(path, map_location="cpu", weights_only=True)
