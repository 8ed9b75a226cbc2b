"""What an earlier retraining of a run left that a later one reuses instead of training again: its
rows of ``retrain.csv`` (same epochs and schedule) and each retrained config's weights, kept in
``<run>/retrain_weights/<trial>.pt`` (owner-checked and read as data only, as the checkpoints are), so
that another ``winner_by`` or a smaller ``top`` chooses the winner again without training."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import torch

from ..rundir.names import RETRAIN_FILE, WEIGHTS_DIR, WINNER_FILE
from ..rundir.pickle_scan import load_torch_data
from ..rundir.run_info import read_table
from ..rundir.states import load_state, save_state

__all__ = ["stored_rows", "keep_weights", "winner_bundle", "crowned", "stored_weights", "drop_weights"]


def stored_rows(run_dir: Path, ranked: list[dict], epochs: int) -> dict[int, dict]:
    """The rows of ``retrain.csv`` a former call finished with these epochs and each config's schedule, by
    trial, with the search's columns as the ranking has them now (a resumed search may move a config)."""
    path = run_dir / RETRAIN_FILE
    if not path.is_file():
        return {}
    head = read_table(path, ("trial", "retrain_epochs"), "its configs are trained again", nrows=0)
    if head is None:
        return {}
    table = read_table(path, (), "its configs are trained again", keep_default_na=False, na_values=[""],
                       dtype={c: str for c in head.columns if c.startswith("param_")})  # written back as read
    if table is None:
        return {}
    by_trial = {c["trial"]: c for c in ranked}
    wanted = {trial: c["config"].get("schedule", "none") for trial, c in by_trial.items()}
    schedules = table["schedule"].fillna("none") if "schedule" in table else pd.Series("none", index=table.index)
    table = table[(table["retrain_epochs"] == epochs) & table["trial"].isin(list(wanted))
                  & (schedules == table["trial"].map(wanted))]
    rows = {}
    for row in table.to_dict("records"):
        row = {k: v for k, v in row.items() if k not in ("retrain_rank", "winner", "chosen_by", "in_top")}
        row["error"] = "" if pd.isna(row.get("error", "")) else str(row.get("error", ""))
        cand = by_trial[int(row["trial"])]
        row.update(trial=cand["trial"], search_rank=cand["search_rank"], cv_score=cand["cv_score"],
                   cv_accuracy=cand["cv_accuracy"], cv_epochs=cand.get("cv_epochs"))
        rows[cand["trial"]] = row
    return rows


def _weights_path(run_dir: Path, trial: int) -> Path:
    return run_dir / WEIGHTS_DIR / f"{int(trial)}.pt"


_PAYLOAD_KEYS = ("state_dict", "optimizer_state", "epochs", "batch_size", "history")


def _as_payload(parts: dict) -> bytes:
    """``winner_payload``'s bytes from its parts (a kept weights file, or winner.pt itself)."""
    buffer = io.BytesIO()
    torch.save({k: parts[k] for k in _PAYLOAD_KEYS}, buffer)
    return buffer.getvalue()


def keep_weights(run_dir: Path, owner: dict, payload: bytes) -> None:
    parts = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    save_state(_weights_path(run_dir, owner["trial"]), parts, owner=owner)


def winner_bundle(run_dir: Path) -> dict | None:
    """winner.pt as stored (with its weights), or None when there is none that reads."""
    try:
        bundle = load_torch_data(run_dir / WINNER_FILE)
    except Exception:  # noqa: BLE001 - missing or damaged: its weights are simply not there to reuse
        return None
    return bundle if isinstance(bundle, dict) and all(k in bundle for k in _PAYLOAD_KEYS) else None


def crowned(bundle: dict | None, cand: dict, extra: dict) -> bool:
    """winner.pt is already this config's fit, chosen so (nothing to write again)."""
    return (bundle is not None and bundle.get("config") == cand["config"]
            and all(bundle.get(k) == v for k, v in extra.items()))


def stored_weights(run_dir: Path, bundle: dict | None, cand: dict, owner: dict, extra: dict) -> bytes | None:
    """The weights of a config's finished retraining: kept beside its row, or in winner.pt when that is
    this very fit (a retraining from before the weights were kept); None when neither has them."""
    if _weights_path(run_dir, cand["trial"]).is_file():
        kept = load_state(_weights_path(run_dir, cand["trial"]), owner=owner)
        if kept is not None and all(k in kept for k in _PAYLOAD_KEYS):
            return _as_payload(kept)
    same = ("trial", "retrain_epochs", "valid_label")
    if bundle is not None and bundle.get("config") == cand["config"] and all(bundle.get(k) == extra[k] for k in same):
        return _as_payload(bundle)
    return None


def drop_weights(run_dir: Path, trials: set[int]) -> None:
    """Forget the kept weights of configs without a row (another retraining's epochs or schedule)."""
    folder = run_dir / WEIGHTS_DIR
    for path in folder.glob("*.pt") if folder.is_dir() else ():
        if path.stem not in {str(t) for t in trials}:
            path.unlink(missing_ok=True)
