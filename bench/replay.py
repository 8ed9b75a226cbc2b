"""Replay search strategies on a tabulated benchmark over many seeds (see ``_replay``, ``_tables``).

    python bench/replay.py --table digits --n 150 --seeds 20
    python bench/replay.py --table fashion --n 150 --seeds 20 --max-epochs 27
    python bench/replay.py --table digits --n 150 --seeds 20 --confirm   # and one real run against its replay
    python bench/replay.py --table digits --n 150 --seeds 20 --bound     # and what keeping the winner costs, why
    python bench/replay.py --table fashion --seeds 40 --only racing-m0.02,f4-racing-trend \
        --versus racing-m0.02,f4-racing-trend                           # two strategies seed by seed

One line per strategy: ``strategy=NAME compute_ratio=X gap_pts=Y best_pruned=F`` (compute_ratio:
random search's compute over the strategy's, gap_pts: the CV accuracy of random search's winner (best
by the score, neg-log-loss) minus the chosen config's, in points, so it may be negative; both medians
over the seeds; best_pruned: the share of seeds where random
search's winner did not reach the full budget), then a Markdown table with spreads and test
accuracies, and the anytime curve as a picture (``--figure``).

Strategies: ``random`` (every config the full budget), ``halving`` (automatic rungs, every fold:
``--fold-racing off``), ``halving-f2`` / ``halving-f4`` (factor 2 / 4), ``halving-min2`` / ``halving-min3``
(the first rung at 2 / 3 epochs, ``--min-epochs``), ``halving-bound`` (a rung ranks by the fold-wise
lower bound, mean - sd / sqrt(folds), instead of the mean), ``hyperband``, ``sklearn-halving``
(scikit-learn's ``HalvingRandomSearchCV``, restarting survivors), ``racing-m<margin>`` (halving
with fold racing, ``--fold-racing <margin>``), ``halving-trend`` / ``halving-f4-trend`` (factor 3 / 4,
rungs ranked by the trend, ``--trend 0.5``), ``f4-racing-trend`` (factor 4, ``--fold-racing 0.02``,
``--trend 0.5``: halving's defaults from the eighth session to the tenth) and ``default``: what the
quick start runs, halving's defaults now (factor 3, ``--fold-racing 0.02``, no trend: the same as
``racing-m0.02``). ``halving`` and its variants are factor 3 unless named, every fold, no trend.
With ``--prior-from TABLE``, also ``halving-prior``: halving whose shorter rungs rank by a forecast
learned on the other table (``_prior``); ``--prior-from undrawn`` learns it per seed on the table's
configs that seed did not draw.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import whole  # noqa: E402,I001
from _oracle import cheapest_cuts, winner_ranks  # noqa: E402
from _prior import fit_prior, replay_prior, undrawn  # noqa: E402
from _replay import draw_configs, replay_sklearn_halving, replay_strategy, trained  # noqa: E402
from _replay_report import figure, summarize, versus_line  # noqa: E402
from _tables import load_table  # noqa: E402

from hpsearch.strategies import STRATEGIES  # noqa: E402
from hpsearch.strategies.halving import DEFAULT_FACTOR, DEFAULT_FOLD_RACING, DEFAULT_TREND  # noqa: E402

HERE = Path(__file__).resolve().parent
RACING_MARGINS = (0.0, 0.02, 0.05)
TREND = 0.5  # the trend's weight measured (halving's default from the eighth session to the tenth)


def strategies(max_epochs: int) -> dict:
    """name -> replay(table, drawn, seed)."""
    runs = {
        "random": lambda t, d, s: replay_strategy(t, d, "random", max_epochs, s),
        "halving": lambda t, d, s: replay_strategy(t, d, "halving", max_epochs, s),
        "halving-f2": lambda t, d, s: replay_strategy(t, d, "halving", max_epochs, s, factor=2),
        "halving-f4": lambda t, d, s: replay_strategy(t, d, "halving", max_epochs, s, factor=4),
        "halving-bound": lambda t, d, s: replay_strategy(t, d, "halving", max_epochs, s, rank_by_bound=True),
        "halving-min2": lambda t, d, s: replay_strategy(t, d, "halving", max_epochs, s, min_epochs=2),
        "halving-min3": lambda t, d, s: replay_strategy(t, d, "halving", max_epochs, s, min_epochs=3),
        "hyperband": lambda t, d, s: replay_strategy(t, d, "hyperband", max_epochs, s),
        "sklearn-halving": lambda t, d, s: replay_sklearn_halving(t, d, max_epochs, s),
    }
    for margin in RACING_MARGINS:
        runs[f"racing-m{margin:g}"] = lambda t, d, s, m=margin: replay_strategy(t, d, "halving", max_epochs, s,
                                                                                fold_racing=m)
    runs["halving-trend"] = lambda t, d, s: replay_strategy(t, d, "halving", max_epochs, s, trend=TREND)
    runs["halving-f4-trend"] = lambda t, d, s: replay_strategy(t, d, "halving", max_epochs, s, factor=4, trend=TREND)
    runs["f4-racing-trend"] = lambda t, d, s: replay_strategy(t, d, "halving", max_epochs, s, factor=4,
                                                              fold_racing=DEFAULT_FOLD_RACING, trend=TREND)
    runs["default"] = lambda t, d, s: replay_strategy(t, d, "halving", max_epochs, s, factor=DEFAULT_FACTOR,
                                                      fold_racing=DEFAULT_FOLD_RACING, trend=DEFAULT_TREND)
    return runs


def bound_line(table, n: int, seeds: int, max_epochs: int) -> str:
    """What keeping random search's winner on 90% of the seeds costs a rule of one or two cuts, and how
    often such a rule keeps it within a tenth of random search's compute (``_oracle``)."""
    best = cheapest_cuts(table, n, seeds, max_epochs)
    cheapest, within = best["cheapest"], best["within"]
    first = (f"keeping random search's winner on >= 90% of seeds costs a one- or two-cut rule >= 1/"
             f"{1 / cheapest.share:.1f} of its compute (cuts (epochs, keep) {cheapest.cuts}, chosen in hindsight)"
             if cheapest else "no one- or two-cut rule keeps random search's winner on 90% of seeds")
    second = (f"within 1/10 of its compute such a rule keeps it on at most {100 * within.kept:.0f}% of seeds "
              f"(cuts {within.cuts})" if within else "no such rule fits in 1/10 of its compute")
    near = best["near"]
    third = (f"the cheapest such rule whose choice is within 0.3 points of random search's winner's CV accuracy "
             f"(median): 1/{1 / near.share:.1f} (cuts {near.cuts}, median {near.gap:.2f}, worst seed "
             f"{near.worst_gap:.2f})" if near else "no such rule comes within 0.3 points")
    return f"bound: {first}; {second}; {third}\n{horizon_line(table, n, seeds, max_epochs)}"


