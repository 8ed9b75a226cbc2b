"""Colour images everywhere: every model kind trains on 3x32x32 RGB images and every registered
picture that applies draws them in colour; a colour PNG goes through the Predictor in colour."""

import io

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from hpsearch import make_net
from hpsearch.data.dataset import Dataset
from hpsearch.data.preprocess import preprocess, preprocessing_for
from hpsearch.viz.evaluation import plot_misclassified
from hpsearch.viz.images import picture, weight_picture
from hpsearch.viz.neurons import receptive_fields
from hpsearch.viz.plots import REGISTRY, PlotOptions
from hpsearch.winner.predict import Predictor

CLASSES = ("red", "green", "blue")
CONFIGS = {
    "mlp": {"hidden": [16], "lr": 0.01},
    "cnn": {"model": "cnn", "filters": [4, 4], "block_size": 1, "dense": [8], "lr": 0.01},
    "gapcnn": {"model": "gapcnn", "filters": [4, 6], "pool_after": [1], "lr": 0.02},
}
# what each picture shows: images drawn in colour, or no image at all (charts)
CHARTS = {"confusion-matrix", "class-report", "learning-curves", "sanity"}


def colour_dataset(n_train=60, n_test=20, seed=0) -> Dataset:
    """Noisy 3x32x32 images whose class is the channel that is bright (red, green or blue)."""
    rng = np.random.default_rng(seed)

    def split(n):
        y = np.arange(n) % 3
        X = rng.uniform(0.0, 0.35, size=(n, 3, 32, 32)).astype(np.float32)
        X[np.arange(n), y] += np.float32(0.6)
        return X, y.astype(np.int64)

    (X_train, y_train), (X_test, y_test) = split(n_train), split(n_test)
    return Dataset("cifar10", X_train, y_train, X_test, y_test, CLASSES)


@pytest.fixture(scope="module")
def colour():
    return colour_dataset()


@pytest.fixture(scope="module")
def nets(colour):
    return {kind: make_net(config, colour, max_epochs=3, batch_size=16, patience=0).fit(colour.X_train,
                                                                                           colour.y_train)
            for kind, config in CONFIGS.items()}


def test_every_model_kind_takes_rgb_and_learns_the_colour(nets, colour):
    assert nets["mlp"].module_.linears[0].in_features == 3 * 32 * 32
    for kind in ("cnn", "gapcnn"):
        assert nets[kind].module_.features[0].in_channels == 3
    for kind, net in nets.items():
        accuracy = float(np.mean(net.predict(colour.X_test) == colour.y_test))
        assert accuracy >= 0.9, (kind, accuracy)


def _images(fig: Figure):
    return [np.asarray(im.get_array()) for ax in fig.axes for im in ax.get_images()]


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_every_picture_that_applies_draws_rgb(nets, colour, kind):
    net = nets[kind]
    drawn = []
    for name, entry in REGISTRY.items():
        if entry.applies(net.module_) is not None:
            continue
        options = PlotOptions(n_images=4, units=4, extra={"steps": 3})
        figures = entry.draw(net, colour, options)
        assert figures, name
        figs = [f for f in figures.values() if not isinstance(f, str)]
        assert figs and all(isinstance(f, Figure) for f in figs), name
        drawn.append(name)
        if name in CHARTS:
            continue
        for stem, fig in figures.items():
            if isinstance(fig, str) or (name == "misclassified" and not _images(fig)):
                continue  # text files; a net that misclassifies nothing has no grid
            pictures = [a for a in _images(fig) if a.ndim == 3]
            assert pictures, f"{name}: {stem} draws no RGB image"
            assert all(a.shape[-1] == 3 and 0 <= a.min() and a.max() <= 1 for a in pictures), (name, stem)
    expected = {"mlp": {"receptive-fields", "maximizers"}, "cnn": {"grad-cam", "filters", "deepdream"},
                "gapcnn": {"cam", "grad-cam", "feature-maps", "conv-maximizers"}}[kind]
    assert expected <= set(drawn) and CHARTS <= set(drawn) and "saliency" in drawn


