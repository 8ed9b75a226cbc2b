"""The sanity check of the explanations: cascading randomization (Adebayo et al., 2018)."""

import copy
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from hpsearch.cli import main
from hpsearch.errors import UsageError
from hpsearch.training.net import make_net
from hpsearch.viz.sanity import (
    COLUMNS,
    MAX_IMAGES,
    THRESHOLD,
    occlusion_options,
    plot_sanity,
    randomizable_layers,
    rank_correlation,
    sanity_check,
    sanity_verdict,
    verdict_text,
)
from hpsearch.winner.bundle import load_winner


def _input(module, X, target):
    """A model-independent "explanation": the image itself (the paper's edge detector plays this role)."""
    return X


@pytest.fixture(scope="module")
def mlp(retrained_run):
    return load_winner(retrained_run)


@pytest.fixture(scope="module")
def mlp_frame(mlp, digits):
    torch.set_num_threads(1)
    return sanity_check(mlp, digits.X_test, extra={"input": _input})


@pytest.fixture(scope="module")
def cnn(digits):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = {"model": "cnn", "filters": [8, 8], "block_size": 1, "dense": [16], "lr": 0.05, "max_epochs": 2}
    return make_net(config, digits, patience=0).fit(digits.X_train[:400], digits.y_train[:400])


@pytest.fixture(scope="module")
def cnn_frame(cnn, digits):
    torch.set_num_threads(1)
    return sanity_check(cnn, digits.X_test, extra={"input": _input})


def _final(frame, method):
    last = frame[frame["step"] == frame["step"].max()].set_index("method")
    return float(last.loc[method, "spearman_mean"])


def test_rank_correlation_rules():
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(3, 1, 8, 8))
    np.testing.assert_array_equal(rank_correlation(maps, maps), 1.0)  # exactly 1, not 0.9999...
    np.testing.assert_allclose(rank_correlation(maps, -3 * maps), 1.0)  # on absolute values
    np.testing.assert_allclose(rank_correlation(maps, np.abs(maps) ** 3 + 1), 1.0)  # ranks only
    np.testing.assert_allclose(rank_correlation(maps, 1 / (np.abs(maps) + 1)), -1.0)  # reversed ranking
    zeros = np.zeros_like(maps)
    np.testing.assert_array_equal(rank_correlation(maps, zeros), 0.0)  # constant after randomization: 0
    np.testing.assert_array_equal(rank_correlation(zeros, maps), 0.0)  # constant trained map: 0
    np.testing.assert_array_equal(rank_correlation(zeros, zeros), 1.0)  # identical: 1
    mixed = maps.copy()
    mixed[1] = 0  # one image's map collapses: only its correlation is 0
    np.testing.assert_array_equal(rank_correlation(maps, mixed), [1.0, 0.0, 1.0])
    two = rng.normal(size=(2, 3, 4, 4))  # RGB: |map| summed over channels, one value per pixel
    np.testing.assert_allclose(rank_correlation(two, np.abs(two).sum(1)), 1.0)
    with pytest.raises(UsageError, match="same shape"):
        rank_correlation(maps, maps[:2])


def test_step_zero_is_exactly_one_for_every_method(mlp_frame, cnn_frame):
    for frame in (mlp_frame, cnn_frame):
        assert list(frame.columns) == COLUMNS
        first = frame[frame["step"] == 0]
        assert set(first["method"]) == set(frame["method"])
        assert (first["spearman_mean"] == 1.0).all() and (first["spearman_std"] == 0.0).all()
        assert (first["layer"] == "none").all() and (first["label"] == "trained").all()
        assert (frame["n_images"] == MAX_IMAGES).all()


def test_mlp_saliency_drops_for_the_randomized_net(mlp, mlp_frame):
    assert set(mlp_frame["method"]) == {"saliency", "occlusion", "input"}  # LeakyReLU MLP: no CNN methods
    assert set(mlp_frame.attrs["skipped"]) == {"cam", "gradcam", "hirescam", "guided_backprop"}
    linears = [name for name, m in mlp.module_.named_modules() if isinstance(m, torch.nn.Linear)]
    steps = mlp_frame[mlp_frame["method"] == "saliency"].sort_values("step")
    assert steps["layer"].tolist() == ["none", *linears[::-1]]  # output first, then down to the input
    assert steps["label"].tolist()[:2] == ["trained", "output"] and steps["label"].iloc[-1] == "layer 1"
    assert (steps["spearman_mean"].iloc[1:] < 1.0).all()
    assert _final(mlp_frame, "saliency") < THRESHOLD / 2  # clearly below the threshold
    verdict = sanity_verdict(mlp_frame)
    assert not verdict.loc["saliency", "flagged"]


