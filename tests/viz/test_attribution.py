"""Exact identities of CAM, Grad-CAM, saliency, guided backprop and occlusion on small fixed-weight
models; hooks and train/eval mode left as found, also after an exception."""

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from hpsearch.errors import UsageError
from hpsearch.training.models.cnn import CNN
from hpsearch.training.models.gapcnn import GAPCNN
from hpsearch.viz import attribution as A
from hpsearch.viz.attribution import cam, grad_cam, guided_backprop, occlusion, saliency
from hpsearch.viz.heatmaps import (
    POSITIVE_CMAP,
    SIGNED_CMAP,
    heat_scale,
    plot_attribution,
    plot_explanations,
    plot_heatmaps,
)
from hpsearch.viz.modules import conv_only, gap_only


def _gap(pool_after=(1,), batch_norm=True):
    net = GAPCNN(1, 8, 10, filters=(4, 6), pool_after=pool_after, batch_norm=batch_norm)
    if batch_norm:  # non-trivial running statistics, so eval mode matters
        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.2, 0.2)
                    m.running_var.uniform_(0.5, 2.0)
    return net


def _linear():
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))


@pytest.mark.parametrize("pool_after", [(1,), ()])
def test_cam_is_weighted_sum_of_last_activations(pool_after):
    net = _gap(pool_after).eval()
    X = torch.rand(6, 1, 8, 8)
    with torch.no_grad():
        acts = net.features(X)
        predicted = net(X).argmax(1)
    w = net.classifier.weight.detach()
    expected = np.einsum("nk,nkhw->nhw", w[predicted].numpy(), acts.numpy())
    np.testing.assert_allclose(cam(net, X, upsample=False), expected, rtol=1e-5, atol=1e-6)
    # any target, one per image
    targets = [3, 0, 9, 1, 1, 5]
    expected = np.einsum("nk,nkhw->nhw", w[targets].numpy(), acts.numpy())
    np.testing.assert_allclose(cam(net, X, targets, upsample=False), expected, rtol=1e-5, atol=1e-6)


def test_cam_upsampling():
    net = _gap(()).eval()
    X = torch.rand(3, 1, 8, 8)
    # no pooling: maps already have the image's size, so upsampling changes nothing
    np.testing.assert_array_equal(cam(net, X), cam(net, X, upsample=False))
    net = _gap((1,))
    assert cam(net, X, upsample=False).shape == (3, 4, 4) and cam(net, X).shape == (3, 8, 8)


@pytest.mark.parametrize("pool_after", [(1,), ()])
def test_gradcam_on_gap_net_is_cam_over_hw(pool_after):
    net = _gap(pool_after)
    X = torch.rand(5, 1, 8, 8)
    h, w = net.feature_size
    for target in (None, 4):
        np.testing.assert_allclose(grad_cam(net, X, target, relu=False, upsample=False),
                                   cam(net, X, target, upsample=False) / (h * w), rtol=1e-4, atol=1e-7)
    relu = grad_cam(net, X, 4, upsample=False)
    np.testing.assert_allclose(relu, np.maximum(cam(net, X, 4, upsample=False) / (h * w), 0), rtol=1e-4,
                               atol=1e-7)


def test_saliency_of_linear_model_is_weight_row():
    model = _linear()
    X = torch.rand(4, 1, 8, 8)
    W = model[1].weight.detach().numpy()
    for c in (0, 7):
        s = saliency(model, X, c, absolute=False)
        assert s.shape == (4, 1, 8, 8)
        np.testing.assert_array_equal(s.reshape(4, 64), np.tile(W[c], (4, 1)))
        np.testing.assert_array_equal(saliency(model, X, c).reshape(4, 64), np.tile(np.abs(W[c]), (4, 1)))
    # default target: the predicted class of each image
    pred = model(X).argmax(1).numpy()
    np.testing.assert_array_equal(saliency(model, X, absolute=False).reshape(4, 64), W[pred])


