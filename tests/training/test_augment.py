"""Augmentation (hpsearch.training.augment): exact identities of the steps, seeding, training batches only."""

import numpy as np
import pandas as pd
import pytest
import torch

from hpsearch import make_net
from hpsearch.errors import UsageError
from hpsearch.rundir.states import capture, restore
from hpsearch.search.run import run_search
from hpsearch.settings import SearchSettings
from hpsearch.space.search_space import load_space
from hpsearch.training.augment import (
    AUGMENTS,
    NOISE_SIGMA,
    augment_batch,
    crop_padding,
    flip,
    gaussian_noise,
    random_crop,
)

KINDS = [kind for kind in AUGMENTS if kind != "none"]
CONFIG = {"model": "mlp", "hidden": [16], "lr": 3e-3}


def test_names():
    assert list(AUGMENTS) == ["none", "flip", "flip-crop", "flip-crop-noise"]


def test_flip_of_a_flipped_batch_is_the_batch():
    X = torch.rand(7, 3, 5, 6)
    which = torch.rand(7) < 0.5
    np.testing.assert_array_equal(flip(flip(X, which), which), X)
    everything = torch.ones(7, dtype=torch.bool)
    assert torch.equal(flip(X, everything), X[..., torch.arange(5, -1, -1)])  # columns reversed
    assert torch.equal(flip(X, ~everything), X)
    # the random flip: the same draws flip the same images back
    torch.manual_seed(3)
    once = flip(X)
    torch.manual_seed(3)
    assert torch.equal(flip(once), X)
    assert not torch.equal(once, X)


def test_none_is_the_batch_itself():
    X = torch.rand(4, 1, 8, 8)
    assert augment_batch(X, "none") is X


@pytest.mark.parametrize("kind", KINDS)
def test_seeded(kind):
    X = torch.rand(16, 3, 8, 8)
    outputs = []
    for seed in (5, 5, 6):
        torch.manual_seed(seed)
        outputs.append(augment_batch(X, kind))
    assert torch.equal(outputs[0], outputs[1])
    assert not torch.equal(outputs[0], outputs[2])
    assert outputs[0].shape == X.shape and outputs[0].dtype == X.dtype


def _shift(image, dy, dx, pad):
    """``image`` moved so that output pixel (y, x) is input pixel (y + dy, x + dx), zero outside."""
    _, height, width = image.shape
    padded = torch.nn.functional.pad(image, (pad[1], pad[1], pad[0], pad[0]))
    return padded[:, pad[0] + dy: pad[0] + dy + height, pad[1] + dx: pad[1] + dx + width]


def test_crop_is_a_shift_of_each_image_with_zero_padding():
    assert crop_padding(32, 32) == (4, 4) and crop_padding(28, 28) == (3, 3)
    assert crop_padding(8, 8) == (1, 1) and crop_padding(4, 12) == (1, 1)
    X = torch.rand(120, 2, 8, 8) + 0.1  # no zero pixels: a zero is padding
    out = random_crop(X)
    assert out.shape == X.shape
    pad = crop_padding(8, 8)
    seen = set()
    for image, cropped in zip(X, out, strict=True):
        matches = [(dy, dx) for dy in range(-pad[0], pad[0] + 1) for dx in range(-pad[1], pad[1] + 1)
                   if torch.equal(cropped, _shift(image, dy, dx, pad))]
        assert len(matches) == 1  # one (dy, dx) for every pixel and channel of the image
        seen.add(matches[0])
    assert len(seen) == 9  # every shift of up to one pixel each way is drawn
    # a wider pad: 16x16 images move by up to 2 pixels
    X = torch.rand(40, 1, 16, 16) + 0.1
    for image, cropped in zip(X, random_crop(X), strict=True):
        assert any(torch.equal(cropped, _shift(image, dy, dx, (2, 2))) for dy in range(-2, 3) for dx in range(-2, 3))


def test_noise_is_clipped_and_has_the_documented_sigma():
    grey = torch.full((64, 1, 16, 16), 0.5)
    noisy = gaussian_noise(grey)
    assert noisy.min() >= 0 and noisy.max() <= 1
    assert abs(float((noisy - grey).std()) - NOISE_SIGMA) < 0.003
    assert abs(float((noisy - grey).mean())) < 0.003
    extremes = torch.randint(0, 2, (32, 3, 8, 8)).float()  # black and white pixels: clipping bites
    for kind in KINDS:
        out = augment_batch(extremes, kind)
        assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(augment_batch(extremes, "flip-crop").unique(), torch.tensor([0.0, 1.0]))


def test_bad_name_and_bad_batch():
    with pytest.raises(UsageError, match=r"augment must be one of 'none', 'flip', 'flip-crop', "
                                         r"'flip-crop-noise', got 'flop'; did you mean 'flip'\?"):
        augment_batch(torch.rand(2, 1, 4, 4), "flop")
    with pytest.raises(UsageError, match=r"augment needs a batch of float images .* got \(2, 16\)"):
        augment_batch(torch.rand(2, 16), "flip")


def _rows(X) -> set[bytes]:
    return {row.tobytes() for row in np.asarray(X, dtype=np.float32)}


