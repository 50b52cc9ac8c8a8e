"""A real HTTP product provider for tests, in a thread, whose behaviour a test scripts.

Each request takes the next :class:`Reply` of the script (the last one repeats): a status,
optional headers, a body, and a delay before answering (to provoke client timeouts). The
server can be stopped (the port then refuses connections) and started again on the same port.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from lensflow.services.process import free_port

PRODUCTS = {"products": [{"title": "Red bike", "description": "A city bike", "score": 0.9}]}


@dataclass(frozen=True)
class Reply:
    """What the provider answers to one request."""

    status: int = 200
    body: object = field(default_factory=lambda: PRODUCTS)
    headers: tuple[tuple[str, str], ...] = ()
    delay_s: float = 0.0


@dataclass
class Request:
    """What the provider received."""

    at: float
    headers: dict[str, str]
    body: bytes


class ProviderServer:
    """``POST /describe`` on 127.0.0.1, answering from a script."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[Request] = []
        self._script: list[Reply] = [Reply()]
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The endpoint URL."""
        return f"http://127.0.0.1:{self.port}/describe"

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with ``replies`` in order; the last one repeats."""
        with self._lock:
            self._script = list(replies)

    def start(self) -> None:
        """Listen (again) on :attr:`port`."""
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                reply = provider._take(Request(time.monotonic(), dict(self.headers), body))
                time.sleep(reply.delay_s)
                payload = json.dumps(reply.body).encode()
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers:
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up (timeout): nothing to answer to

            def log_message(self, *_args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop listening: connections are refused until :meth:`start`."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def count(self) -> int:
        """Requests received so far."""
        with self._lock:
            return len(self.requests)

    def _take(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            return self._script.pop(0) if len(self._script) > 1 else self._script[0]