def test_occlusion_single_pixel_zero_baseline_is_x_times_w():
    model = _linear()
    X = torch.rand(3, 1, 8, 8)
    W = model[1].weight.detach().numpy()
    attr = occlusion(model, X, 2, window=1)
    np.testing.assert_allclose(attr.reshape(3, 64), X.reshape(3, 64).numpy() * W[2], rtol=1e-4, atol=1e-6)


def test_occlusion_window_fits_images_smaller_than_its_default():
    """An image folder read at --image-size 2: the default 3x3 patch becomes the image's 2x2, the
    same map as asking for window 2; a window asked for that does not fit is still refused."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    X = torch.rand(2, 1, 2, 2)
    np.testing.assert_array_equal(occlusion(model, X, 1), occlusion(model, X, 1, window=2))
    with pytest.raises(UsageError, match="occlusion window 3 is larger than the 2x2 images"):
        occlusion(model, X, 1, window=3)


class PatchReader(nn.Module):
    """Reads only pixels [2:4, 4:6] of the image."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(10, 4))

    def forward(self, x):
        return x[:, 0, 2:4, 4:6].reshape(len(x), 4) @ self.w.T


@pytest.mark.parametrize("window,stride", [(1, 1), (2, 2)])
def test_occlusion_only_on_the_patch_the_model_reads(window, stride):
    X = torch.rand(3, 1, 8, 8) + 0.1
    attr = occlusion(PatchReader(), X, 1, window=window, stride=stride)[:, 0]
    inside = np.zeros((8, 8), bool)
    inside[2:4, 4:6] = True
    assert np.all(attr[:, ~inside] == 0)
    assert np.all(attr[:, inside] != 0)


def test_guided_backprop_passes_only_positive_gradients_through_relus():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3))
    with torch.no_grad():
        model[3].weight[0].abs_()      # class 0: every path positive -> plain gradient
        model[3].weight[1] = -model[3].weight[1].abs()  # class 1: every path negative -> zero
    X = torch.rand(4, 1, 8, 8)
    np.testing.assert_allclose(guided_backprop(model, X, 0), saliency(model, X, 0, absolute=False), atol=1e-7)
    assert np.all(guided_backprop(model, X, 1) == 0)
    assert np.any(saliency(model, X, 1, absolute=False) != 0)


METHOD_CALLS = {
    "cam": lambda m, X, t=None: cam(m, X, t),
    "gradcam": lambda m, X, t=None: grad_cam(m, X, t),
    "saliency": lambda m, X, t=None: saliency(m, X, t),
    "guided_backprop": lambda m, X, t=None: guided_backprop(m, X, t),
    "occlusion": lambda m, X, t=None: occlusion(m, X, t, window=2, stride=2),
}


@pytest.mark.parametrize("method", list(METHOD_CALLS))
@pytest.mark.parametrize("training", [True, False])
def test_mode_restored_and_no_hooks_left(method, training, count_hooks):
    net = _gap()
    net.train(training)
    net.features[1].train(not training)  # a mixed state must come back exactly
    modes = [m.training for m in net.modules()]
    X = torch.rand(3, 1, 8, 8)
    out = METHOD_CALLS[method](net, X)
    assert out.shape[0] == 3 and np.isfinite(out).all()
    assert [m.training for m in net.modules()] == modes
    assert count_hooks(net) == 0


class Exploding(GAPCNN):
    """Raises on the second forward pass: after the targets are resolved, inside the method."""

    calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls >= 2:
            raise RuntimeError("boom")
        return super().forward(x)


@pytest.mark.parametrize("method", list(METHOD_CALLS))
def test_no_hooks_left_and_mode_restored_after_an_exception(method, count_hooks):
    net = Exploding(1, 8, 10, filters=(4, 6), pool_after=(1,)).train()
    with pytest.raises(RuntimeError, match="boom"):
        METHOD_CALLS[method](net, torch.rand(2, 1, 8, 8))
    assert net.calls >= 2
    assert count_hooks(net) == 0
    assert all(m.training for m in net.modules())


