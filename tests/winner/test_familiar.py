"""The flag beside a prediction: calibrated on training images so it stays quiet on the test set and
fires on noise, gradients and another dataset's images."""

import numpy as np

from hpsearch.winner.familiar import QUANTILE, Familiarity, distances, familiarity_reference
from hpsearch.winner.predict import Predictor
from hpsearch.winner.predict_files import answer_line


def test_distances_are_root_mean_squares_to_the_nearest():
    reference = np.zeros((2, 1, 2, 2))
    reference[1] = 1.0
    X = np.stack([np.full((1, 2, 2), 0.9), np.full((1, 2, 2), 0.2)])
    np.testing.assert_allclose(distances(X, reference), [0.1, 0.2])


def test_calibrated_on_training_images(digits):
    entry = familiarity_reference(digits.X_train)
    assert entry["quantile"] == QUANTILE and entry["reference"].shape[0] == min(1000, len(digits.X_train) // 2)
    scores = Familiarity(entry).score(digits.X_test)
    assert np.mean(scores > 1) <= 0.05  # the test set is like the training set


def test_the_winner_flags_noise_and_not_the_test_set(retrained_run, digits, tmp_path):
    predictor = Predictor.from_run(retrained_run)
    flagged = [predictor.unlike(x)["unlike_training"] for x in digits.X_test]
    assert np.mean(flagged) <= 0.05
    rng = np.random.default_rng(0)
    noise = [predictor.unlike(rng.uniform(0, 1, (1, 8, 8)).astype(np.float32)) for _ in range(50)]
    assert all(a["unlike_training"] and a["ood_score"] > 1 for a in noise)
    ramp = np.tile(np.linspace(0, 1, 8, dtype=np.float32), (8, 1))[None]
    assert predictor.unlike(ramp)["unlike_training"]
    line = answer_line({"path": "n.png", "class_name": "4", "probability": 1.0, **noise[0]})
    assert line.split("\t")[3] == f"unlike the training images (score {noise[0]['ood_score']:.2f} > 1)"


def test_an_older_bundle_without_a_reference_says_nothing(retrained_run):
    predictor = Predictor.from_run(retrained_run)
    predictor.familiarity = None
    assert predictor.unlike(np.zeros((1, 8, 8), np.float32)) == {"ood_score": None, "unlike_training": None}
    assert Familiarity.of({"dataset": "digits"}) is None
