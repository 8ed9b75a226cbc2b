"""The run folder's file names, in one place: every module that reads or writes a run names its
files from here.

::

    <run>/
      trials.db          the trial store (an Optuna study in SQLite): every finished (config, rung)
      trials.csv         every trial, ranked (scikit-learn's cv_results_ columns)
      sorted_scores.dat  the ranking, as the Lab 3 report reads it
      sorted_params.dat  the configs in ranking order
      settings.json      the settings the search ran with (and its command line)
      space.toml         the search space exactly as searched
      dataset.npz        the data, when run_search was given a Dataset object (arrays only, no pickle)
      dataset.json       an image folder: its root, image size, colour and held-out test files
      states/            halving's continuation: one state per (config, fold) between rungs
      retrain.csv        the retrained configs and their test scores
      retrain_states/    retraining checkpoints (a crashed retraining resumes from them)
      retrain_weights/   each retrained config's weights (another rule or top chooses again without training)
      summary.json       the winner's summary (and which pictures were drawn)
      winner.pt          the winner bundle (weights and what rebuilds the net)
      report.html        the self-contained report
      compare.csv        ``hpsearch compare``'s table
      .lock              held while a command writes the run
"""

TRIALS_DB = "trials.db"
TRIALS_CSV = "trials.csv"
SORTED_SCORES = "sorted_scores.dat"
SORTED_PARAMS = "sorted_params.dat"
SETTINGS_FILE = "settings.json"
SPACE_FILE = "space.toml"
DATASET_FILE = "dataset.npz"
SOURCE_FILE = "dataset.json"
STATES_DIR = "states"
RETRAIN_FILE = "retrain.csv"
CHECKPOINTS_DIR = "retrain_states"
WEIGHTS_DIR = "retrain_weights"
SUMMARY_FILE = "summary.json"
WINNER_FILE = "winner.pt"
REPORT_FILE = "report.html"
COMPARE_FILE = "compare.csv"
LOCK_FILE = ".lock"
