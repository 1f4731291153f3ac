"""Serve the viewer with uvicorn on a socket bound here, so the address (and a free port,
with port 0) is known before the first request, and tests can run it in a thread."""

from __future__ import annotations

import errno
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import uvicorn

from her2slide.errors import InputError
from her2slide.viewer.app import LOOPBACK_HOSTS, create_app
from her2slide.viewer.result import ResultFolder
from her2slide.viewer.slide_tiles import SlideTiles, open_scored_slide

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
WILDCARD_HOSTS = ("0.0.0.0", "::")


class ViewerServer:
    """A viewer for one result folder, listening on ``host``:``port`` (loopback by default)."""

    def __init__(self, result_dir: Path, slide: Path | None = None, host: str = DEFAULT_HOST,
                 port: int = DEFAULT_PORT) -> None:
        result = ResultFolder(Path(result_dir))
        tiles = SlideTiles(open_scored_slide(result.report, slide))
        result.cells  # build the cell index before the first request, not during it
        self.socket = _bind(host, port)
        self.host, self.port = self.socket.getsockname()[:2]
        # --host 0.0.0.0 (every interface) is a deliberate choice to share: any host name then.
        hosts = (LOOPBACK_HOSTS if host in LOOPBACK_HOSTS else ("*",) if host in WILDCARD_HOSTS
                 else (*LOOPBACK_HOSTS, host))
        config = uvicorn.Config(create_app(result, tiles, hosts), log_level="warning", access_log=False,
                                lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def serve_forever(self, ready: Callable[[], None]) -> None:
        """Serve in this thread until interrupted (Ctrl-C, SIGTERM); ``ready`` is called once the
        server accepts connections, when uvicorn has taken over those signals (a Ctrl-C before
        then would interrupt its start half-way)."""
        announcer = threading.Thread(target=self._when_started, args=(ready, threading.main_thread()), daemon=True)
        announcer.start()
        self._server.run(sockets=[self.socket])

    def start(self) -> ViewerServer:
        """Serve in a background thread; returns once the server accepts connections."""
        self._server.config.install_signal_handlers = False  # not the main thread
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self.socket]}, daemon=True)
        self._thread.start()
        if not self._when_started(None, self._thread):
            raise RuntimeError("the viewer server did not start")
        return self

    def _when_started(self, then: Callable[[], None] | None, serving: threading.Thread) -> bool:
        """Wait (30 s at most) until the server accepts connections, then call ``then``."""
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not serving.is_alive() or time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        if then is not None:
            then()
        return True

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.socket.close()

    def __enter__(self) -> ViewerServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        hint = "; pass --port N (0 picks a free one)" if exc.errno == errno.EADDRINUSE else ""
        raise InputError(f"{host}:{port}", f"cannot listen there ({exc.strerror}){hint}") from exc
    sock.listen(128)
    return sock
