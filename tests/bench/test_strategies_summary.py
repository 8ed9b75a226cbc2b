"""bench/strategies_summary.py reads what bench/strategies.py prints (its own ``report``, written here
for made-up outcomes) and puts the seeds side by side: the right numbers, differences and medians."""

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from _contest import Outcome  # noqa: E402
from strategies import report  # noqa: E402
from strategies_summary import main, read_log, summary  # noqa: E402

CONFIG = {"hidden": [64], "optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-4, "dropout": 0.3}


def _log(seed, capsys, monkeypatch, **accuracies) -> str:
    """strategies.py's stdout for made-up outcomes: ``name=(fold_epochs, cv, [test of each retraining])``."""
    monkeypatch.setattr(sys, "argv", ["bench/strategies.py", "--equal-compute", "--seed", str(seed)])
    outcomes = []
    for name, (fold_epochs, cv, tests) in accuracies.items():
        each = ", ".join(f"{100 * a:.2f}" for a in tests)
        outcomes.append(Outcome(name.replace("_", "-"), wall_s=10.0, fold_epochs=fold_epochs, compute=1.0,
                                cv_score=-0.4, cv_accuracy=cv, budget=27, full_budget=3, config=CONFIG,
                                test_accuracy=float(np.mean(tests)), retrain_s=1.0,
                                note=f"test acc of the {len(tests)} retrainings: {each}%"))
    outcomes.append(Outcome("tpe", error="ValueError: made up"))  # a failed contender is left out
    bench = SimpleNamespace(dataset=SimpleNamespace(name="fashion-mnist", y_test=np.zeros(10)), n=150,
                            max_epochs=27, min_epochs=None, first_rung=1, factor=4, n_startup=10, seed=seed)
    capsys.readouterr()
    report(outcomes, bench, None, 12_000)
    return capsys.readouterr().out


def test_the_seeds_side_by_side_with_differences_and_medians(capsys, monkeypatch, tmp_path):
    logs = {
        5: _log(5, capsys, monkeypatch, halving=(950, 0.8650, [0.85, 0.86, 0.87]),
                dehb=(960, 0.8700, [0.84, 0.85, 0.86])),
        6: _log(6, capsys, monkeypatch, halving=(940, 0.8600, [0.86, 0.86, 0.86]),
                dehb=(1_010, 0.8550, [0.87, 0.87, 0.88])),
        7: _log(7, capsys, monkeypatch, halving=(930, 0.8700, [0.85, 0.85, 0.85]),
                dehb=(945, 0.8710, [0.86, 0.86, 0.86])),
    }
    seed, found = read_log(logs[6])
    assert seed == 6 and set(found) == {"halving", "dehb"}
    assert found["dehb"] == {"fold_epochs": 1010.0, "cv": 85.5, "test": 87.33, "retrainings": [87.0, 87.0, 88.0]}

    table = summary({s: read_log(text)[1] for s, text in logs.items()}).splitlines()
    assert table[0] == ("| seed | halving fold-epochs | halving CV / test | dehb fold-epochs | dehb CV / test "
                        "| dehb - halving, CV / test (pts) |")
    assert table[2] == "| 5 | 950 | 86.50% / 86.00% | 960 | 87.00% / 85.00% | +0.50 / -1.00 |"
    assert table[3] == "| 6 | 940 | 86.00% / 86.00% | 1,010 | 85.50% / 87.33% | -0.50 / +1.33 |"
    assert table[-1] == "| **median** |  | 86.50% / 86.00% |  | 87.00% / 86.00% | **+0.10 / +1.00** |"

    paths = []
    for s, text in logs.items():
        paths.append(tmp_path / f"seed{s}.log")
        paths[-1].write_text(text)
    assert main([str(p) for p in paths]) == 0
    assert capsys.readouterr().out.splitlines() == table
    assert main([str(paths[0]), str(paths[0])]) == 2
    assert "seed 5 twice; give one log per seed" in capsys.readouterr().err
    (tmp_path / "other.log").write_text("no table here --seed 3\n")
    assert main([str(tmp_path / "other.log")]) == 2
    assert "no contender's row: is this the stdout of bench/strategies.py?" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["| halving | 1 | 2 |", ""])
def test_a_log_without_a_seed_is_refused(text):
    with pytest.raises(ValueError, match="no seed"):
        read_log(text)
