"""One self-contained HTML page per run (``hpsearch report RUN_DIR`` -> ``RUN_DIR/report.html``):
the settings and data, the ranking and failures, the search plots, the retraining and the winner
with its pictures, every image inlined, so it opens offline and can be sent as one file.

A run that stopped early renders too: each missing part says what is missing and which command
makes it.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import UsageError, damage_named, shell
from ..rundir.atomic import atomic_write_text
from ..rundir.exports import rewrite_trials_csv
from ..rundir.names import REPORT_FILE, RETRAIN_FILE, SETTINGS_FILE, SUMMARY_FILE, TRIALS_CSV, TRIALS_DB
from ..rundir.run_info import read_json, read_stored_settings
from . import html as H
from .content import (
    failures_section,
    pending,
    ranking_section,
    retrain_section,
    run_section,
    search_section,
)
from .winner_section import winner_section

__all__ = ["build_report", "write_report"]



def _read_json(path: Path) -> dict:
    return read_json(path)


def build_report(run_dir) -> str:
    """The report of ``run_dir`` as one HTML document (a string)."""
    from ..viz.search_plots import load_trials

    run_dir = Path(run_dir)
    if not (run_dir / TRIALS_DB).is_file() and not (run_dir / TRIALS_CSV).is_file():
        raise UsageError(f"{run_dir} holds no trials.db or trials.csv; is it a run folder made by hpsearch search?")
    settings = read_stored_settings(run_dir)
    summary = _read_json(run_dir / SUMMARY_FILE)
    with damage_named(run_dir / SETTINGS_FILE, "put back a copy of it: hpsearch search wrote it"):
        sections = [("run", "Settings and data", run_section(run_dir, settings))]
    with damage_named(run_dir / TRIALS_CSV, rewrite_trials_csv(run_dir)):
        frame = load_trials(run_dir)
        has_trials = frame is not None and not frame.empty
        sections += [
            ("ranking", "Ranking", ranking_section(run_dir, frame, settings)),
            ("failures", "Failures", failures_section(frame if has_trials else None, settings.get("chance"))),
            ("search", "Search plots", search_section(run_dir) if has_trials else H.note(
                "no trial stored yet: nothing to plot.", missing=True)),
        ]
        waiting = pending(run_dir, frame, settings)
    with damage_named(run_dir / RETRAIN_FILE, f"hpsearch retrain {shell(run_dir)} writes it again"):
        sections.append(("retraining", "Retraining", retrain_section(run_dir, settings, summary, waiting)))
    with damage_named(run_dir / SUMMARY_FILE, f"hpsearch retrain {shell(run_dir)} writes it again"):
        sections.append(("winner", "Winner", winner_section(run_dir, summary, frame, waiting)))
    strategy = settings.get("strategy", "random")
    title = f"hpsearch run {run_dir.name}"
    subtitle = (f"{settings.get('dataset', '?')} · {settings.get('space', '?')} space · {strategy} search · "
                f"written {time.strftime('%Y-%m-%d %H:%M %Z')} from {run_dir.resolve()}")
    return H.page(title, subtitle, sections)


def write_report(run_dir) -> Path:
    """Write ``RUN_DIR/report.html`` (atomically) and return its path."""
    run_dir = Path(run_dir)
    path = run_dir / REPORT_FILE
    atomic_write_text(path, build_report(run_dir))
    return path
