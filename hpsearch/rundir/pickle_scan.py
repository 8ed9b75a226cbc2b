"""Pickles read as data, bounded: a file whose memo references build a structure far larger than itself
is refused before it is loaded. Unpicklers that build only data (ours for CIFAR-10, torch's
``weights_only``) still hash what they build: a tuple nested 60 deep, each level holding the one below
twice by reference, is 200 bytes on disk and 2^60 steps to hash as a dict key, in C, deaf to Ctrl-C."""

from __future__ import annotations

import pickle
import pickletools
import zipfile
from pathlib import Path

__all__ = ["MAX_EXPANDED", "MAX_DEPTH", "expanded_size", "too_large", "TooLarge", "load_torch_data"]

# objects a pickle's structure holds, each reference counted again (a CIFAR-10 batch: some 70,000; a
# winner.pt or a state: a few thousand), and how deep it nests (a few levels): a tuple nested a million
# deep, hashed as a dict key, overflows the C stack (a segfault)
MAX_EXPANDED = 10_000_000
MAX_DEPTH = 1000
_GETS, _PUTS = {"GET", "BINGET", "LONG_BINGET"}, {"PUT", "BINPUT", "LONG_BINPUT"}
# opcodes that add to the object below their operands (a list, a dict, a set, BUILD's object) in place
_FILLS = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"}


class TooLarge(pickle.UnpicklingError):
    """A pickle whose references would build more than ``MAX_EXPANDED`` objects, or nest past ``MAX_DEPTH``."""


def expanded_size(raw: bytes) -> tuple[int, int]:
    """``(objects, depth)`` of what ``raw`` builds, each reference counted as a copy (what hashing or
    walking it costs): its opcodes' stack effects run on a graph of nodes, where an object filled after it
    was memoized (a list, a dict, a numpy dtype's BUILD) gains its children in place; a cycle counts as
    past the limits. A pickle too damaged to follow counts as ``(0, 0)``: the unpickler says what is wrong."""
    children: list[list[int]] = []
    stack: list[int | None] = []  # node ids; None: a mark
    memo: dict[int, int] = {}

    def node(kids: list[int]) -> int:
        children.append(kids)
        return len(children) - 1

    try:
        for op, arg, _ in pickletools.genops(raw):
            name = op.name
            if name in _GETS:
                stack.append(memo[arg])
            elif name in _PUTS:
                memo[arg] = stack[-1]
            elif name == "MEMOIZE":
                memo[len(memo)] = stack[-1]
            elif name == "DUP":
                stack.append(stack[-1])
            else:
                taken, before = [], list(op.stack_before)
                if before and before[-1] is pickletools.stackslice:  # the items down to the mark
                    while (item := stack.pop()) is not None:
                        taken.append(item)
                    before = before[:-2]
                fills = name in _FILLS
                for _ in before[1:] if fills else before:
                    taken.append(stack.pop())
                if fills:  # the object below stays where it is, holding what it was given
                    children[stack[-1]].extend(t for t in taken if t is not None)
                    continue
                for item in op.stack_after:
                    stack.append(None if item is pickletools.markobject else node([t for t in taken if t is not None]))
    except (ValueError, IndexError, KeyError, TypeError):
        return 0, 0
    return _measure(children)


def _measure(children: list[list[int]]) -> tuple[int, int]:
    """The largest ``(objects, depth)`` of any node, counting shared children again; past the limits
    (or a cycle) it stops there. Iterative: a million-deep chain must not overflow this stack either."""
    size, depth = [0] * len(children), [0] * len(children)
    state = [0] * len(children)  # 0 new, 1 open, 2 done
    largest = (0, 0)
    for root in range(len(children)):
        if state[root]:
            continue
        path = [root]
        while path:
            top = path[-1]
            if state[top] == 0:
                state[top] = 1
                for kid in children[top]:
                    if state[kid] == 1:  # a cycle: refused
                        return MAX_EXPANDED + 1, MAX_DEPTH + 1
                    if state[kid] == 0:
                        path.append(kid)
                continue
            path.pop()
            if state[top] == 2:
                continue
            state[top] = 2
            size[top] = 1 + sum(size[k] for k in children[top])
            depth[top] = 1 + max((depth[k] for k in children[top]), default=0)
            largest = (max(largest[0], size[top]), max(largest[1], depth[top]))
            if largest[0] > MAX_EXPANDED or largest[1] > MAX_DEPTH:
                return largest
    return largest


def too_large(raw: bytes) -> str | None:
    """Why ``raw`` is refused before it is loaded (``expanded_size`` past the limits), else None."""
    objects, depth = expanded_size(raw)
    if objects > MAX_EXPANDED:
        return f"its references build more than {MAX_EXPANDED:,} objects"
    if depth > MAX_DEPTH:
        return f"it nests more than {MAX_DEPTH:,} levels deep"
    return None


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
    why = too_large(raw)
    if why:
        raise TooLarge(f"{why}, which no file hpsearch writes does (loading it would not end): possibly crafted, "
                       "so never loaded")
    return torch.load(path, map_location="cpu", weights_only=True)
