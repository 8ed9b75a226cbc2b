"""Receptive fields and activation maximizers of real skorch MLPs trained on digits."""

import numpy as np
import pytest
import torch

from hpsearch.errors import UsageError
from hpsearch.training.net import make_net
from hpsearch.viz import (
    box_maximizer,
    maximize_activation,
    plot_maximizers,
    plot_receptive_fields,
    receptive_fields,
    unit_activations,
)
from hpsearch.viz.neurons import mlp_only, plot_unit_grid

CONFIG = {"model": "mlp", "hidden": [40, 30], "dropout": 0.2, "lr": 3e-3, "optimizer": "adam"}


def _fit(ds, **config):
    net = make_net({**CONFIG, **config}, ds.n_features, ds.n_classes, max_epochs=8, patience=0,
                   random_state=1)
    return net.fit(ds.X_train, ds.y_train)


@pytest.fixture(scope="module")
def net(digits):
    fitted = _fit(digits)
    assert fitted.score(digits.X_test, digits.y_test) > 0.9  # a net that learned something
    return fitted


def _grad_of_unit(module, linear, x, unit):
    """d(unit's Linear output)/d(input) for one image, by autograd."""
    x = x.clone().requires_grad_(True)
    out = {}
    handle = linear.register_forward_hook(lambda m, i, o: out.setdefault("y", o))
    try:
        module(x)
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(out["y"][0, unit], x)
    return grad[0].numpy()


def test_first_layer_receptive_field_is_the_weight_rows_exactly(net, digits):
    fields = receptive_fields(net)
    weights = [lin.weight.detach().numpy() for lin in net.module_.linears]
    assert [f.shape for f in fields] == [(40, 1, 8, 8), (30, 1, 8, 8), (10, 1, 8, 8)]
    np.testing.assert_array_equal(fields[0].reshape(40, -1), weights[0])
    # deeper layers: the product of the weight matrices down to the input
    np.testing.assert_allclose(fields[2].reshape(10, -1), weights[2] @ weights[1] @ weights[0], rtol=1e-4,
                               atol=1e-6)


def test_with_identity_activations_a_field_is_the_gradient_of_the_unit(net, digits):
    linear_net = _fit(digits, negative_slope=1.0)  # LeakyReLU(1) is the identity
    module = linear_net.module_.eval()
    x = torch.as_tensor(digits.X_test[:1])
    fields = receptive_fields(linear_net)
    for layer, units in ((1, [0, 7, 29]), (2, [0, 3, 9])):
        for unit in units:
            grad = _grad_of_unit(module, module.linears[layer], x, unit)
            np.testing.assert_allclose(fields[layer][unit], grad, rtol=1e-4, atol=1e-6)
    # With the LeakyReLU of a real net the product is only an approximation: the identity fails.
    nonlinear = net.module_.eval()
    grad = _grad_of_unit(nonlinear, nonlinear.linears[2], x, 0)
    assert not np.allclose(receptive_fields(net)[2][0], grad, rtol=1e-3, atol=1e-5)


def test_box_maximizer_is_the_sign_of_the_weights_and_beats_any_image(net):
    w = net.module_.linears[0].weight.detach().numpy()
    box = box_maximizer(net, layer=0, units=[0, 5, 39])
    np.testing.assert_array_equal(box.reshape(3, -1), (w[[0, 5, 39]] > 0).astype(np.float32))
    rng = np.random.default_rng(0)
    random_images = rng.random((500, 1, 8, 8), dtype=np.float32)
    for i, unit in enumerate([0, 5, 39]):
        best = unit_activations(net, 0, box[i:i + 1], [unit])[0]
        others = unit_activations(net, 0, random_images, [unit] * 500)
        assert best >= others.max()


def test_gradient_ascent_raises_the_activation_and_stays_in_0_1(net):
    units = list(range(10))
    for layer in (0, 1, -1):
        images, hist = maximize_activation(net, layer, units, steps=100, lr=0.05, return_history=True)
        assert images.shape == (10, 1, 8, 8)
        assert hist["min"].min() >= 0.0 and hist["max"].max() <= 1.0  # at every step
        assert images.min() >= 0.0 and images.max() <= 1.0
        assert np.all(hist["activation"][-1] > hist["activation"][0])
        np.testing.assert_allclose(unit_activations(net, layer, images, units), hist["activation"][-1],
                                   rtol=1e-5, atol=1e-5)
    # first layer: the ascent closes 99% of the gap from grey to the exact (box) maximum, never beyond
    images, hist = maximize_activation(net, 0, units, steps=300, lr=0.05, return_history=True)
    start, reached = hist["activation"][0], hist["activation"][-1]
    best = unit_activations(net, 0, box_maximizer(net, 0, units), units)
    assert np.all(reached - start >= 0.99 * (best - start)) and np.all(reached <= best + 1e-5)
    net.module_.train()  # the ascent runs in eval mode and restores the mode it found
    maximize_activation(net, 0, [0], steps=2)
    assert net.module_.training
    net.module_.eval()


def test_plots_have_one_panel_per_unit(net):
    assert len(plot_receptive_fields(net, 0, 25).axes) == 25
    assert len(plot_receptive_fields(net, 1, 7).axes) == 7
    out = plot_receptive_fields(net, -1, class_names=[f"digit {i}" for i in range(10)])
    assert len(out.axes) == 10 and out.axes[3].get_title() == "digit 3"
    image = out.axes[0].images[0]
    assert image.get_cmap().name == "RdBu_r" and image.norm.vmin == -image.norm.vmax  # centred on 0
    assert len(plot_maximizers(net, 0, 25, steps=5).axes) == 25
    assert len(plot_maximizers(net, -1, method="box").axes) == 10
    assert len(plot_unit_grid(np.zeros((7, 1, 8, 8))).axes) == 7


def test_bad_layers_units_and_non_mlps_are_usage_errors(net):
    with pytest.raises(UsageError, match=r"layer must be an integer in \[-3, 2\].*got 3"):
        box_maximizer(net, layer=3)
    with pytest.raises(UsageError, match=r"units must lie in \[0, 9\] for this layer, got \[10\]"):
        maximize_activation(net, -1, [10])
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten())
    assert "need an MLP" in mlp_only(conv)
    with pytest.raises(UsageError, match="need an MLP"):
        receptive_fields(conv)