def _capture_inputs(net, X, y, seen):
    """Initialize ``net``, record (train mode, input) of every forward pass, and fit it."""
    net.initialize()
    hook = net.module_.register_forward_pre_hook(
        lambda module, args: seen.append((module.training, args[0].detach().cpu().numpy().copy())))
    net.partial_fit(X, y)
    return hook


@pytest.mark.parametrize("lean", [True, False])
def test_only_training_batches_are_augmented(digits, lean):
    X, y = digits.X_train[:600], digits.y_train[:600]
    net = make_net(CONFIG | {"augment": "flip"}, digits, max_epochs=2, patience=2, random_state=1, lean=lean)
    seen = []
    hook = _capture_inputs(net, X, y, seen)
    raw, flipped = _rows(X), _rows(X[..., ::-1])
    train = [row for training, batch in seen if training for row in _rows(batch)]
    valid = [row for training, batch in seen if not training for row in _rows(batch)]
    assert train and valid  # early stopping's validation split ran each epoch
    assert all(row in raw or row in flipped for row in train)
    changed = sum(row not in raw for row in train)
    assert 0.3 * len(train) < changed < 0.7 * len(train)  # about half of them flipped
    assert all(row in raw for row in valid)
    # predict_proba: the raw test images, and exactly the module's softmax on them
    seen.clear()
    proba = net.predict_proba(digits.X_test)
    hook.remove()
    assert seen and not any(training for training, _ in seen)
    np.testing.assert_array_equal(np.concatenate([batch for _, batch in seen]), digits.X_test)
    net.module_.eval()
    with torch.no_grad():
        manual = torch.softmax(net.module_(torch.as_tensor(digits.X_test)), dim=1).numpy()
    np.testing.assert_allclose(proba, manual, rtol=1e-6, atol=1e-7)


def _weights(net):
    return [p.detach().clone() for p in net.module_.parameters()]


def test_augmented_fits_are_reproducible_on_both_paths_and_continue_exactly(digits):
    X, y = digits.X_train[:600], digits.y_train[:600]
    config = CONFIG | {"augment": "flip-crop-noise"}

    def fitted(lean=True, epochs=4, **config_changes):
        return make_net(config | config_changes, digits, max_epochs=epochs, patience=0, random_state=7,
                        lean=lean).fit(X, y)

    first, again, plain = fitted(), fitted(), fitted(lean=False)
    for a, b, c in zip(_weights(first), _weights(again), _weights(plain), strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)  # the plain skorch path draws the same
    unaugmented = fitted(augment="none")
    assert not all(torch.equal(a, b) for a, b in zip(_weights(first), _weights(unaugmented), strict=True))
    # a fit paused after 2 epochs and continued from its state ends where the straight one does
    paused = fitted(epochs=2)
    state = capture(paused)
    torch.manual_seed(123)  # whatever ran in between
    resumed = make_net(config, digits, max_epochs=4, patience=0, random_state=7)
    restore(resumed, state)
    resumed.partial_fit(X, y, epochs=2)
    for a, b in zip(_weights(first), _weights(resumed), strict=True):
        assert torch.equal(a, b)


def test_net_refuses_a_bad_augment(digits):
    net = make_net(CONFIG | {"augment": "flop"}, digits, max_epochs=1, patience=0)
    with pytest.raises(UsageError, match="augment must be one of .*got 'flop'"):
        net.fit(digits.X_train[:50], digits.y_train[:50])


SPACE = """model = "mlp"
hidden = [16]
lr = 0.003
augment = {{ distribution = "categorical", choices = {choices} }}
"""


def test_space_with_augment_loads_and_a_bad_choice_is_refused(tmp_path):
    path = tmp_path / "space.toml"
    path.write_text(SPACE.format(choices='["none", "flip", "flip-crop", "flip-crop-noise"]'))
    assert load_space(path).params["augment"].support() == tuple(AUGMENTS)
    path.write_text(SPACE.format(choices='["none", "flop"]'))
    with pytest.raises(UsageError, match=r"\[augment\] choices: augment must be one of 'none', 'flip', "
                                         r"'flip-crop', 'flip-crop-noise' \(the augmentations\), got 'flop'"):
        load_space(path)


def test_search_with_augment_on_both_engines(tmp_path):
    space = tmp_path / "space.toml"
    space.write_text(SPACE.format(choices='["flip", "flip-crop-noise"]'))
    scores = {}
    for engine in ("skorch", "batched"):
        run = run_search(SearchSettings(n=2, dataset="digits", cv=2, max_epochs=2, patience=0, n_jobs=1,
                                        space=str(space), out=str(tmp_path / engine), progress=False,
                                        engine=engine))
        frame = pd.read_csv(run / "trials.csv").sort_values("trial")
        assert frame["error"].isna().all() and np.isfinite(frame["mean_test_score"]).all()
        assert set(frame["param_augment"]) <= {"flip", "flip-crop-noise"}
        scores[engine] = frame["mean_test_score"].to_numpy()
    # the batched engine handed both configs to the skorch engine: the same seeded fits
    np.testing.assert_array_equal(scores["batched"], scores["skorch"])
