"""Seeds of ``bench/strategies.py`` side by side: each contender's chosen config against halving's, per
seed and in the median, read from the runs' printed tables (one log per seed, stdout as written).

    for s in 5 6 7 8; do
        python bench/strategies.py --n 150 --max-epochs 27 --factor 4 --trend 0.5 --min-epochs auto --equal-compute \\
            --only halving,halving-before,dehb,optuna-tpe-hyperband --retrains 3 --seed $s > seed$s.log
    done
    python bench/strategies_summary.py seed*.log

prints one row per seed (each contender's fold-epochs, CV accuracy and test accuracy, and its
difference from halving's in points) and the medians, as BENCHMARKS.md's tables show them. The seed is
read from each log's ``command:`` line.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from pathlib import Path

REFERENCE = "halving"


def read_log(text: str) -> tuple[int, dict[str, dict]]:
    """The seed and ``{contender: {fold_epochs, cv, test, retrainings}}`` of one strategies.py log
    (accuracies in percent)."""
    seed = re.search(r"--seed[ =](\d+)", text) or re.search(r"\bseed=(\d+)", text)
    if seed is None:
        raise ValueError("no seed: the log has no command line with --seed (or seed=)")
    found: dict[str, dict] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 12 and cells[1] != "wall (s)" and not cells[1].startswith("---"):
            if cells[1].startswith("failed"):
                continue
            found[cells[0]] = {"fold_epochs": float(cells[2].replace(",", "")), "cv": float(cells[4].rstrip("%")),
                               "test": float(cells[6].rstrip("%")), "retrainings": []}
        elif len(cells) == 5 and cells[0] in found:
            each = re.search(r"test acc of the \d+ retrainings: ([\d., ]+)%", cells[4])
            if each:
                found[cells[0]]["retrainings"] = [float(a) for a in each.group(1).split(",")]
    if not found:
        raise ValueError("no contender's row: is this the stdout of bench/strategies.py?")
    return int(seed.group(1)), found


def summary(logs: dict[int, dict[str, dict]]) -> str:
    """The markdown table: per seed, halving's fold-epochs and CV / test accuracy, and every other
    contender's with its difference from halving's; then the medians of each."""
    others = sorted({name for found in logs.values() for name in found} - {REFERENCE})
    head = ["seed", f"{REFERENCE} fold-epochs", f"{REFERENCE} CV / test"]
    for name in others:
        head += [f"{name} fold-epochs", f"{name} CV / test", f"{name} - {REFERENCE}, CV / test (pts)"]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---:" for _ in head) + " |"]
    columns: dict[str, list[float]] = {}

    def keep(key: str, value: float) -> float:
        columns.setdefault(key, []).append(value)
        return value

    for seed in sorted(logs):
        found = logs[seed]
        ref = found.get(REFERENCE)
        row = [str(seed)]
        if ref:
            cv, test = keep("ref cv", ref["cv"]), keep("ref test", ref["test"])
            row += [f"{ref['fold_epochs']:,.0f}", f"{cv:.2f}% / {test:.2f}%"]
        else:
            row += ["–", "–"]
        for name in others:
            got = found.get(name)
            if got is None:
                row += ["–", "–", "–"]
                continue
            row += [f"{got['fold_epochs']:,.0f}", f"{keep(name + ' cv', got['cv']):.2f}% / "
                    f"{keep(name + ' test', got['test']):.2f}%"]
            row.append(f"{keep(name + ' dcv', got['cv'] - ref['cv']):+.2f} / "
                       f"{keep(name + ' dtest', got['test'] - ref['test']):+.2f}" if ref else "–")
        lines.append("| " + " | ".join(row) + " |")

    def median(key: str, fmt: str) -> str:
        return format(statistics.median(columns[key]), fmt) if columns.get(key) else "–"

    row = ["**median**", "", f"{median('ref cv', '.2f')}% / {median('ref test', '.2f')}%"]
    for name in others:
        row += ["", f"{median(name + ' cv', '.2f')}% / {median(name + ' test', '.2f')}%",
                f"**{median(name + ' dcv', '+.2f')} / {median(name + ' dtest', '+.2f')}**"]
    lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("logs", nargs="+", type=Path, help="bench/strategies.py's stdout, one file per seed")
    args = parser.parse_args(argv)
    logs: dict[int, dict[str, dict]] = {}
    for path in args.logs:
        try:
            seed, found = read_log(path.read_text())
        except (OSError, ValueError) as exc:
            print(f"strategies_summary: {path}: {exc}", file=sys.stderr)
            return 2
        if seed in logs:
            print(f"strategies_summary: {path}: seed {seed} twice; give one log per seed", file=sys.stderr)
            return 2
        logs[seed] = found
    print(summary(logs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
