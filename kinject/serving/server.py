"""An ASGI app served by uvicorn on a free loopback port, in a daemon thread of this process: the embedded chat
backend, the tests and the serving benchmark run kinject's server this way."""

from __future__ import annotations

import threading
import time
from typing import Any

from .errors import ServeError


def free_port() -> int:
    """A TCP port free on the loopback address now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """An ASGI app served by uvicorn on a free loopback port, in a daemon thread of this process (the app's Chat
    tab, the tests, the serving benchmark); ``url`` answers once it is built."""

    def __init__(self, app: Any, timeout_s: float = 60):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name="kinject-serve", daemon=True)
        self.thread.start()
        deadline = time.time() + timeout_s
        while not self.server.started and self.thread.is_alive() and time.time() < deadline:
            time.sleep(0.05)
        if not self.server.started:
            self.stop()
            raise ServeError(f"the embedded server did not start on 127.0.0.1:{self.port}", 500, "startup")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
