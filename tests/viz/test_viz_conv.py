"""Feature maps, first-layer filters, conv-channel maximizers and DeepDream."""

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from hpsearch.errors import UsageError
from hpsearch.training.models.cnn import CNN
from hpsearch.training.models.gapcnn import GAPCNN
from hpsearch.viz import conv as C
from hpsearch.viz import conv_plots as P
from hpsearch.viz.plots import REGISTRY, PlotOptions


def test_conv_layers_and_feature_maps_match_the_forward_pass():
    net = CNN(1, 8, 10, filters=(4, 6), batch_norm=True, dense=()).eval()
    assert [n for n, _ in C.conv_layers(net)] == ["features.2", "features.5"]  # the ReLUs
    assert [n for n, _ in C.conv_layers(net, after_activation=False)] == ["features.0", "features.3"]
    x = torch.rand(1, 8, 8)
    maps = C.feature_maps(net, x)
    with torch.no_grad():
        np.testing.assert_allclose(maps[0][1], net.features[:3](x[None])[0].numpy(), rtol=1e-6)
        np.testing.assert_allclose(maps[1][1], net.features[:6](x[None])[0].numpy(), rtol=1e-6)
    raw = C.feature_maps(net, x, after_activation=False)
    assert raw[0][1].min() < 0 and maps[0][1].min() >= 0
    with pytest.raises(UsageError, match="one image"):
        C.feature_maps(net, torch.rand(2, 1, 8, 8))


class SharedReLU(nn.Module):
    """A user's net whose one ReLU follows the convolution and the dense layer both."""

    def __init__(self):
        super().__init__()
        self.conv, self.act, self.fc = nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).flatten(1)).relu()


class LateReLU(nn.Module):
    """ReLUs declared in another order than they run: the dense layer's first."""

    def __init__(self):
        super().__init__()
        self.fc_relu, self.conv, self.conv_relu = nn.ReLU(), nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        return self.fc_relu(self.fc(self.conv_relu(self.conv(x)).flatten(1)))


@pytest.mark.parametrize("make", [SharedReLU, LateReLU,
                                  lambda: nn.Sequential(*(shared := [nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()]),
                                                        nn.Conv2d(4, 4, 3, padding=1), shared[1], nn.Flatten(),
                                                        nn.Linear(256, 10))])
def test_a_relu_that_may_run_elsewhere_is_not_taken_for_the_convolutions(make):
    net, x = make().eval(), torch.rand(1, 8, 8)
    convs = C.conv_layers(net, after_activation=False)
    assert C.conv_layers(net) == convs  # the convolutions themselves: a hook on such a ReLU sees another layer
    maps = C.feature_maps(net, x)
    assert [m.shape for _, m in maps] == [(4, 8, 8)] * len(convs)
    assert C.conv_maximizers(net, (1, 8, 8), channels=2, steps=2).shape == (2, 1, 8, 8)


@pytest.mark.parametrize("make, expected", [
    (lambda: CNN(1, 8, 10, filters=(4, 6), dense=()), ["conv 1 (4 ch, 8\u00d78)", "conv 2 (6 ch, 8\u00d78)"]),
    (lambda: GAPCNN(1, 8, 10, filters=(4, 6, 5), pool_after=(1,)),
     ["conv 1 (4 ch, 8\u00d78)", "conv 2 (6 ch, 4\u00d74)", "conv 3 (5 ch, 4\u00d74)"]),
])
def test_feature_maps_are_labelled_by_layer_not_module_name(make, expected):
    net, x = make(), torch.rand(1, 8, 8)
    fig = P.plot_feature_maps(C.feature_maps(net, x), x.numpy())
    labels = [ax.get_title(loc="left") for ax in fig.axes if ax.get_title(loc="left")]
    assert labels == expected
    assert not any("features" in ax.get_title(loc=loc) for ax in fig.axes for loc in ("left", "center"))


def test_first_layer_filters_are_the_weights():
    net = GAPCNN(1, 8, 10, filters=(5, 7))
    np.testing.assert_array_equal(C.first_layer_filters(net), net.features[0].weight.detach().numpy())
    with pytest.raises(UsageError, match="needs a CNN"):
        C.first_layer_filters(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)))


def test_maximizer_of_a_linear_channel_is_the_sign_pattern():
    # one 8x8 kernel over an 8x8 image: channel k's activation is w_k . x + b_k, maximized inside
    # [0, 1] by 1[w_k > 0]; plain projected ascent (no jitter, no blur) must find it exactly.
    model = nn.Sequential(nn.Conv2d(1, 3, 8))
    with torch.no_grad():
        w = torch.randn(3, 1, 8, 8)
        model[0].weight.copy_(torch.sign(w) * (0.5 + torch.rand(3, 1, 8, 8)))
    images = C.conv_maximizers(model, (1, 8, 8), layer=model[0], jitter=0, blur_every=0, steps=60, lr=1.0)
    np.testing.assert_array_equal(images, (model[0].weight.detach().numpy() > 0).astype(np.float32))