def test_receptive_fields_are_rgb_weight_pictures(nets, colour):
    net = nets["mlp"]
    fig = REGISTRY["receptive-fields"].draw(net, colour, PlotOptions(units=4))["receptive_fields_layer1"]
    shown = fig.axes[0].get_images()[0].get_array()
    weights = net.module_.linears[0].weight.detach().numpy()[0].reshape(3, 32, 32)
    assert shown.shape == (32, 32, 3)
    np.testing.assert_allclose(shown, 0.5 + weights.transpose(1, 2, 0) / (2 * np.abs(weights).max()), rtol=1e-6)
    assert "0.5 + w/(2 max|w|)" in " ".join(fig.get_suptitle().split())  # the title says how (wrapped)
    np.testing.assert_array_equal(receptive_fields(net)[0][0], weights)  # 3,072 inputs: 3x32x32 inferred
    # grey weights keep their diverging map centred on 0
    grey, limit = weight_picture(weights[:1])
    assert grey.shape == (32, 32) and limit == np.abs(weights[0]).max()


def test_filters_are_rgb_patches_and_misclassified_images_are_rgb(nets, colour):
    net = nets["cnn"]
    fig = REGISTRY["filters"].draw(net, colour, PlotOptions())["filters"]
    conv = net.module_.features[0].weight.detach().numpy()
    patches = _images(fig)
    assert len(patches) == 4 and all(p.shape == (3, 3, 3) for p in patches)
    np.testing.assert_allclose(patches[1], 0.5 + conv[1].transpose(1, 2, 0) / (2 * np.abs(conv[1]).max()), rtol=1e-6)
    wrong = (colour.y_test + 1) % 3  # every image misclassified
    grid = plot_misclassified(colour.X_test, colour.y_test, wrong, CLASSES, n=4)
    first = grid.axes[0].get_images()[0].get_array()
    assert first.shape == (32, 32, 3)
    np.testing.assert_array_equal(first, colour.X_test[0].transpose(1, 2, 0))


def test_picture_rules():
    rgb = np.random.default_rng(0).uniform(-0.2, 1.2, size=(3, 4, 5)).astype(np.float32)
    assert picture(rgb).shape == (4, 5, 3) and picture(rgb).min() == 0 and picture(rgb).max() == 1
    stretched = picture(rgb, stretch=True)
    assert stretched.min() == 0 and stretched.max() == 1  # one min and max for all channels
    np.testing.assert_allclose(stretched, ((rgb - rgb.min()) / np.ptp(rgb)).transpose(1, 2, 0), rtol=1e-6)
    assert picture(rgb[:1]).shape == (4, 5)
    zero, limit = weight_picture(np.zeros((3, 2, 2)))
    assert limit == 1.0 and (zero == 0.5).all()


def _png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((rgb * 255).round().astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_colour_png_goes_through_the_predictor_in_colour(nets, colour):
    settings = preprocessing_for("cifar10", colour.image_shape)
    assert settings["invert"] is False and settings["center"] is False and settings["stretch"] is False
    predictor = Predictor(nets["cnn"], settings=settings, class_names=CLASSES)
    # a 32x32 image is taken as framed: its pixels back to within the PNG's 1/255
    x = preprocess(_png(colour.X_test[2].transpose(1, 2, 0)), settings)
    assert x.shape == (3, 32, 32)
    np.testing.assert_allclose(x, colour.X_test[2], atol=0.5 / 255 + 1e-6)
    # a larger light-green photo: resized, kept RGB (not grey, not inverted, not brightened)
    photo = np.zeros((48, 64, 3))
    photo[..., 1], photo[..., 0] = 0.7, 0.2
    answer = predictor.predict_image(_png(photo))
    x = answer["x"]
    assert x.shape == (3, 32, 32)
    np.testing.assert_allclose(x.mean(axis=(1, 2)), [0.2, 0.7, 0.0], atol=0.01)
    np.testing.assert_allclose(answer["probabilities"], nets["cnn"].predict_proba(x[None])[0], rtol=1e-6)
    assert answer["class_name"] == CLASSES[int(np.argmax(answer["probabilities"]))]
    assert answer["method"] == "gradcam" and answer["heat"].shape == (32, 32)
    shown = np.asarray(Image.open(io.BytesIO(predictor.image_png(x, size=64))))
    assert shown.shape == (64, 64, 3) and shown[..., 1].mean() > 170 > 60 > shown[..., 0].mean()
    overlay = Image.open(io.BytesIO(predictor.heatmap_png(x, answer["heat"], size=64)))
    assert overlay.mode == "RGB" and overlay.size == (64, 64)
