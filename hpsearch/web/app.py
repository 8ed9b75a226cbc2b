"""The FastAPI app of ``hpsearch serve``: one static page and a small JSON API around a Predictor.

- ``GET /`` the page; ``GET /static/<file>`` its script and style (files of this package only);
- ``GET /api/info`` the dataset, classes, model, test accuracy, heat-map method and preprocessing;
- ``GET /api/examples`` a few test images of the dataset as PNG data URLs (empty when the data
  cannot be loaded here);
- ``POST /api/predict`` (multipart, field ``file``) the class, the top-3 and all probabilities, the
  image the net saw and the heat map over it (PNG data URLs).

Safety: a body over ``max_bytes`` is 413 (before it is parsed when it says its length), bytes that
are no image 415, an image Pillow cannot decode 400, one over ``MAX_PIXELS`` pixels (a decompression
bomb) 413; nothing the client sends names a file; every failure is a JSON ``{"detail": ...}`` and
the server goes on serving.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from ..data.preprocess import ImageRejected, steps_in_words
from ..errors import UsageError, brief
from ..winner.predict import METHOD_NAMES, Predictor

__all__ = ["create_app", "MAX_UPLOAD_BYTES", "N_EXAMPLES"]

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
N_EXAMPLES = 8
PREPARED_AT_ONCE = 2  # uploads decoded and resized at the same time (each may take hundreds of MB)
STATIC = Path(str(files(__package__) / "static"))


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def _info(predictor: Predictor) -> dict:
    bundle = predictor.info
    config = bundle.get("config", {})
    return {
        "dataset": bundle.get("dataset"),
        "classes": predictor.class_names,
        "model": config.get("model", "mlp"),
        "config": config,
        "test_accuracy": bundle.get("test_accuracy"),
        # "test": the winner was chosen by that very accuracy (the seed's rule, and every winner.pt written
        # before the choice was recorded), so it is optimistic
        "winner_by": bundle.get("winner_by", "test"),
        "epochs": bundle.get("epochs"),
        "trial": bundle.get("trial"),
        "method": predictor.method,
        "method_name": METHOD_NAMES[predictor.method],
        "image_shape": list(predictor.image_shape),
        "preprocess": predictor.settings,
        "preprocess_words": steps_in_words(predictor.settings),
        "max_upload_bytes": MAX_UPLOAD_BYTES,
    }


def _examples(predictor: Predictor, n: int) -> list[dict]:
    """The first test image of each of the first ``n`` classes, at the net's own size."""
    from ..data import load_dataset
    from ..rundir.names import SETTINGS_FILE
    from ..rundir.run_info import run_dataset

    try:
        if predictor.run_dir is not None and (predictor.run_dir / SETTINGS_FILE).is_file():
            data = run_dataset(predictor.run_dir)  # the run's own data: an image folder, an npz, a Dataset
        else:
            data = load_dataset(predictor.info.get("dataset", ""))
    except Exception:  # noqa: BLE001 - no data here (e.g. MNIST without its files): the page offers none
        return []
    picks = [int(np.flatnonzero(data.y_test == c)[0]) for c in np.unique(data.y_test)[:n]]
    return [{"index": i, "label": int(data.y_test[i]), "class_name": predictor.class_names[int(data.y_test[i])],
             "png": _data_url(Predictor.image_png(data.X_test[i], size=0))} for i in picks]


def _complete(content_type: str, body: bytes) -> bool:
    """Whether a multipart ``body`` reaches its closing boundary: the parser drops a part cut off in
    its middle without a word, which would then be said as a missing file."""
    boundary = next((value.strip().strip('"') for key, _, value in
                     (item.strip().partition("=") for item in content_type.split(";")[1:])
                     if key.strip().lower() == "boundary"), "")
    return bool(boundary) and f"--{boundary}--".encode() in body


async def _upload(request: Request, max_bytes: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes + 64 * 1024:
        raise ImageRejected(f"upload too large: at most {max_bytes // (1024 * 1024)} MB", 413)
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):  # any case (RFC 2045)
        raise ImageRejected("send the image as multipart/form-data, field 'file'", 415)
    limit, body = max_bytes + 64 * 1024, bytearray()  # a body without a length is read up to the cap
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ImageRejected(f"upload too large: at most {max_bytes // (1024 * 1024)} MB", 413)
    request._body = bytes(body)  # what request.form() parses (Starlette reads a cached body first)
    try:
        form = await request.form(max_files=1, max_fields=4)
    except Exception as exc:  # noqa: BLE001 - malformed multipart, too many parts
        raise ImageRejected(f"malformed upload ({brief(exc)})", 400) from None
    try:  # every part closed, the file among them or not (a wrong field name left one open)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            if not _complete(request.headers["content-type"], body):
                raise ImageRejected("the upload was cut off before its end (no closing multipart boundary): send "
                                    "it again", 400)
            raise ImageRejected("no file in the upload: send it as the multipart field 'file'", 400)
        data = await upload.read(max_bytes + 1)
    finally:
        await form.close()
    if len(data) > max_bytes:
        raise ImageRejected(f"upload too large: at most {max_bytes // (1024 * 1024)} MB", 413)
    if not data:
        raise ImageRejected("the uploaded file is empty", 400)
    return data


