"""Pictures, ``predict`` and ``serve`` of a winner with one label per position: three 8x8 digits
side by side on a 24x24 canvas (Triple-MNIST in small), a small CNN trained for a few seconds
(about 65% per position)."""

import numpy as np
import pandas as pd
import pytest
import torch
from captum.attr import LayerGradCam
from PIL import Image

from hpsearch.cli import main
from hpsearch.errors import UsageError
from hpsearch.training.models.mlp import MLP
from hpsearch.training.net import make_net
from hpsearch.viz.attribution import grad_cam, hires_cam, saliency
from hpsearch.viz.plots import REGISTRY
from hpsearch.viz.positions import label_text, position_maps, position_report, wrong_images
from hpsearch.viz.targets import resolve_targets
from hpsearch.winner.bundle import save_winner
from hpsearch.winner.pictures import draw_pictures
from hpsearch.winner.predict import Predictor
from hpsearch.winner.predict_files import answer_line, predict_files

CONFIG = {"model": "cnn", "filters": [16, 32], "dense": [64], "lr": 3e-3}


@pytest.fixture(scope="module")
def triple(digit_triples):
    return digit_triples  # conftest: 1,500 / 300 images of three digits from sklearn's digits


@pytest.fixture(scope="module")
def net(triple):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        net = make_net(CONFIG, triple, max_epochs=8, patience=0)
        net.fit(triple.X_train, triple.y_train)
    finally:
        torch.set_num_threads(threads)
    assert net.predict_proba(triple.X_test[:2]).shape == (2, 3, 10)
    return net


@pytest.fixture(scope="module")
def run(net, triple, tmp_path_factory):
    run = tmp_path_factory.mktemp("triple") / "run"
    run.mkdir()
    accuracy = float(np.mean(net.predict(triple.X_test) == triple.y_test))
    save_winner(net, run, triple, config=CONFIG, test_accuracy=accuracy)
    return run


@pytest.fixture
def triple_data(monkeypatch, triple):
    """``load_dataset("triple-mnist")`` gives the small triples (the run has no settings.json)."""
    import hpsearch.data

    load = hpsearch.data.load_dataset
    monkeypatch.setattr(hpsearch.data, "load_dataset", lambda name, *a, **k: triple if name == "triple-mnist"
                        else load(name, *a, **k))


def _share(maps: np.ndarray, k: int) -> float:
    """Mean over images of the share of positive mass in the k-th third of the columns."""
    positive = np.clip(maps, 0, None)
    total = positive.sum(axis=(1, 2))
    return float(np.mean(positive[:, :, 8 * k:8 * k + 8].sum(axis=(1, 2)) / np.maximum(total, 1e-12)))


def test_gradcam_per_position_is_captum_with_a_tuple_target(net, triple):
    X = triple.X_test[:64]
    digits = net.predict(X)
    module = net.module_.eval()
    ours = [grad_cam(net, X, (k, None)) for k in range(3)]
    direct = LayerGradCam(module, module.last_conv_activation).attribute(
        torch.tensor(X), target=[(0, int(d)) for d in digits[:, 0]], relu_attributions=True)
    expected = torch.nn.functional.interpolate(direct, size=(24, 24), mode="bilinear")[:, 0].detach().numpy()
    np.testing.assert_allclose(ours[0], expected, rtol=1e-5, atol=1e-7)
    assert np.linalg.norm(ours[0] - ours[2]) > 0.3 * np.linalg.norm(ours[0])
    np.testing.assert_array_equal(position_maps(net, X[:5], "gradcam")[:, 2], ours[2][:5])
    # Grad-CAM's one weight per channel (the spatial mean of the gradients) loses *where* the dense
    # head reads a feature: measured here 0.33 / 0.34 / 0.33 of position 0's mass in the three
    # thirds, chance level. HiResCAM keeps the gradient per cell (0.64 left for position 0, 0.63
    # right for position 2), saliency ~0.57: those follow the position.
    hires = [hires_cam(net, X, (k, None)) for k in range(3)]
    assert _share(hires[0], 0) > 0.5 and _share(hires[2], 2) > 0.5
    assert _share(hires[1], 1) > 0.5
    pixels = [saliency(net, X, (k, None)).sum(axis=1) for k in (0, 2)]
    assert _share(pixels[0], 0) > 0.45 and _share(pixels[1], 2) > 0.45


def test_targets_of_a_positions_net(net, triple):
    X = torch.tensor(triple.X_test[:4])
    t = resolve_targets(net.module_, X, (1, None))
    assert t.tolist() == [[1, int(d)] for d in net.predict(X.numpy())[:, 1]]
    assert resolve_targets(net.module_, X, [(0, 3), (1, 4), (2, 5), (0, 6)]).tolist() == [[0, 3], [1, 4], [2, 5], [0, 6]]
    with pytest.raises(UsageError, match=r"one label per position \(3\); say which"):
        resolve_targets(net.module_, X, None)
    with pytest.raises(UsageError, match="position must be in 0..2"):
        resolve_targets(net.module_, X, (3, 1))


