"""Dynamic batching of deliveries: up to ``max_batch`` or ``max_wait_ms``, whichever first.

The intake's thread :meth:`~Batcher.put` s deliveries into a bounded queue; the worker's
thread takes them out a batch at a time with :meth:`~Batcher.next_batch`. When the queue is
full, ``put`` blocks, which stops the intake from reading more (backpressure); in practice
the broker's in-flight window (MQTT ReceiveMaximum, AMQP prefetch) stops it first.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Generic, TypeVar

Item = TypeVar("Item")

_POLL_S = 0.1  # how often a blocked put or an idle next_batch looks at the closed flag


class Batcher(Generic[Item]):
    """A bounded queue that hands out batches.

    Args:
        max_batch: Most items per batch.
        max_wait_ms: Longest wait, counted from a batch's first item, for it to fill.
        capacity: Most items queued; ``put`` blocks beyond it. At least ``max_batch``.

    Raises:
        ValueError: If ``max_batch`` < 1, ``max_wait_ms`` < 0 or ``capacity`` < ``max_batch``.

    """

    def __init__(self, *, max_batch: int, max_wait_ms: float, capacity: int) -> None:
        if max_batch < 1 or max_wait_ms < 0 or capacity < max_batch:
            raise ValueError(
                "expected max_batch >= 1, max_wait_ms >= 0 and capacity >= max_batch, but got "
                f"max_batch={max_batch}, max_wait_ms={max_wait_ms}, capacity={capacity}"
            )
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self._queue: queue.Queue[Item] = queue.Queue(maxsize=capacity)
        self._closed = threading.Event()

    def put(self, item: Item) -> bool:
        """Queue an item, blocking while the queue is full.

        Returns:
            True if queued; False if the batcher was closed first (the item is dropped: an
            unacknowledged delivery comes back from the broker).

        """
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=_POLL_S)
            except queue.Full:
                continue
            return True
        return False

    def next_batch(self, *, idle_timeout_s: float = _POLL_S) -> list[Item]:
        """Wait for a first item, then gather more until the batch is full or its time is up.

        Args:
            idle_timeout_s: How long to wait for a first item; an empty list when none came
                (so the caller can look at its stop flag).

        Returns:
            Between 1 and ``max_batch`` items in arrival order, or an empty list.

        """
        try:
            first = self._queue.get(timeout=idle_timeout_s)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                item = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            batch.append(item)
        return batch

    def resize(self, *, max_batch: int, max_wait_ms: float) -> None:
        """Change the batch size and wait (a new pipeline version); from the consuming thread.

        Raises:
            ValueError: If ``max_batch`` < 1 or beyond the capacity, or ``max_wait_ms`` < 0.

        """
        if not 1 <= max_batch <= self._queue.maxsize or max_wait_ms < 0:
            raise ValueError(
                f"expected 1 <= max_batch <= {self._queue.maxsize} and max_wait_ms >= 0, but "
                f"got max_batch={max_batch}, max_wait_ms={max_wait_ms}"
            )
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0

    def qsize(self) -> int:
        """How many items wait (approximately: other threads may change it)."""
        return self._queue.qsize()

    def close(self) -> None:
        """Unblock every ``put`` and refuse further items."""
        self._closed.set()
