"""CNN and GAP-CNN modules, their wiring into make_net and the spaces, and learning on digits."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from hpsearch.cli import main
from hpsearch.errors import UsageError
from hpsearch.space.search_space import ParamGenerator, SearchSpace, load_space
from hpsearch.training.models.cnn import CNN
from hpsearch.training.models.gapcnn import GAPCNN
from hpsearch.training.net import make_net


def test_gapcnn_seed_layout():
    net = GAPCNN(1, 28, 10, filters=(8, 8, 64, 64, 64), pool_after=(2,))
    kinds = [type(m).__name__ for m in net.features]
    assert kinds == ["Conv2d", "ReLU", "Conv2d", "ReLU", "MaxPool2d"] + ["Conv2d", "ReLU"] * 3
    assert [m.out_channels for m in net.features if isinstance(m, nn.Conv2d)] == [8, 8, 64, 64, 64]
    assert net.feature_size == (14, 14)
    assert net.classifier.in_features == 64 and net.classifier.out_features == 10
    assert net.last_conv_activation is net.features[-1]
    x = torch.rand(3, 1, 28, 28)
    assert net(x).shape == (3, 10)
    # logits are the Linear layer on the spatial mean of the last activation (GAP)
    torch.testing.assert_close(net(x), net.classifier(net.features(x).mean(dim=(2, 3))))


def test_gapcnn_without_pooling_keeps_resolution():
    net = GAPCNN(1, 8, 10, filters=(16, 16), pool_after=())
    assert net.feature_size == (8, 8)
    assert net.features(torch.rand(2, 1, 8, 8)).shape == (2, 16, 8, 8)


def test_cnn_blocks_and_relus_are_separate_modules():
    net = CNN(3, (32, 32), 10, filters=(32, 32, 64, 64), dense=(256,), conv_dropout=0.25, dropout=0.5,
              batch_norm=True)
    names = [type(m).__name__ for m in net.features]
    assert names.count("MaxPool2d") == 2 and names.count("BatchNorm2d") == 4 and names.count("Dropout") == 2
    relus = [m for m in net.modules() if isinstance(m, nn.ReLU)]
    assert len(relus) == 5 and len({id(m) for m in relus}) == 5 and not any(m.inplace for m in relus)
    assert net.classifier[2].in_features == 64 * 8 * 8
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("size", [8, 28])
def test_cnn_works_on_digits_and_mnist_sizes(size):
    net = CNN(1, size, 10, filters=(8, 8, 16, 16), dense=(32,))
    assert net(torch.rand(2, 1, size, size)).shape == (2, 10)


def test_bad_shapes_are_usage_errors():
    with pytest.raises(UsageError, match="too small to pool"):
        CNN(1, 8, 10, filters=(4, 4, 4, 4, 4, 4, 4, 4), block_size=2)
    with pytest.raises(UsageError, match="pool_after counts convolutions 1..2, got 3"):
        GAPCNN(1, 8, 10, filters=(4, 4), pool_after=(3,))
    with pytest.raises(UsageError, match="kernel_size must be an odd"):
        GAPCNN(1, 8, 10, kernel_size=2)
    with pytest.raises(UsageError, match="needs image_shape"):
        make_net({"model": "cnn"}, 10, 3)


def test_make_net_passes_image_shape_and_module_keys(digits):
    config = {"model": "gapcnn", "filters": [4, 6], "pool_after": [1], "batch_norm": True, "hidden": [9]}
    net = make_net(config, digits.n_features, 10, image_shape=digits.image_shape).initialize()
    assert isinstance(net.module_, GAPCNN) and net.module_.filters == (4, 6)
    assert net.module_.feature_size == (4, 4)
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.module_.modules())
    # a square grey image is assumed when no shape is given
    net = make_net({"model": "cnn", "filters": [4, 4], "dense": []}, 64, 10).initialize()
    assert net.module_.features[0].in_channels == 1 and net.module_.classifier[-1].in_features == 4 * 4 * 4


def test_spaces_sample_cnn_configs_and_mixed_kinds(digits):
    for name, kind in (("cnn_mnist", CNN), ("gapcnn_mnist", GAPCNN)):
        for config in ParamGenerator(load_space(name), 0).gen_values(6):
            net = make_net(config, digits.n_features, 10, image_shape=digits.image_shape).initialize()
            assert isinstance(net.module_, kind)
            assert net.module_(torch.rand(2, 1, 8, 8)).shape == (2, 10)
    space = SearchSpace.from_dict({"model": {"distribution": "categorical", "choices": ["mlp", "gapcnn"]},
                                   "hidden": [32], "filters": [4, 8]})
    kinds = {c["model"] for c in ParamGenerator(space, 0).gen_values(12)}
    assert kinds == {"mlp", "gapcnn"}


def test_cnn_learns_on_digits(digits):
    config = {"model": "cnn", "filters": [16, 16, 32, 32], "dense": [64], "lr": 3e-3, "optimizer": "adam"}
    net = make_net(config, digits.n_features, 10, image_shape=digits.image_shape, max_epochs=12, patience=0)
    net.fit(digits.X_train, digits.y_train)
    accuracy = float(np.mean(net.predict(digits.X_test) == digits.y_test))
    assert accuracy > 0.9  # chance is 0.1


@pytest.mark.slow
def test_cnn_searches_retrains_and_plots_through_the_cli(tmp_path, capsys, short_ascents):
    out, space = tmp_path / "run", tmp_path / "tiny_gapcnn.toml"
    space.write_text('model = "gapcnn"\nfilters = [8, 16]\npool_after = [1]\nlr = 3e-3\n'
                     '[batch_norm]\ndistribution = "categorical"\nchoices = [true, false]\n')
    code = main(["search", "--space", str(space), "--dataset", "digits", "--n", "2", "--cv", "2", "--max-epochs", "2",
                 "--patience", "0", "--top", "1", "--retrain-epochs", "2", "--images", "3", "--units", "3",
                 "--no-progress", "--out", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 2 and set(trials["param_model"]) == {"gapcnn"}
    assert (out / "winner.pt").is_file()
    for stem in ("cam", "grad_cam", "saliency", "occlusion", "explanations", "feature_maps", "filters"):
        assert (out / f"{stem}.png").is_file(), printed.out
    assert "skipped receptive-fields" in printed.out