def _mean_act(net, layer, x, channels):
    store = {}  # the ReLU's input: what conv_maximizers climbs
    h = layer.register_forward_hook(lambda m, i, o: store.setdefault("a", i[0]))
    with torch.no_grad():
        net(torch.as_tensor(x))
    h.remove()
    return store["a"][np.arange(len(channels)), channels].mean(dim=(1, 2)).numpy()


def test_maximizers_with_jitter_and_blur_stay_in_range_and_raise_activation(count_hooks):
    net = GAPCNN(1, 8, 10, filters=(4, 6), pool_after=(1,), batch_norm=True).train()
    images = C.conv_maximizers(net, (1, 8, 8), layer=1, channels=[0, 2, 5], steps=40, jitter=1, blur_every=4)
    assert images.shape == (3, 1, 8, 8) and images.min() >= 0 and images.max() <= 1
    assert all(m.training for m in net.modules()) and count_hooks(net) == 0
    net.eval()
    layer = C.conv_layers(net)[1][1]
    grey = np.full((3, 1, 8, 8), 0.5, np.float32)
    after, before = _mean_act(net, layer, images, [0, 2, 5]), _mean_act(net, layer, grey, [0, 2, 5])
    assert np.all(after > before + 0.01)  # also for channels whose ReLU is 0 on a grey image
    assert C.conv_maximizers(net, (1, 8, 8), channels=2, steps=1).shape == (2, 1, 8, 8)
    with pytest.raises(UsageError, match=r"channels must be in 0..5 for this layer, got \[6\]"):
        C.conv_maximizers(net, (1, 8, 8), channels=[6], steps=1)
    with pytest.raises(UsageError, match="layer must be a conv layer index in 0..1"):
        C.conv_maximizers(net, (1, 8, 8), layer=2, steps=1)


def test_deep_dream_amplifies_the_layer_and_stays_in_range(count_hooks):
    net = CNN(1, 8, 10, filters=(4, 6), dense=())
    x = np.random.default_rng(0).random((2, 1, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(C.deep_dream(net, x, steps=0), x)
    dreamed = C.deep_dream(net, x, steps=10, jitter=1)
    assert dreamed.shape == x.shape and dreamed.min() >= 0 and dreamed.max() <= 1
    layer = C.conv_layers(net)[-1][1]

    def energy(images):
        store = {}
        h = layer.register_forward_hook(lambda m, i, o: store.setdefault("a", o))
        with torch.no_grad():
            net(torch.as_tensor(images))
        h.remove()
        return store["a"].pow(2).mean(dim=(1, 2, 3)).numpy()

    assert np.all(energy(dreamed) > energy(x))
    assert count_hooks(net) == 0 and all(m.training for m in net.modules())


def test_figures():
    net = CNN(1, 8, 10, filters=(4, 6), dense=())
    x = torch.rand(1, 8, 8)
    fig = P.plot_feature_maps(C.feature_maps(net, x), x.numpy())
    assert isinstance(fig, Figure) and len(fig.axes) == 3 * 6
    assert isinstance(P.plot_filters(C.first_layer_filters(net)), Figure)
    imgs = np.random.rand(5, 3, 8, 8)
    fig = P.plot_images(imgs, ncols=4)
    np.testing.assert_allclose(fig.axes[2].get_images()[0].get_array(), imgs[2].transpose(1, 2, 0))
    assert isinstance(P.plot_deep_dream(imgs[:2], imgs[2:4]), Figure)


def test_registry_entries_apply_and_draw(digits):
    from hpsearch.training.models.mlp import MLP
    from hpsearch.training.net import make_net

    small = digits.subset(200, 4)
    gap = make_net({"model": "gapcnn", "filters": [4, 4], "pool_after": [1]}, 64, 10, image_shape=(1, 8, 8),
                   max_epochs=1, patience=0).fit(small.X_train, small.y_train)
    mlp = MLP(64, (8,), 10)
    options = PlotOptions(n_images=3, units=2, extra={"steps": 3})
    expected = {"cam": ["cam"], "grad-cam": ["grad_cam"], "saliency": ["saliency"],
                "guided-backprop": ["guided_backprop"], "occlusion": ["occlusion"],
                "explanations": ["explanations"], "feature-maps": ["feature_maps"], "filters": ["filters"],
                "conv-maximizers": ["conv_maximizers_layer1", "conv_maximizers_layer2"], "deepdream": ["deepdream"]}
    for name, stems in expected.items():
        entry = REGISTRY[name]
        assert entry.applies(gap.module_) is None
        figures = entry.draw(gap, small, options)
        assert sorted(figures) == stems and all(isinstance(f, Figure) for f in figures.values())
        if name == "conv-maximizers":  # titled by layer, not by module name (features.3)
            assert figures["conv_maximizers_layer2"]._suptitle.get_text().startswith("conv 2 (4 channels)")
    assert "GAP net" in REGISTRY["cam"].applies(mlp)
    for name in ("grad-cam", "feature-maps", "filters", "conv-maximizers", "deepdream", "explanations"):
        assert "Conv2d" in REGISTRY[name].applies(mlp)
    assert REGISTRY["saliency"].applies(mlp) is None
