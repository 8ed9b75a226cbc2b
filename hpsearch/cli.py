"""The command line: ``hpsearch <command> ...`` (``run_search.py`` is ``hpsearch search``).

Bad input exits with code 2 and one message naming the parameter, what is allowed, what was given
and the fix; Ctrl-C exits with code 130 after saving every finished trial.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from . import commands
from .cli_parsing import OneLineParser, empty_value, subparser, unrecognized, value_type
from .cli_parsing import whole_number as whole
from .errors import UsageError, parameter_names

__all__ = ["main", "build_parser", "parse_args", "flag"]

EPILOG = """\
examples (run_search.py, the Lab 3 seed's name, takes the same flags):
  hpsearch search --n 150 --dataset digits                  # offline, bundled data
  hpsearch search --n 150 --dataset mnist --data-dir ~/data/mnist
  hpsearch search --n 150 --dataset fashion-mnist           # Debian's dataset-fashion-mnist
  hpsearch search --dataset folder --data-dir my_images --space my_space.toml   # your images, your network
  hpsearch search --resume results/digits_mlp_mnist_seed0   # continue an interrupted search
  hpsearch search --n 150 --strategy halving                # successive halving, factor 3, folds raced
  hpsearch search --n 150 --strategy hyperband --min-epochs 2 --max-epochs 54
  hpsearch search --n 60 --strategy tpe                     # Optuna's TPE sampler
  hpsearch search --n 150 --backend dask --scheduler tcp://HOST:8786   # on a Dask cluster

outputs (in --out): trials.db (every finished trial), trials.csv (cv_results_-shaped),
sorted_scores.dat and sorted_params.dat (best first, line i matches line i), space.toml,
settings.json. Running the same command again resumes the run where it stopped.
Then (unless --no-retrain) the best --top configs are retrained on the whole training set for
--retrain-epochs and scored on the test set: retrain.csv, winner.pt (load it with
hpsearch.load_winner(run_dir)), summary.json, and the winner's pictures (hpsearch plot all).
"""


# The one place where parameter names become flags: a parameter is its flag with dashes
# (max_epochs is --max-epochs) unless listed here.
FLAGS = {"source": "--from"}


def flag(name: str) -> str:
    """The command line's flag for the library's parameter ``name``."""
    return FLAGS.get(name, "--" + name.replace("_", "-"))


def _setting_help(name: str, spec, default, stored: str) -> str:
    """A setting's --help line; ``stored``: "" for a search's own setting, "retrain" where the flag's default is
    the run's stored choice (hpsearch retrain), "resume" where it is with --resume only (hpsearch search)."""
    text = spec.help
    if spec.choices is not None:
        choices = spec.choices()
        if isinstance(choices, dict) and all(isinstance(v, str) for v in choices.values()):  # described
            text += ": " + "; ".join(f"{k}: {v}" for k, v in choices.items())
        elif not spec.strict:  # argparse lists strict choices itself
            text += f" (one of {', '.join(choices)})"
    fallback = spec.unset if default is None else default
    if stored == "retrain":  # a flag given, else the run's stored choice, else the default
        return text + f" (default: the run's stored {flag(name)}, else {fallback})"
    if stored == "resume":  # a search (or the same command again) takes the default; --resume the stored choice
        return text + f" (default {fallback}; with --resume, the run's stored {flag(name)})"
    return text if "default" in text or default is None else text + f" (default {default})"


def _add_settings(p: argparse.ArgumentParser, group: str, stored: str = "") -> None:
    """One flag per setting of ``group``, as ``hpsearch.settings`` declares it. Defaults are None so
    that --resume (and hpsearch retrain) can tell the flags given from the stored settings."""
    from dataclasses import fields

    from .settings import SearchSettings, setting_specs

    defaults = {f.name: f.default for f in fields(SearchSettings)}
    for name, spec in setting_specs(group).items():
        if not spec.flag:
            continue
        choices = tuple(spec.choices()) if spec.choices is not None and spec.strict else None
        kind = value_type(spec.kind) if spec.kind is not str else None
        named = tuple(spec.choices()) if spec.choices is not None else ()
        if spec.kind is str and named and all(isinstance(c, str) and c == c.lower() for c in named):
            kind = str.lower  # --strategy TPE is tpe, as --dataset Digits is digits
        p.add_argument(flag(name), type=kind, choices=choices, metavar=spec.metavar,
                       help=_setting_help(name, spec, defaults[name], stored))


def _add_search_args(p: argparse.ArgumentParser) -> None:
    _add_settings(p, "search")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the search stored in RUN_DIR "
                   "with its stored settings (a random or tpe run's --n may change, never below its scored trials)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_settings(p, "backend")


def _add_retrain_args(p: argparse.ArgumentParser, stored: str) -> None:
    _add_settings(p, "retrain", stored)


def _add_plot_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", type=whole, default=25, help="images to show, for per-image pictures "
                   "such as misclassified (default 25)")
    p.add_argument("--units", type=whole, default=25, help="units per hidden layer in neuron pictures "
                   "(default 25; the output layer shows every class)")


