"""``hpsearch serve RUN``: a page to drop an image on and see the winner's class and heat map.

Needs the ``web`` extra (``pip install -e '.[web]'``: FastAPI, uvicorn, python-multipart). The page
is plain HTML/CSS/JS in ``static/`` (no build step, no CDN: it works offline); ``app`` holds the
API. ``serve`` loads the run's winner once and runs uvicorn, bound to 127.0.0.1 unless told.
The page shows one class per image: a winner with one label per position (Triple-MNIST) is refused
with a ``UsageError`` before anything is served (``hpsearch predict`` answers it).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError, param, shell

__all__ = ["create_app", "serve", "load_app"]


def _require_web():
    from importlib.util import find_spec

    missing = [name for name, module in (("fastapi", "fastapi"), ("uvicorn", "uvicorn"),
                                         ("python-multipart", "python_multipart")) if find_spec(module) is None]
    if missing:
        raise UsageError(f"hpsearch serve needs the web extra ({', '.join(missing)} missing): "
                         "pip install -e '.[web]'")


def create_app(predictor, **options):
    """The FastAPI app serving ``predictor`` (see ``hpsearch.web.app.create_app``); a winner with
    one label per position is refused (``UsageError``)."""
    predictor.check_single_label("the page of hpsearch serve")
    _require_web()
    from .app import create_app as make

    return make(predictor, **options)


def load_app(run_dir, device: str = "cpu", **options):
    """The app serving the winner of ``run_dir``, loaded again when a retraining replaces it."""
    from ..rundir.names import WINNER_FILE
    from ..winner.predict import Predictor

    _require_web()
    return create_app(Predictor.from_run(run_dir, device=device), reload=lambda: Predictor.from_run(run_dir, device),
                      watch=Path(run_dir) / WINNER_FILE, **options)


def serve(run_dir, host: str = "127.0.0.1", port: int = 8000, device: str = "cpu") -> None:
    """Load the winner of ``run_dir`` and serve the page on ``http://host:port/`` until Ctrl-C (a winner.pt a
    retraining replaces is loaded before the next request)."""
    _require_web()
    import uvicorn

    from ..errors import check_whole
    from ..winner.bundle import read_winner_info

    check_whole("port", port, 0)
    if port > 65535:
        raise UsageError(f"{param('port')} must be in 0..65535, got {port}")
    positions = int(read_winner_info(run_dir).get("positions", 0))  # refused before the net is loaded
    if positions:
        raise UsageError(f"hpsearch serve: the page shows one label per image, but the winner of {run_dir} gives "
                         f"one per position ({positions} digits); use hpsearch predict {shell(run_dir)} FILE ... "
                         f"(with --explain for a heat map per position)")
    app = load_app(run_dir, device=device)
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host  # an IPv6 address as a URL writes it
    sock = _listen(host, port)  # before the line that says it serves: a busy port is one error, exit 2
    port = sock.getsockname()[1]  # --port 0: the one the system chose
    if _is_loopback(sock):
        # this machine's names only: a web page whose name a DNS rebinding points here reads nothing of the run
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=sorted({"localhost", "127.0.0.1", "[::1]",
                                                                        _url_host(host).lower()}))
    print(f"serving the winner of {run_dir} on http://{_url_host(host)}:{port}/ (Ctrl-C stops)", flush=True)
    # a Ctrl-C waits at most this for requests in flight (a stalled upload held the server for good)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
    try:
        _server_that_stops_in_one_line(uvicorn, config).run(sockets=[sock])
    except KeyboardInterrupt:  # as uvicorn.run: Ctrl-C stops the page, nothing was left unfinished
        pass


GRACEFUL_SHUTDOWN_S = 3


def _server_that_stops_in_one_line(uvicorn, config):
    """uvicorn's server, whose Ctrl-C says in one line what it waits for; the requests it then cuts short
    are not logged as a traceback each."""
    import logging
    import sys

    class Server(uvicorn.Server):
        async def shutdown(self, sockets=None):
            if self.server_state.tasks:
                print(f"stopping: {len(self.server_state.tasks)} request(s) in flight get {GRACEFUL_SHUTDOWN_S} s "
                      "to finish", file=sys.stderr, flush=True)
            logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
            await super().shutdown(sockets=sockets)

    return Server(config)


def _url_host(host: str) -> str:
    """``host`` as a URL names it: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


def _is_loopback(sock) -> bool:
    import ipaddress

    return ipaddress.ip_address(sock.getsockname()[0]).is_loopback


def _listen(host: str, port: int):
    import errno as codes
    import os
    import socket

    try:
        return socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except (OSError, OverflowError) as exc:
        errno = getattr(exc, "errno", None)
        # negative: a host name that does not resolve; EADDRNOTAVAIL: an address of another machine
        if errno is not None and (errno < 0 or errno == codes.EADDRNOTAVAIL):
            what = "no such host name here" if errno < 0 else "not an address of this machine"
            raise UsageError(f"{param('host')} {host}: {what}; give this machine's address "
                             "(127.0.0.1 for this machine alone, 0.0.0.0 for the network)") from None
        why = os.strerror(errno) if errno else str(exc)
        raise UsageError(f"{param('host')} {host} {param('port')} {port}: cannot listen there ({why}); choose "
                         f"another {param('port')} (0: any free one), or stop what holds it") from None
