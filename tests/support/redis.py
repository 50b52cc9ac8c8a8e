"""A private redis-server per test, on a free loopback port, without persistence."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from lensflow.services.process import ManagedProcess, free_port
from lensflow.services.readiness import Readiness

FALLBACK_EXECUTABLE = Path("/usr/bin/redis-server")


class RedisServer:
    """A ``redis-server`` child process: its own port and folder, nothing saved to disk."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port() if port is None else port
        self._process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *, timeout_s: float = 5.0) -> None:
        """Start the server and wait until it answers PING."""
        executable = shutil.which("redis-server") or str(FALLBACK_EXECUTABLE)
        if not Path(executable).is_file():
            raise RuntimeError("redis-server is not installed: apt-get install redis-server")
        command = [executable, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.data_dir)]
        self._process = ManagedProcess(
            command,
            name="redis-server",
            log_file=self.data_dir / "redis.log",
            ready=Readiness(self._answers_ping, f"to answer PING on port {self.port}"),
            start_timeout_s=timeout_s,
            stop_timeout_s=5.0,
        )
        self._process.start()

    def stop(self) -> None:
        """Stop with SIGTERM and wait (SIGKILL after 5 s)."""
        if self._process is not None:
            self._process.stop()

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server on a free loopback port for one test."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()