def horizon_line(table, n: int, seeds: int, max_epochs: int) -> str:
    """Where random search's winner ranks at each of halving's shorter rungs, against how many configs
    that rung keeps, and how well those epochs' scores rank the table at the full budget."""
    plan = STRATEGIES["halving"](n, max_epochs, 0, 3, None, 10).plan()  # [(configs, epochs)] per rung
    ranks = winner_ranks(table, n, seeds, max_epochs, [epochs for _, epochs in plan[:-1]])
    parts = [f"after {e} epoch{'s' * (e > 1)}: rank {r['median']:.0f} (90th percentile {r['p90']:.0f}), "
             f"halving keeps {kept}, Spearman {r['spearman']:.2f}"
             for (e, r), (kept, _) in zip(ranks.items(), plan[1:], strict=True)]
    return f"short horizon: random search's winner among the {n} by the mean score {'; '.join(parts)}"


def confirm(table, n: int, max_epochs: int, factor: int = 3, fold_racing: float | None = None,
            trend: float | None = None) -> tuple[str, float]:
    """One real ``hpsearch search --strategy halving`` run with these settings on the table's data, seed,
    folds and engine (its configs 0..n-1 are the table's rows 0..n-1) against the replay of those rows:
    ``(a line, its wall seconds)``. ``fold_racing`` / ``trend`` None: ``off``."""
    from strategies import stratified_slice

    from hpsearch.data import load_dataset
    from hpsearch.rundir.store import load_records, load_results
    from hpsearch.search.run import run_search
    from hpsearch.settings import SearchSettings

    p = table.provenance
    images = p["train_images"] if p["dataset"] != "digits" else None
    dataset = stratified_slice(load_dataset(p["dataset"]), images, p["seed"])
    flags = {"factor": factor, "fold_racing": "off" if fold_racing is None else fold_racing,
             "trend": "off" if trend is None else trend}
    with tempfile.TemporaryDirectory(prefix="replay-confirm-") as tmp:
        start = time.perf_counter()
        run = run_search(SearchSettings(n=n, dataset=p["dataset"], cv=table.n_folds, max_epochs=max_epochs,
                                        patience=0, seed=p["seed"], n_jobs=2, strategy="halving", **flags,
                                        engine=p["engine"], out=str(Path(tmp) / "run"), progress=False),
                         dataset=dataset)
        wall = time.perf_counter() - start
        frame = load_results(run).set_index("trial")
        fold_epochs = trained(load_records(run))
    replay = replay_strategy(table, list(range(n)), "halving", max_epochs, p["seed"], factor=factor,
                             fold_racing=fold_racing, trend=trend)
    reached = {int(t): int(e) for t, e in frame["n_epochs"].items()}
    ran = frame.filter(regex=r"^split\d+_test_score$").notna().sum(axis=1)  # racing: a stopped config ran fewer
    same = all(frame.loc[t, "mean_test_score"] == table.score[t, :ran[t], e - 1].mean() for t, e in reached.items())
    name = "halving " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in flags.items())  # (0.02, 0.5, 3, off)
    return (f"confirm: a real {name} run (n={n}, {wall:.0f} s): the same configs at every rung "
            f"{reached == replay.reached}, the same scores bit for bit {same}, winner {int(frame.index[0])} "
            f"(replay {replay.chosen}), fold-epochs {fold_epochs:.0f} (replay {replay.fold_epochs})"), wall


