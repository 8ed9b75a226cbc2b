"""The API of ``hpsearch serve`` through FastAPI's TestClient: info, predictions that equal
``net.predict`` on the same preprocessed image, every error path, and the server surviving them."""

import io
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi", reason="the web extra is not installed: pip install -e '.[web]'")
pytest.importorskip("python_multipart", reason="python-multipart (the web extra) is not installed")
pytest.importorskip("httpx", reason="httpx (FastAPI's TestClient) is not installed")

with warnings.catch_warnings():  # Starlette's TestClient: "install httpx2 instead"
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient  # noqa: E402

from hpsearch.data.preprocess import preprocess, preprocessing_for  # noqa: E402
from hpsearch.rundir.names import WINNER_FILE  # noqa: E402
from hpsearch.viz.attribution import cam  # noqa: E402
from hpsearch.web import create_app  # noqa: E402
from hpsearch.winner.bundle import load_winner  # noqa: E402
from hpsearch.winner.predict import Predictor  # noqa: E402


def png_bytes(x, size=None, invert=False, mode="L") -> bytes:
    """A (1, H, W) image in [0, 1] as the bytes of a PNG file."""
    pixels = (np.asarray(x)[0] * 255).round().astype(np.uint8)
    image = Image.fromarray(255 - pixels if invert else pixels)
    if size:
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


def post(client, data: bytes, name="digit.png", content_type="image/png"):
    return client.post("/api/predict", files={"file": (name, data, content_type)})


@pytest.fixture(scope="module")
def mlp(retrained_run):
    return Predictor.from_run(retrained_run)


@pytest.fixture(scope="module")
def client(mlp):
    return TestClient(create_app(mlp))


def test_info_describes_the_winner(client, mlp, retrained_run):
    info = client.get("/api/info").json()
    bundle = load_winner(retrained_run).winner_
    assert info["dataset"] == "digits" and info["model"] == "mlp" and info["method"] == "saliency"
    assert info["classes"] == [str(c) for c in bundle["class_names"]]
    assert info["test_accuracy"] == pytest.approx(bundle["test_accuracy"])
    assert info["image_shape"] == [1, 8, 8]
    # how the winner was chosen (a test-chosen one's accuracy is optimistic: the page says so), the method's name
    assert info["winner_by"] == bundle.get("winner_by", "cv") == "cv"
    assert info["method_name"] == "saliency (|gradient| per pixel)"
    assert info["preprocess"] == preprocessing_for("digits", (1, 8, 8))
    # the footer says the winner's own steps (it used to name a fixed list, without the stretch and the levels)
    assert info["preprocess_words"] == (
        "grey, scaled to [0, 1], inverted when its border is light (ink made bright on dark), its ink's box centred "
        "and scaled to 100% of the 8\u00d78 frame and stretched so its brightest pixel is 1 (an image of 8\u00d78 stays "
        "as it is), rounded to 17 levels")
    assert client.get("/").headers["content-type"].startswith("text/html")
    assert "app.js" in client.get("/").text and client.get("/static/app.js").status_code == 200


def test_predict_equals_net_predict_on_the_same_image(client, mlp, digits):
    net = mlp.net
    for i in range(5):
        data = png_bytes(digits.X_test[i])
        out = post(client, data).json()
        x = preprocess(data, mlp.settings)
        np.testing.assert_array_equal(x, digits.X_test[i])  # 8x8 PNG of a test image: exact round trip
        assert out["class_index"] == int(net.predict(x[None])[0])
        np.testing.assert_allclose(out["probabilities"], net.predict_proba(x[None])[0], rtol=1e-5, atol=1e-7)
        assert out["top"][0]["class_index"] == out["class_index"] and len(out["top"]) == 3
        assert out["method"] == "saliency" and out["heatmap_png"].startswith("data:image/png;base64,")
    # a large RGB picture, dark ink on white: resized, inverted and centred, then the same net
    data = png_bytes(digits.X_test[0], size=120, invert=True, mode="RGB")
    out = post(client, data, name="../../etc/passwd").json()  # the name is never used as a path
    x = preprocess(data, mlp.settings)
    assert out["class_index"] == int(net.predict(x[None])[0])
    np.testing.assert_allclose(out["input"], x, atol=1e-6)


def test_examples_are_test_images(client, digits):
    examples = client.get("/api/examples").json()
    assert len(examples) == 8
    for ex in examples[:2]:
        assert ex["label"] == digits.y_test[ex["index"]]


def bomb_png(side=5000) -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (side, side)).save(buffer, format="PNG")  # 25 M pixels in a few kB
    return buffer.getvalue()


def lab_tiff() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("LAB", (8, 8), (50, 0, 0)).save(out, format="TIFF")
    return out.getvalue()


