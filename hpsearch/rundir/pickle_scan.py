"""Pickles read as data, bounded: a file whose memo references build a structure far larger than itself,
or nested far deeper than any file hpsearch reads, is refused before it is loaded. Unpicklers that build
only data (ours for CIFAR-10, torch's ``weights_only``) still hash what they build: a tuple nested 60 deep,
each level holding the one below twice by reference, is 200 bytes on disk and 2^60 steps to hash as a dict
key, in C, deaf to Ctrl-C; one nested a million deep overflows the C stack. The check fails closed (a
pickle it cannot follow is not loaded) and ``load_torch_data`` hands torch the very bytes it checked."""

from __future__ import annotations

import io
import pickle
import pickletools
import zipfile
from pathlib import Path

__all__ = ["MAX_EXPANDED", "MAX_DEPTH", "expanded_size", "too_large", "TooLarge", "Unfollowable", "load_torch_data"]

# objects a pickle's structure holds, each reference counted again (a CIFAR-10 batch: some 70,000; a
# winner.pt or a state: a few thousand), and how deep it nests (a few levels): a tuple nested a million
# deep, hashed as a dict key, overflows the C stack (a segfault)
MAX_EXPANDED = 10_000_000
MAX_DEPTH = 1000
MAX_NODES = 2_000_000  # values a pickle makes (a CIFAR-10 batch: 60,000): past it the scan stops, refusing
MAX_PICKLE = 64 * 1024 * 1024  # a torch.save archive's data.pkl (the tensors are files of their own)
_GETS, _PUTS = {"GET", "BINGET", "LONG_BINGET"}, {"PUT", "BINPUT", "LONG_BINPUT"}
# opcodes that add to the object below their operands (a list, a dict, a set, BUILD's object) in place
_FILLS = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"}


class TooLarge(pickle.UnpicklingError):
    """A pickle whose references would build more than ``MAX_EXPANDED`` objects, or nest past ``MAX_DEPTH``."""


class Unfollowable(pickle.UnpicklingError):
    """A pickle the scan cannot follow: damaged or cut short, or written to get past it. Never loaded: what
    the scan cannot read, the unpickler might (a hex INT)."""


def expanded_size(raw: bytes) -> tuple[int, int]:
    """``(objects, depth)`` of what ``raw`` builds, each reference counted as a copy (what hashing or
    walking it costs): its opcodes' stack effects run on a graph of nodes, where an object filled after it
    was memoized (a list, a dict, a numpy dtype's BUILD) gains its children in place; a cycle counts as
    past the limits, and so do more than ``MAX_NODES`` values. ``Unfollowable`` when it cannot be followed."""
    children: list[list[int]] = []
    stack: list[int | None] = []  # node ids; None: a mark
    memo: dict[int, int] = {}

    def node(kids: list[int]) -> int:
        children.append(kids)
        if len(children) > MAX_NODES:
            raise OverflowError
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
                    before = before[:before.index(pickletools.markobject)]  # OBJ: its class is above the mark
                fills = name in _FILLS
                for _ in before[1:] if fills else before:
                    taken.append(stack.pop())
                if fills:  # the object below stays where it is, holding what it was given
                    children[stack[-1]].extend(t for t in taken if t is not None)
                    continue
                for item in op.stack_after:
                    stack.append(None if item is pickletools.markobject else node([t for t in taken if t is not None]))
    except OverflowError:
        return MAX_EXPANDED + 1, 0
    except (ValueError, IndexError, KeyError, TypeError) as exc:  # what it cannot follow is not loaded
        raise Unfollowable(f"its pickle cannot be followed ({type(exc).__name__}: {exc})") from None
    return _measure(children)


def _measure(children: list[list[int]]) -> tuple[int, int]:
    """The largest ``(objects, depth)`` of any node, counting shared children again; past the limits
    (or a cycle) it stops there. Iterative: a million-deep chain must not overflow this stack either."""
    size, depth = [0] * len(children), [0] * len(children)
    state = [0] * len(children)  # 0 new, 1 open, 2 done
    largest, total = (0, 0), 0
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
            total += size[top]  # each value is built (and may be hashed) once: many copies of a large one add up
            largest = (max(largest[0], size[top], total // 10), max(largest[1], depth[top]))
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
    """``torch.load(weights_only=True)`` of a file ``torch.save`` wrote, its pickle first checked by
    ``too_large`` (``TooLarge``); read once, so what is checked is what is loaded. An ``UnpicklingError`` for
    a file that is no plain torch.save archive: torch reads a file not starting with a zip header in its
    legacy format (another pickle than the archive's), and finds data.pkl whatever its case."""
    import torch

    raw = Path(path).read_bytes()
    try:
        if raw[:4] != b"PK\x03\x04":
            raise ValueError("no zip header at its start")
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            entries = [e for e in archive.infolist() if e.filename.lower().rsplit("/", 1)[-1] == "data.pkl"]
            if len(entries) != 1 or entries[0].filename.rsplit("/", 1)[-1] != "data.pkl":
                raise ValueError(f"{len(entries)} data.pkl entries")
            if entries[0].file_size > MAX_PICKLE:
                raise ValueError(f"a data.pkl of {entries[0].file_size:,} bytes")
            pickled = archive.read(entries[0])
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise pickle.UnpicklingError(f"not a torch.save archive ({exc})") from None
    why = too_large(pickled)
    if why:
        raise TooLarge(f"{why}, which no file hpsearch writes does (loading it would not end): possibly crafted, "
                       "so never loaded")
    return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
