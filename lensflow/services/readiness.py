"""Readiness checks: when a started child counts as up (a port, an HTTP 200, a log line).

A :class:`Readiness` pairs a quick, polled check with the words an error uses for it, so
:meth:`lensflow.services.process.ManagedProcess.start` can say what it waited for.
"""

from __future__ import annotations

import http.client
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Readiness:
    """When a started child counts as ready, and how an error says what was awaited.

    Attributes:
        check: True once the child is ready; polled, so it must return quickly.
        description: Completes "expected <name> ...", e.g. ``to listen on 127.0.0.1:1883``.

    """

    check: Callable[[], bool]
    description: str


def tcp_open(port: int, *, host: str = "127.0.0.1", timeout_s: float = 0.2) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def tcp_port(port: int, *, host: str = "127.0.0.1") -> Readiness:
    """Ready once ``host:port`` accepts TCP connections."""
    return Readiness(lambda: tcp_open(port, host=host), f"to listen on {host}:{port}")


def http_200(url: str, *, timeout_s: float = 1.0) -> Readiness:
    """Ready once a GET of ``url`` answers 200."""

    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as answer:  # noqa: S310 - ours
                return bool(answer.status == 200)
        except (OSError, urllib.error.URLError, http.client.HTTPException, ValueError):
            return False

    return Readiness(check, f"to answer 200 at {url}")


def log_line(path: Path, text: str) -> Readiness:
    """Ready once the file at ``path`` contains ``text`` (a line the child logs when up)."""

    def check() -> bool:
        try:
            return text in path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return False

    return Readiness(check, f"to log {text!r} in {path}")
