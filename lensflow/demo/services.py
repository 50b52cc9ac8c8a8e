"""The demo's child processes: the real ``lensflow`` commands, each logging to its own file.

Each child is a :class:`~lensflow.services.process.ManagedProcess`: its own session (a Ctrl+C
in the terminal reaches only the demo, which then stops the children in order: edge, worker,
API, broker) and, on Linux, a parent-death signal, so even a demo killed with SIGKILL leaves
no process behind.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from lensflow.demo.prepare import DemoError
from lensflow.services.process import ManagedProcess, ProcessError, StopTimeoutError

logger = logging.getLogger(__name__)

STOP_TIMEOUT_S = 30.0  # the edge drains its spool before it exits
_ENV_PREFIXES = ("LENSFLOW_EDGE__", "LENSFLOW_CLOUD__")
_LOG_TAIL_LINES = 15

Metrics = dict[tuple[str, tuple[tuple[str, str], ...]], float]
"""Prometheus samples by (name, sorted labels)."""


def child_env() -> dict[str, str]:
    """This environment without config overrides: the demo's children run the demo's configs.

    A ``LENSFLOW_CLOUD__DATABASE__URL`` meant for production must not point the demo's worker
    at that database.
    """
    return {k: v for k, v in os.environ.items() if not k.startswith(_ENV_PREFIXES)}


class ChildProcess:
    """One ``python -m lensflow ...`` child with its output in a log file.

    Start it from the main thread: the parent-death signal follows the thread that started
    the child, not the process.

    Args:
        name: Short name shown in progress and errors (``worker``, ``api``, ``edge``).
        args: Arguments after ``python -m lensflow``.
        log_file: Where its stdout and stderr go.
        cwd: Its working folder (the repository root: configs are found from there).
        env: Its environment.

    """

    def __init__(
        self, name: str, args: list[str], *, log_file: Path, cwd: Path, env: Mapping[str, str]
    ) -> None:
        self.name = name
        self.args = args
        self.log_file = log_file
        self._process = ManagedProcess(
            [sys.executable, "-m", "lensflow", *args],
            name=name,
            log_file=log_file,
            cwd=cwd,
            env=env,
            stop_timeout_s=STOP_TIMEOUT_S,
            parent_death_signal=signal.SIGTERM,
        )

    @property
    def pid(self) -> int | None:
        """The child's process id once started."""
        return self._process.pid

    def start(self) -> None:
        """Start the child (returns at once).

        Raises:
            DemoError: The interpreter could not be run.

        """
        try:
            self._process.start(wait=False)
        except ProcessError as err:
            raise DemoError(f"could not start the {self.name}: {err}") from err

    def exited(self) -> int | None:
        """The exit code, or None while it runs (or before it started)."""
        return self._process.returncode

    def check_alive(self) -> None:
        """Raise if the child has exited.

        Raises:
            DemoError: It exited; the message has its exit code and the tail of its log.

        """
        code = self.exited()
        if code is not None:
            raise DemoError(
                f"expected the {self.name} ({' '.join(self.args[:2])}) to keep running, but it "
                f"exited with code {code}; {self.log_file} ends with:\n{self.log_tail()}"
            )

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL; always reaps the child."""
        try:
            self._process.stop(timeout_s)
        except StopTimeoutError:
            logger.warning(
                "%s pid=%s ignored SIGTERM for %.0f s: killed", self.name, self.pid, timeout_s
            )

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines of the child's log."""
        return self._process.log_tail(lines)


def wait_until(
    condition: Callable[[], bool],
    *,
    timeout_s: float,
    what: str,
    alive: Callable[[], None] = lambda: None,
    interval_s: float = 0.2,
) -> None:
    """Poll ``condition`` until true; ``alive`` raises if a process it waits on died.

    Raises:
        DemoError: ``condition`` was still false after ``timeout_s``.

    """
    deadline = time.monotonic() + timeout_s
    while not condition():
        alive()
        if time.monotonic() > deadline:
            raise DemoError(f"expected {what} within {timeout_s:.0f} s, but it did not happen")
        time.sleep(interval_s)


def http_get(url: str, *, timeout_s: float = 2.0) -> bytes | None:
    """The body of a 200 answer to a GET, or None when it fails or answers otherwise."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:  # noqa: S310 - loopback
            body: bytes = answer.read()
            return body if answer.status == 200 else None
    except (OSError, urllib.error.URLError, ValueError):
        return None


def scrape(port: int) -> Metrics | None:
    """The Prometheus samples served on ``127.0.0.1:port/metrics``, or None when unreachable."""
    body = http_get(f"http://127.0.0.1:{port}/metrics")
    if body is None:
        return None
    samples: Metrics = {}
    for family in text_string_to_metric_families(body.decode("utf-8", errors="replace")):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return samples


def metric(samples: Metrics, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels`` (0 when none)."""
    wanted = set(labels.items())
    return sum(value for (n, have), value in samples.items() if n == name and wanted <= set(have))