# The methods of hpsearch.viz.plots.REGISTRY, in its order: named here so that the help lists them without
# importing the registry (matplotlib, torch); tests/test_cli_startup.py checks that they are its keys.
PLOT_METHODS = ("receptive-fields", "maximizers", "confusion-matrix", "class-report", "misclassified",
                "learning-curves", "cam", "grad-cam", "hires-cam", "saliency", "guided-backprop", "occlusion",
                "explanations", "feature-maps", "filters", "conv-maximizers", "deepdream", "sanity")


def _plot_methods() -> list[str]:
    return [*PLOT_METHODS, "all", "search"]


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="hpsearch",
        description="Hyperparameter search and visual explanation of small PyTorch image "
                    "classifiers.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    search = sub.add_parser(
        "search", help="sample configs, cross-validate each, rank them",
        description="Sample configs from a space (random search as in the Lab 3 seed, successive halving, "
                    "Hyperband or TPE: --strategy), score each by k-fold cross-validation, save the ranking, then "
                    "retrain the best and draw the winner's pictures.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_search_args(search)
    _add_retrain_args(search, "resume")
    search.add_argument("--no-retrain", action="store_true", help="stop after the ranking: no "
                        "retraining, no winner, no pictures")
    _add_plot_args(search)
    search.set_defaults(func=commands.cmd_search)

    retrain = sub.add_parser(
        "retrain", help="retrain a run's best configs on the whole training set, crown a winner",
        description="Retrain the top configs of a finished (or partial) search on the whole training "
                    "set, score each on the test set, and save the winner: by default the best by the search's CV "
                    "rank, the test set never read for the choice (--winner-by) (winner.pt, retrain.csv, "
                    "summary.json in RUN_DIR).")
    retrain.add_argument("run_dir", metavar="RUN_DIR", help="a run folder made by hpsearch search")
    _add_retrain_args(retrain, "retrain")
    _add_settings(retrain, "backend")
    retrain.add_argument("--n-jobs", type=whole, default=None, help="parallel jobs, one config each; -1 = one per "
                         "core, torch threads per job = cores // jobs (default: the run's stored --n-jobs, else -1)")
    retrain.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    retrain.add_argument("--no-progress", action="store_true", help="no progress bar")
    retrain.set_defaults(func=commands.cmd_retrain)

    methods = _plot_methods()
    plot = sub.add_parser(
        "plot", help="draw pictures of a run's winner into its folder",
        description="Draw METHOD for the winner saved in RUN_DIR and write <RUN_DIR>/<name>.png "
                    f"(and .txt/.csv for reports). METHOD: {', '.join(methods)}; 'all' draws every "
                    "method that applies to the winner and says which it skipped and why.")
    plot.add_argument("method", metavar="METHOD", type=str.lower, help=", ".join(methods))
    plot.add_argument("run_dir", metavar="RUN_DIR", nargs="?",
                      help="a run folder holding winner.pt (for search: any run folder, retrained or not)")
    _add_plot_args(plot)
    plot.add_argument("--layer", metavar="NAME", help="the layer grad-cam and hires-cam explain, as the module "
                      "names it (features.2); default: the last convolution's ReLU for the built-in CNNs, the last "
                      "Conv2d for your own network (a wrong name lists the choices)")
    plot.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    plot.set_defaults(func=commands.cmd_plot)

    serve = sub.add_parser(
        "serve", help="a local page: drop an image, see the winner's class and heat map",
        description="Load the winner of RUN_DIR once and serve a page (and a JSON API: GET /api/info, "
                    "GET /api/examples, POST /api/predict) on http://HOST:PORT/. Needs the web extra: "
                    "pip install -e '.[web]'.")
    serve.add_argument("run_dir", metavar="RUN_DIR", help="a run folder holding winner.pt")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this "
                       "machine only; 0.0.0.0 opens it to the network)")
    serve.add_argument("--port", type=whole, default=8000, help="port (default 8000; 0: a free one, said on start)")
    serve.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    serve.set_defaults(func=commands.cmd_serve)

    predict = sub.add_parser(
        "predict", help="the winner's class and probability for image files, heat maps with --explain",
        description="Load the winner of RUN_DIR once; print per FILE (preprocessed as the page does) its path, "
                    "class and probability, tab-separated, or an error line; exit code 1 if some file failed.")
    predict.add_argument("run_dir", metavar="RUN_DIR", nargs="?", help="a run folder holding winner.pt (none with "
                         "--model)")
    predict.add_argument("files", metavar="FILE", nargs="*", help="PNG, JPEG, GIF, BMP, WebP or TIFF files")
    predict.add_argument("--model", metavar="FILE_OR_DIR", help="predict with an exported model.onnx or model.ts "
                         "(or their folder) and its model.json alone, no run folder: then every positional is a FILE")
    predict.add_argument("--explain", action="store_true", help="write each file's heat map to <stem>.heatmap.png")
    predict.add_argument("--out-dir", metavar="DIR", help="with --explain: write the heat maps in DIR, not beside")
    predict.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    predict.set_defaults(func=commands.cmd_predict)

    export = sub.add_parser(
        "export", help="the winner as ONNX and TorchScript files with a model.json card, checked against it",
        description="Write the winner of RUN_DIR as model.onnx (ONNX Runtime, onnxruntime-web, OpenCV dnn) and/or "
                    "model.ts (TorchScript: libtorch, torch.jit), each returning probabilities with a dynamic batch, "
                    "and model.json: class names, input shape, dtype and range, the preprocessing, the output, the "
                    "config and scores, versions. Each file is run in its own runtime on the test images and compared "
                    "with the winner (same argmax, probabilities within 1e-4). Again: a no-op until the winner "
                    "changes.")
    export.add_argument("run_dir", metavar="RUN_DIR", help="a run folder holding winner.pt")
    export.add_argument("--format", choices=("onnx", "torchscript", "both"), default="both", type=str.lower,
                        help="which files (default both)")
    export.add_argument("--out", metavar="DIR", help="where to write them (default RUN_DIR/export)")
    export.add_argument("--no-check", action="store_true", help="skip running the files against the winner")
    export.set_defaults(func=commands.cmd_export)

    report = sub.add_parser(
        "report", help="one self-contained HTML page of a run: settings, ranking, search plots, winner",
        description="Write RUN_DIR/report.html: the settings and data, the ranking and failures, the search "
                    "plots, the retraining table and the winner with its pictures, every image inlined (one "
                    "file that opens offline). run_search.py writes it at its end; run this after a later "
                    "retrain or plot. A run stopped early renders too, saying what is missing.")
    report.add_argument("run_dir", metavar="RUN_DIR", help="a run folder made by hpsearch search")
    report.set_defaults(func=commands.cmd_report)

    trusting = sub.add_parser(
        "trust", help="let hpsearch import the network module a run (someone else's) names",
        description="A run of your own network names its module (settings.json's module path, space.toml's "
                    "model = \"mynets:SmallCNN\"). Importing a module runs its code, so for a run folder hpsearch "
                    "imports only modules you searched with on this machine. Read the module the run names, "
                    "then trust it with this command: its folder and module names are kept in hpsearch's state "
                    "folder ($HPSEARCH_STATE_DIR, else $XDG_STATE_HOME/hpsearch, else ~/.local/state/hpsearch), "
                    "never in the run folder.")
    trusting.add_argument("run_dir", metavar="RUN_DIR", help="a run folder made by hpsearch search")
    trusting.set_defaults(func=commands.cmd_trust)

    triple = sub.add_parser(
        "make-triple", help="build Triple-MNIST (three digits per image) from digits, mnist or fashion-mnist",
        description="Write OUT/train, OUT/val and OUT/test, one folder per label (the three digits, e.g. 042/) of "
                    "8-bit grey PNG images 3s x 3s (84x84 from MNIST): three source images side by side at random "
                    "heights. Test draws from the source's test set, train and val from disjoint parts of its "
                    "training set. Then: run_search.py --dataset triple-mnist --data-dir OUT.")
    triple.add_argument("--from", dest="source", required=True, metavar="SOURCE",
                        help="digits (bundled), mnist or fashion-mnist")
    triple.add_argument("--data-dir", metavar="DIR", help="the source's idx files (as for run_search.py --data-dir)")
    triple.add_argument("--out", required=True, metavar="OUT", help="a new or empty folder")
    triple.add_argument("--n-train", type=whole, metavar="N", help="training images (default 64000; digits 3000)")
    triple.add_argument("--n-val", type=whole, metavar="N",
                        help="validation images, 0: none (default 16000; digits 600)")
    triple.add_argument("--n-test", type=whole, metavar="N", help="test images (default 20000; digits 600)")
    triple.add_argument("--seed", type=whole, default=0, help="same seed, same files byte for byte (default 0)")
    triple.add_argument("--overwrite", action="store_true", help="replace a Triple-MNIST make-triple built in OUT")
    triple.add_argument("--no-progress", action="store_true", help="no progress bar")
    triple.set_defaults(func=commands.cmd_make_triple)

    compare = sub.add_parser(
        "compare", help="retrain the best config of each head x loss (or other) group, test them side by side",
        description="For each combination of the --by config keys the search drew (default head,loss: the "
                    "Triple-MNIST seed's softmax/sigmoid x categorical/binary cross-entropy study), retrain its "
                    "best config on the run's training set (its --max-train slice, if any) and score it on the "
                    "test set; print the table (Markdown) and write RUN_DIR/compare.csv. The run's winner is "
                    "left alone; a rerun trains only the groups without a row.")
    compare.add_argument("run_dir", metavar="RUN_DIR", help="a run folder made by hpsearch search")
    compare.add_argument("--by", default="head,loss", help="config keys to group by, comma-separated "
                         "(default head,loss)")
    compare.add_argument("--retrain-epochs", type=whole, default=30, help="epochs of each retraining (default 30)")
    compare.add_argument("--same-config", action="store_true", help="retrain the search's best config with "
                         "every combination its space allows (all else equal), not each combination's own best")
    compare.add_argument("--n-jobs", type=whole, default=-1, help="groups retrained at once (default -1: one per core)")
    compare.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    compare.add_argument("--no-progress", action="store_true", help="no progress bar")
    compare.set_defaults(func=commands.cmd_compare)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, its options anywhere: argparse fills a ``*`` or ``?`` positional before the first
    option, so the names after one (``predict RUN --explain a.png``, ``plot grad-cam --layer X RUN``)
    would be refused as unrecognized; they go where they belong instead."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not any(word.startswith("-") for word in extra):
        if isinstance(getattr(args, "files", None), list):
            args.files, extra = [*args.files, *extra], []
        elif hasattr(args, "method") and getattr(args, "run_dir", "") is None and len(extra) == 1:
            args.run_dir, extra = extra[0], []
    command = subparser(parser, getattr(args, "command", None))
    if extra:  # named by the subcommand, whose help lists its flags
        command.error(unrecognized(command, extra))
    if (empty := empty_value(command, args)) is not None:
        command.error(empty)
    return args