def test_model_independent_method_stays_one_and_is_flagged(mlp_frame, cnn_frame):
    for frame in (mlp_frame, cnn_frame):
        rows = frame[frame["method"] == "input"]
        assert len(rows) == frame["step"].max() + 1 and (rows["spearman_mean"] == 1.0).all()
        assert sanity_verdict(frame).loc["input", "flagged"]
    text = verdict_text(mlp_frame)
    assert "input: 1.000 > 0.5  FLAGGED" in text and "saliency:" in text and "ok" in text
    assert "gradcam: skipped" in text
    # the same model-dependent frame with a higher bar flags nothing that dropped
    assert not sanity_verdict(mlp_frame, threshold=1.0)["flagged"].any()


def test_the_callers_net_is_left_as_it_was(mlp, digits, count_hooks):
    module = mlp.module_
    mode = module.training
    module.train()
    before = copy.deepcopy(module.state_dict())
    rng = torch.get_rng_state()
    hooks = count_hooks(module)
    sanity_check(mlp, digits.X_test[:3], seed=5)
    after = module.state_dict()
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key  # bit-identical
    assert module.training and all(m.training for m in module.modules())
    assert count_hooks(module) == hooks
    assert torch.equal(torch.get_rng_state(), rng)  # the seeding happens on a forked RNG
    module.train(mode)


def test_randomization_is_cumulative_top_down_and_seeded(mlp, digits):
    trained = {name: m.weight.detach().clone() for name, m in randomizable_layers(mlp)}
    seen = []

    def record(module, X, target):  # which layers differ from the trained net at this call
        seen.append([name for name, m in randomizable_layers(module) if not torch.equal(m.weight, trained[name])])
        return X

    sanity_check(mlp, digits.X_test[:2], methods=[], extra={"record": record}, seed=3)
    names = list(trained)  # output first
    assert seen == [[]] + [names[:k] for k in range(1, len(names) + 1)]
    # the random weights are each layer's reset_parameters() after torch.manual_seed(seed)
    fresh = copy.deepcopy(mlp.module_)
    torch.manual_seed(3)
    for _, layer in randomizable_layers(fresh):
        layer.reset_parameters()
    last = {}
    sanity_check(mlp, digits.X_test[:2], methods=[], seed=3,
                 extra={"keep": lambda m, X, t: last.update(m.state_dict()) or X})
    for key, value in fresh.state_dict().items():
        assert torch.equal(last[key], value), key
    frame_a = sanity_check(mlp, digits.X_test, methods=["saliency"], seed=3)
    frame_b = sanity_check(mlp, digits.X_test, methods=["saliency"], seed=3)
    pd.testing.assert_frame_equal(frame_a, frame_b)


def test_target_is_the_trained_nets_prediction_at_every_step(mlp, digits):
    targets = []
    sanity_check(mlp, digits.X_test, methods=[], extra={"t": lambda m, X, t: targets.append(t.tolist()) or X})
    predicted = mlp.predict(digits.X_test[:MAX_IMAGES]).tolist()
    assert targets == [predicted] * len(targets) and len(targets) == len(randomizable_layers(mlp)) + 1


def test_bad_arguments_are_usage_errors(mlp, digits):
    with pytest.raises(UsageError, match="does not apply"):
        sanity_check(mlp, digits.X_test, methods=["gradcam"])
    with pytest.raises(UsageError, match="methods must be among"):
        sanity_check(mlp, digits.X_test, methods=["salincy"])
    with pytest.raises(UsageError, match="n_images"):
        sanity_check(mlp, digits.X_test, n_images=0)
    with pytest.raises(UsageError, match="callable"):
        sanity_check(mlp, digits.X_test, extra={"x": 3})


def test_cnn_gets_gradcam_and_guided_backprop_rows(cnn, cnn_frame):
    assert {"gradcam", "hirescam", "saliency", "guided_backprop", "occlusion", "input"} == set(cnn_frame["method"])
    assert "cam" in cnn_frame.attrs["skipped"]
    layers = randomizable_layers(cnn)
    assert cnn_frame["step"].max() == len(layers) and {"Conv2d", "Linear"} <= set(cnn_frame["kind"])
    assert cnn_frame[cnn_frame["step"] == len(layers)]["kind"].unique().tolist() == ["Conv2d"]  # the first conv
    for method in ("gradcam", "hirescam", "saliency"):
        assert _final(cnn_frame, method) < THRESHOLD
    fig = plot_sanity(cnn_frame)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "input (FLAGGED)" in labels and "gradcam" in labels and f"threshold {THRESHOLD:g}" in labels
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks[0] == "trained" and ticks[1] == "+output\nLinear" and len(ticks) == len(layers) + 1


