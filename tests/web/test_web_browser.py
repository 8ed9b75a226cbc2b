"""The page of ``hpsearch serve`` in a real browser: a uvicorn server on a free local port, headless
Chromium through Selenium; pick (and drop) a real test image, see the class ``net.predict`` gives and
the heat map. Skipped, saying why, where Chromium or chromedriver is missing (``.ci/run`` installs
Debian's ``chromium`` and ``chromium-driver``). With ``HPSEARCH_SCREENSHOT=path.png`` it also saves a
screenshot of the page (how ``docs/serve.png`` was made). The ``browser`` fixture is conftest's."""

import contextlib
import io
import os
import socket
import threading
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the web extra is not installed: pip install -e '.[web]'")
pytest.importorskip("uvicorn", reason="uvicorn (the web extra) is not installed")
pytest.importorskip("selenium", reason="selenium is not installed: pip install -e '.[test]'")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(app):
    """``app`` served by uvicorn on a free local port in a thread; yields its address."""
    import uvicorn

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start within 10 s")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def server(retrained_run):
    from hpsearch.web import create_app
    from hpsearch.winner.predict import Predictor

    predictor = Predictor.from_run(retrained_run)
    with serving(create_app(predictor)) as url:
        yield url, predictor


def wait_for(driver, condition, timeout=15):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def shown_class(driver, previous=None) -> int:
    from selenium.webdriver.common.by import By

    def ready(d):
        el = d.find_element(By.ID, "prediction")
        value = el.get_attribute("data-class")
        return value if value and value != previous and el.is_displayed() else False

    return int(wait_for(driver, ready))


def test_pick_and_drop_a_test_image(server, browser, digits, tmp_path):
    from selenium.webdriver.common.by import By

    url, predictor = server
    browser.get(url + "/")
    wait_for(browser, lambda d: "winner" in d.find_element(By.ID, "info").text)
    assert "rounded to 17 levels" in browser.find_element(By.ID, "steps").text  # the footer: this winner's steps
    index = 0
    path = tmp_path / "digit.png"  # a test image as a user has it: 64x64, dark ink on white
    pixels = 255 - (digits.X_test[index][0] * 255).round().astype(np.uint8)
    Image.fromarray(pixels).resize((64, 64), Image.Resampling.BICUBIC).save(path)
    browser.find_element(By.ID, "file").send_keys(str(path))
    got = shown_class(browser)
    x = predictor.prepare(path.read_bytes())
    assert got == int(predictor.net.predict(x[None])[0])
    heat = browser.find_element(By.ID, "heatmap")
    wait_for(browser, lambda d: d.execute_script(
        "const i = arguments[0]; return i.complete && i.naturalWidth > 0", heat))
    assert heat.is_displayed() and heat.get_attribute("src").startswith("data:image/png;base64,")
    assert "saliency" in browser.find_element(By.ID, "method").text
    assert browser.find_element(By.ID, "info").text.endswith("heat map: saliency (|gradient| per pixel)")  # not its key
    # no console error (every page load logged a 404 for /favicon.ico)
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []

    # a drop on the zone: a File made in the page from another test image's PNG bytes
    other = next(i for i in range(len(digits.y_test)) if predictor.net.predict(digits.X_test[i:i + 1])[0] != got)
    buffer = io.BytesIO()
    Image.fromarray((digits.X_test[other][0] * 255).round().astype(np.uint8)).save(buffer, format="PNG")
    browser.execute_script("""
        const bytes = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], "dropped.png", {type: "image/png"}));
        document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true}));
    """, __import__("base64").b64encode(buffer.getvalue()).decode())
    dropped = shown_class(browser, previous=str(got))
    assert dropped == int(predictor.net.predict(digits.X_test[other:other + 1])[0])
    # several files dropped at once: the first answered, named, and the others said (they went unseen)
    browser.execute_script("""
        const bytes = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], "first.png", {type: "image/png"}));
        dt.items.add(new File(["not a picture"], "notes.txt", {type: "text/plain"}));
        document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true}));
    """, __import__("base64").b64encode(buffer.getvalue()).decode())
    wait_for(browser, lambda d: d.find_element(By.ID, "answered-by").text.startswith("first.png: "))
    assert browser.find_element(By.ID, "answered-by").text.endswith(
        " (2 files were dropped: only first.png is classified; drop one at a time)")
    if os.environ.get("HPSEARCH_SCREENSHOT"):
        browser.save_screenshot(os.environ["HPSEARCH_SCREENSHOT"])