def thin_png(width=200_000) -> bytes:
    pixels = np.zeros((1, width), np.uint8)
    pixels[0, [0, -1]] = 255  # ink at both ends: its box is the whole image
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def cut_off_upload(client, data: bytes, media_type: str = "multipart/form-data"):
    """A multipart body cut short inside its file part, its closing boundary never sent."""
    head = (b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
            b"Content-Type: image/png\r\n\r\n")
    return client.post("/api/predict", content=head + data[: len(data) // 2],
                       headers={"content-type": f"{media_type}; boundary=XyZ"})


def test_every_error_path_and_the_server_survives(client, digits):
    good = png_bytes(digits.X_test[0])
    cases = [
        (post(client, b"\x89PNG\r\n\x1a\n" + bytes(5 * 1024 * 1024 + 1)), 413, "too large"),
        (post(client, b"hello, I am text", name="a.png", content_type="image/png"), 415, "not an image"),
        (post(client, b"%PDF-1.4 ...", name="a.pdf", content_type="application/pdf"), 415, "not an image"),
        (client.post("/api/predict", content=good, headers={"content-type": "image/png"}), 415, "multipart"),
        (post(client, good[:60]), 400, "cannot be read"),  # a truncated PNG
        (post(client, b"\xff\xd8\xff" + bytes(100)), 400, "cannot be read"),  # a JPEG header and nothing
        (post(client, b""), 400, "empty"),
        (client.post("/api/predict", data={"other": "x"}, files={"x": ("a", good)}), 400, "field 'file'"),
        (post(client, bomb_png()), 413, "pixels"),
        (post(client, good[:8]), 400, "cannot be read (cut short, or not the format its first bytes say)"),
        (post(client, lab_tiff(), name="a.tif", content_type="image/tiff"), 415, "a LAB image cannot be read"),
        (cut_off_upload(client, good), 400, "cut off before its end"),  # said as a missing file before
    ]
    for response, status, words in cases:
        assert response.status_code == status, response.text
        assert words in response.json()["detail"]
    for path in ("/static/../winner.pt", "/static/..%2f..%2fwinner.pt", "/static/%2e%2e/app.py", "/winner.pt"):
        assert client.get(path).status_code == 404
    assert post(client, good).status_code == 200  # still serving
    head = client.head("/")  # curl -I, a link checker: it was a 405
    assert head.status_code == 200 and head.headers["content-type"].startswith("text/html")
    whole = (b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\nContent-Type: image/png'
             b"\r\n\r\n" + good + b"\r\n--XyZ--\r\n")  # a media type is case-insensitive: it was a 415
    assert client.post("/api/predict", content=whole,
                       headers={"content-type": "Multipart/Form-Data; boundary=XyZ"}).status_code == 200
    # 16384 x 1 pixels in a few hundred bytes, ink at both ends: centring used to pad its box to a
    # square of its side (200000 pixels: 149 GiB, a 500); the box is shrunk to 4096 first
    assert post(client, thin_png(16384)).status_code == 200
    # longer sides are refused on the header: a 16,000,000 x 1 strip in 31 KB passed the pixel cap and
    # one resize of it took seconds
    refused = post(client, thin_png(16385))
    assert refused.status_code == 413 and "16385x1 pixels refused: at most 16,384 pixels on a side" in refused.text


def test_a_prediction_runs_beside_the_event_loop(mlp, digits, monkeypatch):
    """The net runs in a worker thread: a slow prediction (a 12-megapixel photo takes a second) does not
    hold up the page and /api/info for everyone else, as it did on the event loop."""
    import asyncio

    seen = []

    def watched(original):
        def call(data):
            try:
                asyncio.get_running_loop()
                seen.append("on the event loop")
            except RuntimeError:
                seen.append("in a worker thread")
            return original(data)
        return call

    monkeypatch.setattr(mlp, "prepare", watched(mlp.prepare))
    monkeypatch.setattr(mlp, "predict_prepared", watched(mlp.predict_prepared))
    assert post(TestClient(create_app(mlp)), png_bytes(digits.X_test[0])).status_code == 200
    assert seen == ["in a worker thread"] * 2


def test_a_slow_picture_does_not_hold_up_the_others(mlp, digits, monkeypatch):
    """Decoding and resizing ran inside the net's lock: a picture slow to prepare (a huge photo) kept
    every other upload waiting. Only the net's part holds the lock now: the second upload is answered
    while the first is still being prepared."""
    import threading

    client, original = TestClient(create_app(mlp)), mlp.prepare
    entered, gate, released = threading.Event(), threading.Event(), []

    def slow_first(data):
        if not entered.is_set():
            entered.set()
            released.append(gate.wait(timeout=10))  # set once the second upload is answered
        return original(data)

    monkeypatch.setattr(mlp, "prepare", slow_first)
    first = threading.Thread(target=lambda: released.append(post(client, png_bytes(digits.X_test[0])).status_code))
    first.start()
    assert entered.wait(20)  # the first upload is inside prepare
    assert post(client, png_bytes(digits.X_test[1])).status_code == 200
    gate.set()
    first.join(20)
    assert released == [True, 200]


def test_pillow_decompression_bomb_is_refused(monkeypatch):
    from hpsearch.data import preprocess as pre

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow's own guard, below our pixel cap
    with pytest.raises(pre.ImageRejected) as info:
        pre.open_image(bomb_png(100))
    assert info.value.status == 413 and "decompression bomb" in str(info.value)


def test_gap_net_explains_with_cam(gap_run, digits):
    predictor = Predictor.from_run(gap_run)
    client = TestClient(create_app(predictor))
    assert client.get("/api/info").json()["method"] == "cam"
    out = post(client, png_bytes(digits.X_test[3])).json()
    x = digits.X_test[3]
    assert out["class_index"] == int(predictor.net.predict(x[None])[0]) and out["method"] == "cam"
    np.testing.assert_allclose(predictor.explain(x), cam(predictor.net, x[None], relu=True)[0])


def test_old_bundles_get_the_preprocessing(gap_run, tmp_path):
    bundle = torch.load(gap_run / WINNER_FILE, weights_only=True)
    assert bundle["preprocess"]["levels"] == 17 and bundle["preprocess"]["invert"] == "auto"
    del bundle["preprocess"]
    torch.save(bundle, tmp_path / WINNER_FILE)
    assert load_winner(tmp_path).winner_["preprocess"] == preprocessing_for("digits", (1, 8, 8))


def test_preprocess_inverts_light_backgrounds_and_centres():
    settings = preprocessing_for("mnist", (1, 28, 28))
    page = np.ones((100, 60), dtype=np.float32)  # white paper, a dark bar off to one side
    page[10:50, 5:15] = 0.0
    x = preprocess(page, settings)
    assert x.shape == (1, 28, 28) and x.min() >= 0 and x.max() == pytest.approx(1.0)
    assert x[0, 0].max() == 0 and x[0, :, 0].max() == 0  # dark border: inverted
    rows, cols = np.nonzero(x[0] > 0.5)
    assert abs(rows.mean() - 13.5) < 1.5 and abs(cols.mean() - 13.5) < 1.5  # centred
    assert rows.max() - rows.min() + 1 <= 21  # fits the 20-pixel box
    rgba = Image.new("RGBA", (40, 40), (0, 0, 0, 0))  # transparent background, opaque black ink
    rgba.paste((0, 0, 0, 255), (15, 5, 25, 35))
    y = preprocess(rgba, settings)
    assert y[0, 0, 0] == 0 and y.max() == pytest.approx(1.0)


def test_serve_command_binds_localhost_and_names_a_missing_winner(tmp_path, capsys):
    from hpsearch.cli import build_parser, main

    args = build_parser().parse_args(["serve", str(tmp_path)])
    assert (args.host, args.port) == ("127.0.0.1", 8000)
    assert main(["serve", str(tmp_path)]) == 2
    assert "is not a run folder (no settings.json, no winner.pt)" in capsys.readouterr().err
    (tmp_path / "settings.json").write_text("{}")  # a search not yet retrained
    assert main(["serve", str(tmp_path)]) == 2
    assert "holds no winner.pt" in capsys.readouterr().err


def test_a_host_name_that_does_not_resolve_is_said_as_such():
    from hpsearch.errors import UsageError
    from hpsearch.web import _listen

    with pytest.raises(UsageError) as info:  # it used to say "Unknown error -2" and to choose another port
        _listen("nosuchhost.invalid", 0)
    assert str(info.value).startswith("host nosuchhost.invalid: no such host name here; give this machine's address")
    with pytest.raises(UsageError) as info:  # an address of another machine: it said to choose another port
        _listen("192.0.2.1", 0)  # TEST-NET-1 (RFC 5737): on no machine
    assert str(info.value) == ("host 192.0.2.1: not an address of this machine; give this machine's address "
                               "(127.0.0.1 for this machine alone, 0.0.0.0 for the network)")


@pytest.mark.slow
def test_serve_says_the_real_address_and_a_busy_port_is_one_error(retrained_run, capsys):
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    from hpsearch.cli import main

    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        assert main(["serve", str(retrained_run), "--port", str(port)]) == 2
        captured = capsys.readouterr()
        assert "serving" not in captured.out  # said only once it listens
        assert f"--host 127.0.0.1 --port {port}: cannot listen there (Address already in use)" in captured.err
    # --port 0: the system picks one, and the line names it
    proc = subprocess.Popen([sys.executable, "-m", "hpsearch.cli", "serve", str(retrained_run), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        address = line.split(" on ")[1].split(" ")[0]
        assert address.startswith("http://127.0.0.1:") and not address.endswith(":0/")
        with urllib.request.urlopen(address + "api/info", timeout=30) as answer:
            assert answer.status == 200
        with urllib.request.urlopen(address.replace("127.0.0.1", "localhost") + "api/info", timeout=30) as answer:
            assert answer.status == 200
        # a name a DNS rebinding points here is not this machine's: the page of another site reads nothing
        rebound = urllib.request.Request(address + "api/info", headers={"Host": "evil.example"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(rebound, timeout=30)
        assert refused.value.code == 400
        # an upload that stalls held a Ctrl-C for good (then a second one printed two tracebacks)
        port = int(address.rsplit(":", 1)[1].strip("/"))
        with socket.create_connection(("127.0.0.1", port)) as stalled:
            stalled.sendall(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; "
                            b"boundary=XX\r\nContent-Length: 100000\r\n\r\n--XX\r\nContent-Disposition: "
                            b'form-data; name="file"; filename="a.png"\r\n\r\n\x89PNG')
            time.sleep(1)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)  # 3 s of grace, then it stops
        assert proc.returncode == 0 and "stopping: 1 request(s) in flight get 3 s to finish" in err, err
        assert "Traceback" not in err, err
    finally:
        proc.kill()
        proc.wait(timeout=30)


@pytest.mark.slow
def test_an_ipv6_address_is_said_as_a_url_writes_it(retrained_run):
    """--host ::1 printed http://::1:PORT/, which no browser or curl opens."""
    import socket
    import subprocess
    import sys
    import urllib.request

    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    proc = subprocess.Popen([sys.executable, "-m", "hpsearch.cli", "serve", str(retrained_run), "--host", "[::1]",
                             "--port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        address = proc.stdout.readline().split(" on ")[1].split(" ")[0]
        assert address.startswith("http://[::1]:"), address
        with urllib.request.urlopen(address + "api/info", timeout=30) as answer:
            assert answer.status == 200
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_a_winner_a_retraining_replaces_is_served_from_the_next_request(retrained_run, gap_run, digits, tmp_path):
    """The page kept the winner it started with: after a retraining chose another, /api/info and every answer
    were the old winner's, and nothing said so. Now the new winner.pt is loaded before the next request, an
    answer names the trial that gave it, and a new winner.pt that cannot be loaded is said."""
    import shutil

    from hpsearch.web import load_app

    run = tmp_path / "run"
    shutil.copytree(retrained_run, run)
    client = TestClient(load_app(run))
    first = client.get("/api/info").json()
    assert first["model"] == "mlp" and "stale" not in first and first["winner_version"] == 0
    answer = post(client, png_bytes(digits.X_test[0])).json()
    assert answer["trial"] == first["trial"] and answer["winner_version"] == 0
    shutil.copy(gap_run / WINNER_FILE, run / "new.pt")
    (run / "new.pt").replace(run / WINNER_FILE)  # as a retraining puts its winner in place
    assert client.get("/api/info").json()["model"] == "gapcnn"
    answer = post(client, png_bytes(digits.X_test[0])).json()
    assert answer["method"] == "cam" and answer["winner_version"] == 1  # the page compares it with its header's
    (run / "junk.pt").write_bytes(b"junk")
    (run / "junk.pt").replace(run / WINNER_FILE)
    info = client.get("/api/info").json()
    assert info["model"] == "gapcnn" and f"{run / WINNER_FILE} changed since it was loaded, and the new one cannot " \
        "be served" in info["stale"]
    assert post(client, png_bytes(digits.X_test[0])).status_code == 200


def test_at_most_two_pictures_are_prepared_at_once(mlp, digits, monkeypatch):
    """Outside the net's lock the thread pool prepared up to 40 uploads at once, some 300 MB each for a
    4096x4096 picture: a flood of small files could exhaust the memory. Two at a time now, apart from the net."""
    import threading
    import time

    from hpsearch.web.app import PREPARED_AT_ONCE

    client, original, guard = TestClient(create_app(mlp)), mlp.prepare, threading.Lock()
    inside, most = [0], [0]

    def counted(data):
        with guard:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.3)
        with guard:
            inside[0] -= 1
        return original(data)

    monkeypatch.setattr(mlp, "prepare", counted)
    answers = []
    uploads = [threading.Thread(target=lambda i=i: answers.append(post(client, png_bytes(digits.X_test[i])).status_code))
               for i in range(6)]
    for upload in uploads:
        upload.start()
    for upload in uploads:
        upload.join(60)
    assert answers == [200] * 6 and most[0] == PREPARED_AT_ONCE == 2