def test_works_on_a_fitted_skorch_net_and_rgb(digits):
    from hpsearch.training.net import make_net

    net = make_net({"model": "gapcnn", "filters": [4, 4], "pool_after": []}, 64, 10, image_shape=(1, 8, 8),
                   max_epochs=1, patience=0).fit(digits.X_train[:200], digits.y_train[:200])
    assert cam(net, digits.X_test[:3]).shape == (3, 8, 8)
    rgb = CNN(3, 8, 5, filters=(4, 4), dense=())
    assert grad_cam(rgb, torch.rand(2, 3, 8, 8)).shape == (2, 8, 8)
    assert occlusion(rgb, torch.rand(2, 3, 8, 8), window=2).shape == (2, 3, 8, 8)


def test_usage_errors():
    net = _gap()
    X = torch.rand(2, 1, 8, 8)
    with pytest.raises(UsageError, match="CAM needs a GAP net"):
        cam(CNN(1, 8, 10, filters=(4,), dense=()), X)
    with pytest.raises(UsageError, match=r"target classes must be in 0..9, got \[10, 10\]"):
        cam(net, X, 10)
    with pytest.raises(UsageError, match=r"one per image \(2\), got 3"):
        saliency(net, X, [1, 2, 3])
    with pytest.raises(UsageError, match="did you mean 'saliency'"):
        A.attribute(net, X, "salency")
    with pytest.raises(UsageError, match="Grad-CAM needs a CNN"):
        grad_cam(_linear(), X)
    with pytest.raises(UsageError, match="window 9 is larger"):
        occlusion(net, X, window=9)
    assert gap_only(net) is None and "GAP net" in gap_only(_linear())
    assert conv_only(net) is None and "Conv2d" in conv_only(_linear())


def test_figures_overlay_the_maps():
    net = _gap(())
    X = torch.rand(3, 1, 8, 8)
    maps = cam(net, X, 2)
    fig = plot_heatmaps(X.numpy(), maps, titles=["a", "b", "c"])
    assert isinstance(fig, Figure)
    ax = fig.axes[1]
    grey, heat = ax.get_images()
    np.testing.assert_array_equal(grey.get_array(), X[1, 0].numpy())
    np.testing.assert_array_equal(heat.get_array(), maps[1])
    assert ax.get_title() == "b"
    fig = plot_explanations(net, X, ["cam", "gradcam", "occlusion"], class_names=list("ABCDEFGHIJ"))
    assert len(fig.axes) == 3 * 4 + 3  # the panels, then one colour bar per method
    fig = plot_attribution(net, X, "saliency", target=2, class_names=list("ABCDEFGHIJ"))
    with torch.no_grad():  # in eval mode, as the explanation reads it (batch norm's running statistics)
        predicted = "ABCDEFGHIJ"[int(net.eval()(X[:1]).argmax())]
    said = "pred C" if predicted == "C" else f"explains C, pred {predicted}"  # a bare "C" said neither
    assert fig.axes[0].get_title() == said
    assert plot_attribution(net, X, "saliency", class_names=list("ABCDEFGHIJ")).axes[0].get_title() == f"pred {predicted}"
    rgb = plot_heatmaps(np.random.rand(2, 3, 8, 8), np.random.randn(2, 8, 8))
    assert rgb.axes[0].get_images()[0].get_array().shape == (8, 8, 3)


def test_relu_cam_over_hw_is_gradcam_also_upsampled():
    net = _gap((1,), batch_norm=False)  # untrained with batch norm, its maps can be all < 0
    X = torch.rand(4, 1, 8, 8)
    h, w = net.feature_size
    assert (h, w) == (4, 4)
    for target in (None, 3):
        positive = cam(net, X, target, relu=True)
        assert positive.shape == (4, 8, 8) and positive.min() >= 0
        np.testing.assert_allclose(grad_cam(net, X, target), positive / (h * w), rtol=1e-4, atol=1e-7)


def _heat_images(fig):
    """The heat map drawn over each panel's input (its second image)."""
    return [ax.get_images()[1] for ax in fig.axes if len(ax.get_images()) == 2]


