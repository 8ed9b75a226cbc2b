"""The report's winner: its scores and config, how it was chosen, and every picture drawn for it (each
file named by summary.json, inlined only when it is a plain file of the run folder itself)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ..errors import shell
from ..rundir.chance import winner_at_chance
from ..rundir.exports import param_text
from . import html as H

__all__ = ["winner_section", "winner_figures"]

FIRST = ("confusion-matrix", "learning-curves", "class-report", "misclassified")  # how it does, then what it learned


def winner_figures(run_dir: Path, summary: dict) -> list[tuple[str, str, Path]]:
    """``(method, caption, path)`` of every picture (``.png``) and text report (``.txt``) drawn for
    the winner that is still there, in the order of ``hpsearch plot``'s registry; the caption is the
    method's one-line help."""
    from ..viz.plots import REGISTRY

    record, winner = summary.get("figures") or {}, summary.get("winner") or {}
    current = {k: record.get(k) for k in ("trial", "epochs")} == {k: winner.get(k) for k in ("trial", "epochs")}
    drawn = record.get("methods", {}) if current else {}  # pictures of an earlier winner are not this one's
    order = [*FIRST, *(m for m in REGISTRY if m not in FIRST)]
    out = []
    for method, files in sorted(drawn.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)):
        caption = REGISTRY[method].help if method in REGISTRY else ""
        for name in files:
            path = _own_file(run_dir, name)
            if path is not None and path.suffix in (".png", ".txt"):
                out.append((method, _which(caption, path.stem) or name, path))
    return out


def _which(caption: str, stem: str) -> str:
    """A method's caption, said of this one file (a layer's pictures are not all "layer 1")."""
    if not caption:
        return caption
    layer = re.search(r"_layer(\d+)", stem)
    part = (f"hidden layer {layer.group(1)}" if layer and "conv_" not in stem else
            f"convolution {layer.group(1)}" if layer else "the output layer" if stem.endswith("_output") else "")
    if stem.endswith("_box"):
        part += ": the exact maximizer of each unit over the [0, 1] box"
    return f"{caption} — {part}" if part else caption


def _not_drawn_yet(summary: dict, accounted: set[str]) -> list[str]:
    """The registry's pictures neither drawn for this winner (files still there) nor skipped as not applying."""
    from ..viz.plots import REGISTRY

    record = (summary.get("figures") or {}).get("methods") or {}
    return [m for m in REGISTRY if m not in accounted and not (m in record and not record[m])]


def _skipped_pictures(summary: dict) -> dict[str, str]:
    """The pictures ``plot all`` skipped for this winner, with the reason (a structure the net lacks)."""
    record, winner = summary.get("figures") or {}, summary.get("winner") or {}
    if {k: record.get(k) for k in ("trial", "epochs")} != {k: winner.get(k) for k in ("trial", "epochs")}:
        return {}
    skipped = record.get("skipped") or {}
    return {str(k): str(v) for k, v in skipped.items()} if isinstance(skipped, dict) else {}


def _own_file(run_dir: Path, name) -> Path | None:
    """``run_dir / name`` when ``name`` is a plain file name of a regular file in the run folder itself;
    None for anything else (a path, ``..``, a link leading out): a shared summary.json must not make
    the report inline a file from elsewhere (``~/.ssh/...``)."""
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        return None
    path = Path(run_dir) / name
    if path.is_symlink() or not path.is_file() or path.resolve().parent != Path(run_dir).resolve():
        return None
    return path


# summary.json's winner fields the report writes into the page, and the kind each must be
_WINNER_KINDS = {"trial": int, "search_rank": int, "epochs": int, "test_accuracy": float, "test_loss": float,
                 "config": dict}


def _damaged_field(winner: dict) -> str | None:
    """The first winner field of another kind than the retraining writes (a hand-edited or crafted
    summary.json: its text would go into the page as markup), else None."""
    for key, kind in _WINNER_KINDS.items():
        value = winner.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float if kind is float else kind):
            return key
    return None


def winner_section(run_dir: Path, summary: dict, frame: pd.DataFrame | None = None, waiting: str | None = None) -> str:
    """The winner and its pictures; ``frame``: the search's results (a winner at chance there is said);
    ``waiting``: why nothing is retrained yet (``pending``)."""
    winner = summary.get("winner")
    if not winner:
        return H.note(f"no winner yet: {waiting}" if waiting else "no winner yet: it is crowned by the retraining "
                      f"(hpsearch retrain {shell(run_dir)}).", missing=True)
    damaged = _damaged_field(winner) if isinstance(winner, dict) else "winner"
    if damaged is not None:  # the report says the file is damaged, in one line (build_report's _damage_named)
        raise TypeError(f"its winner's {damaged} is not what the retraining writes")
    config = "  ".join(f"{k}={param_text(v)}" for k, v in winner["config"].items())
    chosen = (" <strong>(selected on the test set: optimistic)</strong>" if winner.get("chosen_by") == "test"
              else "")  # --winner-by test: the choice read the test set, so its accuracy is biased upward
    body = (f'<p><span class="big">{winner["test_accuracy"]:.2%}</span> test accuracy{chosen} '
            f"(test log-loss {winner['test_loss']:.4f}) after {H.plural(winner['epochs'], 'epoch')}: trial "
            f"{winner['trial']}, rank {winner['search_rank']} in the search.</p><p><code>{H.escape(config)}</code></p>")
    if (summary.get("retrain") or {}).get("complete") is False:
        done = summary["retrain"]
        so_far = (f"{done['retrained']} of the top {done.get('top', '?')}" if "retrained" in done
                  else "some of the top's")
        body += H.note(f"the retraining stopped (Ctrl-C) after {so_far} configs: this is the best of those so far; "
                       f"hpsearch retrain {shell(run_dir)} retrains the rest.", missing=True)
    learned_nothing = winner_at_chance(frame, winner["trial"])
    if learned_nothing:
        body += H.note(learned_nothing)
    figures = winner_figures(run_dir, summary)
    if not figures:
        return body + H.note(f"the winner's pictures are not drawn yet: hpsearch plot all {shell(run_dir)}",
                             missing=True)
    parts, seen = [], set()
    skipped = _skipped_pictures(summary)
    if skipped:
        parts.append(H.note("not drawn for this winner: " + "; ".join(f"{m}: {why}" for m, why in skipped.items())))
    missing = _not_drawn_yet(summary, {method for method, _, _ in figures} | set(skipped))
    if missing:  # a pictures step stopped part way (Ctrl-C, kill), or only some methods were asked for
        parts.append(H.note(f"not drawn yet: {', '.join(missing)}; hpsearch plot all {shell(run_dir)} draws them",
                            missing=True))
    for method, caption, path in figures:
        heading = f"<h3>{H.escape(method)}</h3>" if method not in seen else ""
        seen.add(method)
        if path.suffix == ".txt":
            parts.append(f'{heading}<div class="scroll"><pre>{H.escape(path.read_text())}</pre></div>')
        else:
            parts.append(heading + H.figure(path.read_bytes(), f"{caption} ({path.name})", alt=path.stem))
    return body + "\n".join(parts)