def _for_the_run(args, exc: UsageError):
    """A run's own network that is gone from where the search found it, said for the command's run folder."""
    run = getattr(args, "run_dir", None) or getattr(args, "resume", None)
    if run is None or not hasattr(exc, "top"):
        return exc
    from .training.models.user import gone_from_the_run

    return gone_from_the_run(run, exc) or exc


def main(argv: list[str] | None = None) -> int:
    from .search.interrupt import ClusterLost, SearchInterrupted, keep_swallowed_interrupts, raise_if_interrupted

    args = parse_args(argv)
    keep_swallowed_interrupts()
    try:
        with warnings.catch_warnings(), parameter_names(flag):
            warnings.simplefilter("default")
            warnings.formatwarning = lambda msg, cat, *a, **k: f"{cat.__name__}: {msg}\n"
            if getattr(args, "run_dir", None) is not None and getattr(args, "model", None) is None:
                commands.check_run_folder(args.run_dir)  # (predict --model takes image files, not a run)
            code = args.func(args)
            raise_if_interrupted()  # a Ctrl-C lost in a callback: the command is said interrupted, not done
            return code
    except UsageError as exc:
        print(f"hpsearch: error: {_for_the_run(args, exc)}", file=sys.stderr)
        return 2
    except ClusterLost as exc:  # not a Ctrl-C: the cluster went away; everything finished is kept
        print(f"\nhpsearch: error: {exc}", file=sys.stderr)
        return 1
    except SearchInterrupted as exc:
        print(f"\n{exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:  # outside the search's and retraining's own handlers (loading, plotting)
        print("\ninterrupted; everything finished is kept: run the same command again to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
