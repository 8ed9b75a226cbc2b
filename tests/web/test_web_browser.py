"""The page of ``hpsearch serve`` in a real browser: a uvicorn server on a free local port, headless
Chromium through Selenium; pick (and drop) a real test image, see the class ``net.predict`` gives and
the heat map. Skipped, saying why, where Chromium or chromedriver is missing (``.ci/run`` installs
Debian's ``chromium`` and ``chromium-driver``). With ``HPSEARCH_SCREENSHOT=path.png`` it also saves a
screenshot of the page (how ``docs/serve.png`` was made). The ``browser`` fixture is conftest's."""

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


@pytest.fixture(scope="module")
def server(retrained_run):
    import uvicorn

    from hpsearch.web import create_app
    from hpsearch.winner.predict import Predictor

    predictor = Predictor.from_run(retrained_run)
    port = free_port()
    config = uvicorn.Config(create_app(predictor), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start within 10 s")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", predictor
    srv.should_exit = True
    thread.join(timeout=5)


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