def test_wrong_images_are_those_with_a_wrong_position(net, triple):
    y_true = np.array([[0, 4, 2], [1, 1, 1], [5, 6, 7], [9, 9, 9]])
    y_pred = np.array([[0, 4, 7], [1, 1, 1], [5, 6, 7], [8, 9, 0]])
    assert wrong_images(y_true, y_pred).tolist() == [0, 3]
    proba = np.full((4, 3, 10), 0.01)
    proba[0, :, :] = 0.05
    proba[3, :, :] = 0.5
    assert wrong_images(y_true, y_pred, proba).tolist() == [3, 0]  # the more confident first
    pred = net.predict(triple.X_test)
    wrong = wrong_images(triple.y_test, pred, net.predict_proba(triple.X_test))
    assert sorted(wrong.tolist()) == np.flatnonzero((pred != triple.y_test).any(axis=1)).tolist()
    assert label_text([0, 4, 2], [str(d) for d in range(10)]) == "042"


@pytest.mark.slow
def test_plot_all_writes_the_per_position_pictures(run, net, triple, short_ascents, capsys):
    files = draw_pictures(run, "all", images=3, units=2, dataset=triple)
    out = capsys.readouterr().out
    for name in ("confusion_matrix.png", "class_report.png", "class_report.txt", "class_report.csv",
                 "misclassified.png", "learning_curves.png", "grad_cam.png", "saliency.png", "guided_backprop.png",
                 "occlusion.png", "explanations.png", "sanity.png", "sanity.txt"):
        assert name in files and (run / name).is_file(), name
    assert "skipped cam: the winner gives one label per position" in out
    pred = net.predict(triple.X_test)
    table = pd.read_csv(run / "class_report.csv", dtype={"position": str})
    accuracy = table[table["class"] == "accuracy"].set_index("position")["precision"]
    assert list(accuracy.index) == ["0", "1", "2"]
    np.testing.assert_allclose(accuracy.to_numpy(), (pred == triple.y_test).mean(axis=0), atol=1e-6)
    exact = table[table["position"] == "all"]
    assert exact["class"].tolist() == ["exact match"]
    assert exact["precision"].iloc[0] == pytest.approx((pred == triple.y_test).all(axis=1).mean(), abs=1e-6)
    assert len(table[table["position"] == "1"]) == 13  # ten digits, accuracy, two averages
    text = (run / "class_report.txt").read_text()
    assert text.count("digit 2 (middle)") == 2 and "exact match (every position right)" in text
    assert "One label per position" in (run / "sanity.txt").read_text()
    _, csv_table = position_report(triple.y_test, pred, triple.class_names)
    assert csv_table.loc[(2, "accuracy"), "recall"] == pytest.approx((pred[:, 2] == triple.y_test[:, 2]).mean())


def test_a_method_that_does_not_apply_exits_2_with_the_reason(run, net, capsys):
    assert main(["plot", "cam", str(run)]) == 2  # refused before the data are looked for
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cam does not apply to this winner" in err
    assert "one label per position (3 positions)" in err and "GAP net" in err
    mlp = MLP(576, (8,), 10, positions=3)
    assert "(position, digit) pairs" in REGISTRY["receptive-fields"].applies(mlp)
    assert "(position, digit) pairs" in REGISTRY["maximizers"].applies(mlp)
    assert REGISTRY["saliency"].applies(mlp) is None
    assert "need an MLP" in REGISTRY["receptive-fields"].applies(net.module_)  # the model kind's reason first


def test_predict_prints_the_three_digits(run, net, triple, tmp_path, triple_data, capsys):
    x = triple.X_test[:3]
    paths = []
    for i, image in enumerate(x):
        path = tmp_path / f"triple{i}.png"
        Image.fromarray((image[0] * 255).round().astype(np.uint8), mode="L").save(path)
        paths.append(path)
    assert main(["predict", str(run), *map(str, paths)]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    expected = ["".join(str(d) for d in row) for row in net.predict(x)]
    assert [r[1] for r in rows] == expected
    predictor = Predictor.from_run(run)
    assert predictor.method == "hirescam"  # Grad-CAM's three maps would look alike (see the Grad-CAM test)
    answers = list(predict_files(predictor, paths, explain=True, out_dir=tmp_path / "maps", size=48))
    proba = net.predict_proba(np.stack([predictor.prepare(p.read_bytes()) for p in paths]))
    for a, p, want in zip(answers, proba, expected, strict=True):
        assert a["class_name"] == want and a["digits"] == list(want) and a["error"] is None
        np.testing.assert_allclose(a["position_probabilities"], p.max(axis=-1), rtol=1e-6)
        assert a["probability"] == pytest.approx(np.prod(p.max(axis=-1)), rel=1e-6)
        assert len(answer_line(a).split("\t")[2].split()) == 3
        with Image.open(a["heatmap"]) as im:
            assert im.size == (3 * 48 + 2 * 4, 48)  # one panel per position
    with pytest.raises(UsageError, match="one label per image"):
        predictor.predict_image(paths[0].read_bytes())


def test_serve_refuses_a_positions_winner(run, capsys):
    pytest.importorskip("fastapi")
    assert main(["serve", str(run), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the page shows one label per image" in err and "hpsearch predict" in err
    from hpsearch.web import create_app

    with pytest.raises(UsageError, match="shows one label per image"):
        create_app(Predictor.from_run(run))