def test_page_shows_the_error_of_a_bad_file_and_clears_the_last_answer(server, browser, digits, tmp_path):
    from selenium.webdriver.common.by import By

    url, _ = server
    browser.get(url + "/")
    good = tmp_path / "digit.png"
    Image.fromarray((digits.X_test[0][0] * 255).round().astype(np.uint8)).save(good)
    browser.find_element(By.ID, "file").send_keys(str(good))
    shown_class(browser)
    assert browser.find_element(By.ID, "result").is_displayed()
    path = tmp_path / "notes.png"
    path.write_text("not an image at all")
    browser.find_element(By.ID, "file").send_keys(str(path))
    error = wait_for(browser, lambda d: d.find_element(By.ID, "error") if d.find_element(By.ID, "error").is_displayed()
                     else False)
    assert "415" in error.text and "not an image" in error.text
    assert not browser.find_element(By.ID, "result").is_displayed()  # the digit's answer is gone

    # a non-image dropped, then the digit at once: whichever answer arrives last, the page shows the digit's
    # (the non-image's 415 sat beside it, or hid it)
    browser.execute_script("""
        const drop = (bytes, name, type) => {
          const dt = new DataTransfer();
          dt.items.add(new File([bytes], name, {type}));
          document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true}));
        };
        drop(new TextEncoder().encode("not an image"), "notes.txt", "text/plain");
        drop(Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0)), "digit.png", "image/png");
    """, __import__("base64").b64encode(good.read_bytes()).decode())
    wait_for(browser, lambda d: d.find_element(By.ID, "result").is_displayed())
    time.sleep(1)  # the non-image's answer, had it been shown, has arrived by now
    assert browser.find_element(By.ID, "result").is_displayed()
    assert not browser.find_element(By.ID, "error").is_displayed()


def test_noise_is_flagged_and_a_phone_never_scrolls_sideways(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    url, _ = server
    browser.set_window_size(390, 844)
    try:
        browser.get(url + "/")
        noise = tmp_path / "noise.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(noise)
        browser.find_element(By.ID, "file").send_keys(str(noise))
        unlike = wait_for(browser, lambda d: d.find_element(By.ID, "unlike")
                          if d.find_element(By.ID, "unlike").is_displayed() else False)
        assert "does not look like the training images" in unlike.text
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= 390, width
    finally:
        browser.set_window_size(1000, 760)


def test_the_page_says_a_replaced_winner_and_one_it_cannot_load(retrained_run, gap_run, browser, digits, tmp_path):
    """A retraining replaced winner.pt while the page was open: the header kept the old winner's accuracy, and a
    new winner.pt the server could not load (said in the API's ``stale``) was shown nowhere. Now the page says
    the winner changed, describes the one that answered, names its trial, and shows ``stale``."""
    import shutil

    from selenium.webdriver.common.by import By

    from hpsearch.rundir.names import WINNER_FILE
    from hpsearch.web import load_app
    from hpsearch.winner.bundle import read_winner_info

    run = tmp_path / "run"
    shutil.copytree(retrained_run, run)
    image = tmp_path / "digit.png"
    Image.fromarray((digits.X_test[0][0] * 255).round().astype(np.uint8)).save(image)
    with serving(load_app(run)) as url:
        browser.get(url + "/")
        wait_for(browser, lambda d: "mlp winner" in d.find_element(By.ID, "info").text)
        browser.find_element(By.ID, "file").send_keys(str(image))
        shown_class(browser)
        trial = read_winner_info(run)["trial"]
        assert browser.find_element(By.ID, "answered-by").text == f"digit.png: answered by the winner of trial {trial}"
        assert not browser.find_element(By.ID, "changed").is_displayed()

        shutil.copy(gap_run / WINNER_FILE, run / "new.pt")
        (run / "new.pt").replace(run / WINNER_FILE)  # as a retraining puts its winner in place
        browser.find_element(By.ID, "file").send_keys(str(image))
        wait_for(browser, lambda d: "gapcnn winner" in d.find_element(By.ID, "info").text)
        changed = browser.find_element(By.ID, "changed")
        new_trial = read_winner_info(gap_run)["trial"]
        assert changed.is_displayed() and f"answers now come from trial {new_trial}" in changed.text

        (run / "junk.pt").write_bytes(b"junk")
        (run / "junk.pt").replace(run / WINNER_FILE)
        browser.find_element(By.ID, "file").send_keys(str(image))
        stale = wait_for(browser, lambda d: d.find_element(By.ID, "stale")
                         if d.find_element(By.ID, "stale").is_displayed() else False)
        assert "changed since it was loaded, and the new one cannot be served" in stale.text
        assert f"still serves trial {new_trial}" in stale.text
        assert browser.find_element(By.ID, "result").is_displayed()  # the old winner still answers