def _colorbars(fig):
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def test_heat_scale_is_symmetric_when_signed_and_from_zero_otherwise():
    assert heat_scale(np.array([[-0.5, 2.0]])) == (SIGNED_CMAP, -2.0, 2.0)
    assert heat_scale(np.array([[0.0, 3.0]])) == (POSITIVE_CMAP, 0.0, 3.0)
    assert heat_scale(np.array([[0.5, 3.0]]), signed=True) == (SIGNED_CMAP, -3.0, 3.0)
    assert heat_scale(np.zeros((2, 3))) == (POSITIVE_CMAP, 0.0, 1.0)


@pytest.mark.parametrize("method", ["cam", "gradcam", "saliency", "guided_backprop", "occlusion"])
def test_one_method_figure_has_one_cmap_one_scale_and_a_colorbar(method):
    net = _gap((1,), batch_norm=False)  # untrained with batch norm, its maps can be all < 0
    X = torch.rand(5, 1, 8, 8)
    fig = plot_attribution(net, X, method, window=2) if method == "occlusion" else plot_attribution(net, X, method)
    heat = _heat_images(fig)
    assert len(heat) == 5
    assert len({im.get_cmap().name for im in heat}) == 1 and len({im.get_clim() for im in heat}) == 1
    name, (vmin, vmax) = heat[0].get_cmap().name, heat[0].get_clim()
    values = np.stack([im.get_array() for im in heat])
    if method in ("guided_backprop", "occlusion"):  # signed: diverging, centred on 0
        assert name == SIGNED_CMAP and vmin == -vmax == -np.abs(values).max()
    else:  # non-negative: sequential from 0 to the shared max
        assert name == POSITIVE_CMAP and vmin == 0 and vmax == pytest.approx(values.max())
    bars = _colorbars(fig)
    assert len(bars) == 1
    assert bars[0]._colorbar.cmap.name == name and bars[0]._colorbar.norm.vmax == vmax


def test_cam_and_gradcam_pictures_agree_up_to_hw():
    net = _gap((1,), batch_norm=False)  # untrained with batch norm, its maps can be all < 0
    X = torch.rand(4, 1, 8, 8)
    cam_fig, grad_fig = plot_attribution(net, X, "cam"), plot_attribution(net, X, "gradcam")
    cams, grads = _heat_images(cam_fig), _heat_images(grad_fig)
    assert {im.get_cmap().name for im in cams + grads} == {POSITIVE_CMAP}
    h, w = net.feature_size
    for c, g in zip(cams, grads, strict=True):
        np.testing.assert_allclose(g.get_array(), c.get_array() / (h * w), rtol=1e-4, atol=1e-7)
    assert grads[0].get_clim()[1] == pytest.approx(cams[0].get_clim()[1] / (h * w), rel=1e-4)


def test_explanations_share_a_scale_per_method_and_stay_a_sane_size():
    net = _gap((1,), batch_norm=False)  # untrained with batch norm, its maps can be all < 0
    X = torch.rand(25, 1, 8, 8)  # the CLI's default --images
    methods = ["cam", "gradcam", "saliency", "guided_backprop", "occlusion"]
    fig = plot_explanations(net, X, methods, options={"occlusion": {"window": 2, "stride": 2}})
    width, height = fig.get_size_inches() * 120  # the dpi `hpsearch plot` saves at
    assert width <= 2000 and height <= 2000
    rows = [ax for ax in fig.axes if ax.get_images() and ax.get_label() != "<colorbar>"]
    assert len(rows) == 8 * (len(methods) + 1)  # capped at 8 images
    assert "first 8 of 25" in fig._suptitle.get_text()
    panels = np.array(rows).reshape(8, len(methods) + 1)
    for j, method in enumerate(methods, start=1):
        heat = [ax.get_images()[1] for ax in panels[:, j]]
        assert len({(im.get_cmap().name, im.get_clim()) for im in heat}) == 1, method
    assert len(_colorbars(fig)) == len(methods)
    assert panels[0, 1].get_images()[1].get_cmap().name == panels[0, 2].get_images()[1].get_cmap().name
