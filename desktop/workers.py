"""Running API calls off the UI thread: a thread pool whose results come back as UI callbacks.

:meth:`Runner.submit` runs a function on a :class:`~PySide6.QtCore.QThreadPool` and calls
``on_done(value)`` or ``on_error(exc)`` back on the thread that owns the runner (the UI
thread), through a queued signal. A :class:`Task` can be cancelled: a queued one is taken off
the pool, a running one finishes but its result is dropped (an HTTP request in flight cannot
be interrupted safely; the client's timeout bounds it).
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot

logger = logging.getLogger(__name__)

Callback = Callable[[Any], None]
ErrorCallback = Callable[[Exception], None]


class _Signals(QObject):
    """Carries tasks' outcomes, ``(task number, value)``, from the pool to the runner's thread.

    One per runner, connected once: a QObject and two connections per task cost the UI
    thread about 0.3 ms, which added up while scrolling loaded hundreds of thumbnails.
    """

    done = Signal(object)
    failed = Signal(object)


class Task(QRunnable):
    """One function call on the pool; its outcome is delivered unless it was cancelled."""

    def __init__(self, fn: Callable[[], Any], *, name: str, signals: _Signals, number: int) -> None:
        """Wrap ``fn``.

        Args:
            fn: What to run (no arguments; bind them with a lambda or ``functools.partial``).
            name: What it does, for the log.
            signals: Where its outcome goes (its runner's).
            number: Its number in its runner (sent with the outcome).

        """
        super().__init__()
        self.setAutoDelete(False)  # the runner keeps it until its outcome is delivered
        self.name = name
        self.number = number
        self.signals = signals
        self._fn = fn
        self._cancelled = threading.Event()

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """Drop the outcome (and skip the call if it has not started)."""
        self._cancelled.set()

    def run(self) -> None:
        """Run on a pool thread (Qt calls this)."""
        if self.cancelled:
            self.signals.failed.emit((self.number, None))
            return
        try:
            value = self._fn()
        except Exception as err:  # every failure must reach the UI, none the pool
            self.signals.failed.emit((self.number, err))
            return
        self.signals.done.emit((self.number, value))


class Runner(QObject):
    """Submits tasks to a thread pool and delivers their outcomes on this object's thread."""

    def __init__(self, *, threads: int = 4, parent: QObject | None = None) -> None:
        """Make a runner with a pool of its own.

        Args:
            threads: Most calls at once.
            parent: The Qt parent.

        """
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(threads)
        self._live: dict[int, tuple[Task, Callback | None, ErrorCallback | None]] = {}
        self._numbers = itertools.count()
        self._signals = _Signals(self)
        self._signals.done.connect(self._on_done)
        self._signals.failed.connect(self._on_failed)

    def submit(
        self,
        fn: Callable[[], Any],
        *,
        on_done: Callback | None = None,
        on_error: ErrorCallback | None = None,
        name: str = "task",
        priority: int = 0,
    ) -> Task:
        """Run ``fn`` on the pool; call ``on_done(value)`` or ``on_error(exc)`` here later.

        Args:
            fn: The call (it must not touch widgets).
            on_done: Called with the return value, on this runner's thread.
            on_error: Called with the exception, on this runner's thread; when None, the
                error is logged.
            name: What the call does, for the log.
            priority: Higher runs first among queued tasks.

        Returns:
            The task; :meth:`Task.cancel` drops its outcome.

        """
        task = Task(fn, name=name, signals=self._signals, number=next(self._numbers))
        self._live[task.number] = (task, on_done, on_error)
        self.pool.start(task, priority)
        return task

    def cancel(self, task: Task) -> bool:
        """Cancel ``task``: off the queue if not started, its outcome dropped otherwise.

        Returns:
            Whether it was taken off the queue (it had not started).

        """
        task.cancel()
        if self.pool.tryTake(task):
            self._live.pop(task.number, None)
            return True
        return False

    def active(self) -> int:
        """Tasks submitted whose outcome was not delivered yet."""
        return len(self._live)

    def wait(self, timeout_ms: int = 10_000) -> bool:
        """Wait for the pool's running tasks (at shutdown); whether they all finished."""
        return self.pool.waitForDone(timeout_ms)

    @Slot(object)
    def _on_done(self, outcome: tuple[int, object]) -> None:
        number, value = outcome
        entry = self._live.pop(number, None)
        if entry is None:
            return
        task, on_done, _on_error = entry
        if not task.cancelled and on_done is not None:
            on_done(value)

    @Slot(object)
    def _on_failed(self, outcome: tuple[int, object]) -> None:
        number, error = outcome
        entry = self._live.pop(number, None)
        if entry is None or not isinstance(error, Exception):
            return
        task, _on_done, on_error = entry
        if task.cancelled:
            return
        if on_error is None:
            logger.error("%s failed: %s", task.name, error)
        else:
            on_error(error)