def _mark(path: Path | None):
    """What tells a replaced file (a retraining's new winner.pt, put in place whole) from the one loaded."""
    try:
        st = path.stat() if path is not None else None
    except OSError:
        return None
    return None if st is None else (st.st_ino, st.st_mtime_ns, st.st_size)


def create_app(predictor: Predictor, *, max_bytes: int = MAX_UPLOAD_BYTES, examples: int = N_EXAMPLES,
               reload: Callable[[], Predictor] | None = None, watch: Path | None = None) -> FastAPI:
    """The app serving ``predictor`` (a ``hpsearch.winner.predict.Predictor``); the page shows one class per
    image, so a winner with one label per position is refused (``UsageError``). With ``watch`` (the run's
    winner.pt) and ``reload``, a replaced winner (a retraining chose another) is loaded before the next
    request is answered; one that cannot be loaded is said in every answer, the old one still served."""
    predictor.check_single_label("the page of hpsearch serve")
    app = FastAPI(title="hpsearch serve", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    lock = threading.Lock()  # one net, explained with hooks: one request at a time
    # pictures decoded and resized at once, apart from the net's lock (a slow one holds up no prediction):
    # a 4096x4096 upload of 59 KB takes some 300 MB while it is prepared, and the thread pool runs 40
    preparing = threading.BoundedSemaphore(PREPARED_AT_ONCE)
    cache: dict = {}
    # served: the winner and how many times a replaced one was loaded (one tuple, swapped whole). Every answer
    # carries that count, so the page can tell its header describes another winner than the one that answered
    # (a retraining of the same trial included)
    state = {"served": (predictor, 0), "mark": _mark(watch), "stale": None}

    def current() -> tuple[Predictor, int]:
        mark = _mark(watch)
        if reload is None or mark == state["mark"]:
            return state["served"]
        with lock:
            if mark != state["mark"]:
                state["mark"] = mark  # tried once per change, not per request
                served, version = state["served"]
                try:
                    fresh = reload()
                    fresh.check_single_label("the page of hpsearch serve")
                except UsageError as exc:
                    state["stale"] = (f"{watch} changed since it was loaded, and the new one cannot be served "
                                      f"({exc}); the page still serves trial {served.info.get('trial')}")
                else:
                    state.update(served=(fresh, version + 1), stale=None)
                    cache.clear()
        return state["served"]

    def said(out: dict, version: int) -> dict:
        out = {**out, "winner_version": version}
        return {**out, "stale": state["stale"]} if state["stale"] else out

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)  # HEAD: a link checker's or curl -I's
    def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/api/info")
    def info():
        served, version = current()
        return said(_info(served), version)

    @app.get("/api/examples")
    def example_images():
        served, _ = current()
        if "examples" not in cache:
            cache["examples"] = _examples(served, examples)
        return cache["examples"]

    def answer(data: bytes) -> dict:
        served, version = current()
        served.check_single_label("the page")
        with preparing:
            x = served.prepare(data)
        with lock:
            out = served.predict_prepared(x)
        out["trial"] = served.info.get("trial")  # which winner answered
        out = said(out, version)
        x, heat = out.pop("x"), out.pop("heat")
        out["input_png"] = _data_url(Predictor.image_png(x))
        out["heatmap_png"] = _data_url(Predictor.heatmap_png(x, heat))
        out["input"] = np.round(x, 6).tolist()
        return out

    @app.post("/api/predict")
    async def predict(request: Request):
        try:
            data = await _upload(request, max_bytes)
            # decoding, the net and the heat map in a worker thread: the event loop keeps serving the
            # page and other requests meanwhile (a 12-megapixel photo takes a second)
            return await run_in_threadpool(answer, data)
        except ImageRejected as exc:
            return _error(exc.status, str(exc))
        except Exception as exc:  # noqa: BLE001 - one bad request never takes the server down
            return _error(500, f"prediction failed: {type(exc).__name__}: {brief(exc, 200)}")

    return app