def _table_path(parser, flag: str, name: str) -> Path:
    path = Path(name) if name.endswith(".npz") else HERE / "tables" / f"{name}.npz"
    if not path.exists():
        parser.error(f"{flag}: {path} does not exist; build it with python bench/table.py --table {name}")
    return path


def _rows(parser, args, n_configs: int) -> range | None:
    """``--rows FIRST:END`` as a range, checked against the table and ``--n``."""
    if args.rows is None:
        return None
    try:
        first, end = (int(part) for part in args.rows.split(":"))
    except ValueError:
        parser.error(f"--rows: FIRST:END, two whole numbers (300:450), got {args.rows!r}")
    if not 0 <= first < end <= n_configs or end - first < args.n:
        parser.error(f"--rows {args.rows}: a range of at least --n {args.n} rows within the table's {n_configs}")
    if args.bound or args.confirm or args.prior_from:
        parser.error("--rows applies to the replays and --versus only; leave out --bound, --confirm and --prior-from")
    return range(first, end)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--table", required=True, help="a name in bench/tables (digits, fashion) or a .npz path")
    parser.add_argument("--n", type=whole(2), default=150, help="configs per search (the quick start's 150)")
    parser.add_argument("--seeds", type=whole(1, 10_000), default=20,
                        help="searches replayed per strategy, each drawing its configs by its seed (default 20)")
    parser.add_argument("--first-seed", type=whole(0), default=0,
                        help="the seeds are FIRST-SEED .. FIRST-SEED + SEEDS - 1 (20: a second set of draws)")
    parser.add_argument("--max-epochs", type=whole(1), default=None, help="the full budget (default: the table's)")
    parser.add_argument("--only", default=None, help="comma list of strategies")
    parser.add_argument("--confirm", action="store_true",
                        help="also run a real halving search (factor 3, every fold, no trend) and one with factor 4, "
                             "--fold-racing 0.02, --trend 0.5 (the default from the eighth session to the tenth) on "
                             "the table's data and compare each with its replay")
    parser.add_argument("--confirm-n", type=whole(2), default=None, help="configs of the real runs (default --n)")
    parser.add_argument("--bound", action="store_true",
                        help="also print what keeping random search's winner costs any one- or two-cut rule, the "
                             "cheapest such rule within 0.3 points of it (cuts chosen in hindsight: see _oracle), "
                             "and where the winner ranks at halving's shorter rungs")
    parser.add_argument("--prior-from", default=None, metavar="TABLE",
                        help="also replay halving-prior: halving whose shorter rungs rank by a forecast of the full "
                             "budget's rank from the configs' hyperparameters, learned on this other table, or with "
                             "'undrawn' per seed on the configs that seed did not draw (_prior)")
    parser.add_argument("--rows", default=None, metavar="FIRST:END",
                        help="draw each seed's configs from table rows FIRST..END-1 only (300:450: the rows a grown "
                             "table added, configs no default was chosen on)")
    parser.add_argument("--versus", default=None, metavar="A,B",
                        help="also compare two of the strategies replayed seed by seed (B's choice minus A's)")
    parser.add_argument("--figure", default=None,
                        help="also draw the anytime curve into this PNG (BENCHMARKS.md's are in bench/figures/)")
    args = parser.parse_args(argv)
    path = _table_path(parser, "--table", args.table)
    table = load_table(path)
    max_epochs = table.max_epochs if args.max_epochs is None else args.max_epochs
    if not 1 <= max_epochs <= table.max_epochs or not 2 <= args.n <= table.n_configs:
        parser.error(f"the table has {table.n_configs} configs and {table.max_epochs} epochs: --n {args.n} and "
                     f"--max-epochs {max_epochs} must fit in them (--n at least 2)")
    tested = table.test_epochs
    if tested is not None and max_epochs not in tested:  # the test gap needs the test set scored at the budget
        parser.error(f"this table scored the test set after epochs {sorted(tested)} only: --max-epochs must be one "
                     "of them")
    if args.confirm_n is not None and args.confirm_n > table.n_configs:
        parser.error(f"--confirm-n {args.confirm_n}: the table has {table.n_configs} configs")
    rows = _rows(parser, args, table.n_configs)
    runs = strategies(max_epochs)
    if args.prior_from == "undrawn":
        if 2 * args.n > table.n_configs:
            parser.error(f"--prior-from undrawn learns on the {table.n_configs - args.n} configs a seed leaves, fewer "
                         f"than --n {args.n}: lower --n to {table.n_configs // 2} or less")
        runs["halving-prior"] = lambda t, d, s: replay_prior(
            t, d, s, fit_prior(undrawn(t, d), args.n, max_epochs, draws=10), max_epochs)
    elif args.prior_from:
        source = load_table(_table_path(parser, "--prior-from", args.prior_from))
        if source.n_configs < args.n:
            parser.error(f"--prior-from {args.prior_from}: its {source.n_configs} configs are fewer than --n {args.n}")
        models = fit_prior(source, args.n, max_epochs)
        runs["halving-prior"] = lambda t, d, s: replay_prior(t, d, s, models, max_epochs)
    names = ["random", *[n for n in (args.only.split(",") if args.only else runs) if n != "random"]]
    unknown = [n for n in names if n not in runs]
    if unknown:
        parser.error(f"--only: unknown {', '.join(unknown)}; choose from {', '.join(runs)}")
    versus = args.versus.split(",") if args.versus else []
    if versus and (len(versus) != 2 or not set(versus) <= set(names)):
        parser.error(f"--versus: two of the strategies replayed ({', '.join(names)}), comma-separated; "
                     f"got {args.versus!r}")
    results = {name: {} for name in names}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        drawn = draw_configs(table, args.n, seed, rows)
        for name in names:
            results[name][seed] = runs[name](table, drawn, seed)
    summary = summarize(table, results, max_epochs)
    p = table.provenance
    print(f"table {path.name}: {table.n_configs} configs x {table.n_folds} folds x {table.max_epochs} epochs of "
          f"{p['dataset']} ({p['train_images']} training images), commit {p['commit']}, {p['date']}; "
          f"{'' if rows is None else f'rows {rows.start}..{rows.stop - 1} only, '}"
          f"n={args.n}, seeds {args.first_seed}..{args.first_seed + args.seeds - 1}, full budget {max_epochs} epochs")
    for name, s in summary.items():
        print(f"strategy={name} compute_ratio={s['ratio'][0]:.2f} gap_pts={s['gap'][0]:.2f} "
              f"best_pruned={s['pruned']:.2f}")
    print()
    print("| strategy | compute ratio, median (IQR) | CV gap, pts, median (IQR) | CV gap, 90th percentile | worst CV "
          "gap | test gap, pts, median (IQR) | random's best pruned |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, s in summary.items():
        r, g, t = s["ratio"], s["gap"], s["test_gap"]
        print(f"| {name} | {r[0]:.2f} ({r[1]:.2f}–{r[2]:.2f}) | {g[0]:.2f} ({g[1]:.2f}–{g[2]:.2f}) | "
              f"{s['p90_gap']:.2f} | {s['worst_gap']:.2f} | {t[0]:.2f} ({t[1]:.2f}–{t[2]:.2f}) | "
              f"{100 * s['pruned']:.0f}% |")
    if args.figure:  # never by default: the command must not overwrite BENCHMARKS.md's pictures
        out = Path(args.figure)
        figure(table, results, max_epochs, out, f"{p['dataset']}, n={args.n}, {args.seeds} seeds, "
               f"{max_epochs} epochs: median over seeds")
        print(f"\nanytime curve: {out}")
    if versus:
        print(versus_line(table, results, *versus, max_epochs))
    if args.bound:
        print(bound_line(table, args.n, args.seeds, max_epochs))
    if args.confirm:
        n = args.confirm_n if args.confirm_n is not None else args.n
        plain, plain_s = confirm(table, n, max_epochs)
        print(plain, flush=True)
        trended, trended_s = confirm(table, n, max_epochs, 4, DEFAULT_FOLD_RACING, TREND)
        print(trended)
        print(f"confirm: wall time halving (factor 3, every fold, no trend) / (factor 4, racing, trend), side by "
              f"side: {plain_s / trended_s:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