def test_a_layer_of_the_callers_net_is_explained_on_the_copy_and_named_in_the_title(cnn, digits):
    """plot all --layer handed the sanity check the loaded net's module: the check explains a copy, whose
    forward never runs that module, so Captum's hook saw nothing and the check was skipped; the Grad-CAM
    figure's title said "the last conv layer" whatever layer it explained."""
    from hpsearch.viz.heatmaps import plot_attribution

    layer = cnn.module_.get_submodule("features.0")
    frame = sanity_check(cnn, digits.X_test, methods=["gradcam"], options={"gradcam": {"layer": layer}}, n_images=4)
    assert frame["method"].unique().tolist() == ["gradcam"] and frame["spearman_mean"].iloc[0] == 1.0
    fig = plot_attribution(cnn, digits.X_test[:2], "gradcam", layer=layer)
    assert fig.get_suptitle().startswith("Grad-CAM at layer features.0 ")
    assert plot_attribution(cnn, digits.X_test[:2], "gradcam").get_suptitle().startswith(
        "Grad-CAM at the last conv layer's activation")


def test_cli_plot_sanity_writes_png_csv_and_txt(retrained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(retrained_run, run)
    assert main(["plot", "sanity", str(run)]) == 0
    Image.open(run / "sanity.png").verify()
    table = pd.read_csv(run / "sanity.csv")
    assert list(table.columns) == COLUMNS
    assert (table.loc[table["step"] == 0, "spearman_mean"] == 1.0).all()
    assert (table["n_images"] == MAX_IMAGES).all()  # the CLI's 25 images capped at 8
    assert set(table["method"]) == {"saliency", "occlusion"}
    text = (run / "sanity.txt").read_text()
    assert "saliency:" in text and "occlusion:" in text and "8 test images" in text
    assert main(["plot", "sanity", str(run), "--images", "3"]) == 0
    assert (pd.read_csv(run / "sanity.csv")["n_images"] == 3).all()


def test_a_map_that_collapses_counts_as_zero(mlp, digits):
    output_weight = randomizable_layers(mlp)[0][1].weight.detach().clone()

    def collapsing(module, X, target):  # the input while the output layer is trained, zeros after
        return X if torch.equal(randomizable_layers(module)[0][1].weight, output_weight) else torch.zeros_like(X)

    def half(module, X, target):  # the input (model-independent) on odd images, zeros on even ones
        out = X.clone()
        out[::2] = 0
        return out

    frame = sanity_check(mlp, digits.X_test, methods=[],
                         extra={"collapsing": collapsing, "zeros": lambda m, X, t: torch.zeros_like(X), "half": half})
    rows = frame.set_index(["method", "step"])["spearman_mean"]
    n = frame["step"].max()
    assert rows["collapsing"].tolist() == [1.0] + [0.0] * n  # constant after randomization: 0
    # a constant trained map has no ranking to lose: left out, not counted as a change (a barely trained
    # GAP-CNN's all-zero Grad-CAM maps read "ok: depends on the weights")
    assert rows["zeros"].isna().all() and (frame.loc[frame["method"] == "zeros", "n_images"] == 0).all()
    assert rows["half"].tolist() == [1.0] * (n + 1) and (frame.loc[frame["method"] == "half", "n_images"] == 4).all()
    assert sanity_verdict(frame)["flagged"].to_dict() == {"collapsing": False, "zeros": False, "half": True}
    text = verdict_text(frame)
    assert ("zeros: untestable: its trained map is constant (or not finite) on every one of the 8 images, so no "
            "change can be measured") in text
    assert "half: 1.000 > 0.5  FLAGGED: not explaining the model (over 4 of 8 images: 4 trained maps constant, left " \
           "out)" in text


def test_occlusion_is_coarser_on_larger_images_only(mlp, digits):
    assert occlusion_options((1, 8, 8)) == {"window": 3, "stride": 1}  # as plot occlusion
    assert occlusion_options((1, 28, 28)) == {"window": 3, "stride": 3}
    assert occlusion_options((3, 32, 32)) == {"window": 4, "stride": 4}
    assert occlusion_options((1, 2, 2)) == {"window": 2, "stride": 1}  # --image-size 2: the window fits
    with pytest.raises(UsageError, match="keyed by method"):
        sanity_check(mlp, digits.X_test, options={"occlusoin": {}})
    seen = sanity_check(mlp, digits.X_test, methods=["occlusion"], options={"occlusion": {"window": 2}})
    assert seen["step"].max() == len(randomizable_layers(mlp))
