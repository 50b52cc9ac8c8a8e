"""Live updates: poll the API for results newer than the newest shown, and add them.

Every ``interval_ms`` the poller asks for the first page of the current query captured at or
after the newest row's capture time (a cheap keyset query), on the runner; the model inserts
the ones it has not seen at the top. One poll at a time; a failed poll is reported once
and retried on the next tick. With the oldest-first sort, or a review queue sorted by
something else than capture time, nothing is inserted (new rows belong further down, which
paging reaches). New rows come with their reviews (``GET /v1/results`` with the queue's status).
"""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import QObject, QTimer, Signal

from lensflow.desktop.api_review_types import QueueQuery, ReviewItem, ReviewPage
from lensflow.desktop.client import ApiClient
from lensflow.desktop.models import ResultsModel
from lensflow.desktop.workers import Runner, Task

DEFAULT_INTERVAL_MS = 5000
POLL_LIMIT = 100


class LivePoller(QObject):
    """Adds new results to a model while the app is open.

    Signals:
        arrived(int): This many new results were added.
        failed(object): A poll failed (reported once until a poll succeeds again).

    """

    arrived = Signal(int)
    failed = Signal(object)

    def __init__(
        self, runner: Runner, model: ResultsModel, *, interval_ms: int = DEFAULT_INTERVAL_MS
    ) -> None:
        """Poll for ``model``'s query every ``interval_ms`` once started."""
        super().__init__(model)
        self.runner = runner
        self.model = model
        self.client: ApiClient | None = None
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.poll)
        self._task: Task | None = None
        self._failing = False

    def start(self) -> None:
        """Poll from now on."""
        self.timer.start()

    def stop(self) -> None:
        """Stop polling."""
        self.timer.stop()

    def poll(self) -> None:
        """Ask once for newer results (skipped while a poll or a first page is in flight)."""
        client = self.client
        if client is None or self._task is not None or self.model.loading:
            return
        if self.model.query.order != "desc" or self.model.queue.sort != "captured_at":
            return
        base = self.model.queue
        query = base.filters
        items = self.model.items()
        if items:
            newest = max(item.captured_at for item in items[:POLL_LIMIT])
            if query.captured_to is not None and newest >= query.captured_to:
                return
            query = replace(query, captured_from=max(newest, query.captured_from or newest))
        self._task = self.runner.submit(
            lambda: client.review_queue(replace(base, filters=query), limit=POLL_LIMIT),
            on_done=lambda page: self._arrived(page, base),
            on_error=self._failed,
            name="live poll",
            priority=500,
        )

    def _arrived(self, page: ReviewPage, base: QueueQuery) -> None:
        self._task = None
        self._failing = False
        if self.model.queue != base:
            return  # the filters changed meanwhile: the new list is being loaded anyway
        fresh: list[ReviewItem] = [i for i in page.items if self.model.row_of(i.crop_id) is None]
        if not fresh:
            return
        added = self.model.prepend(sorted(fresh, key=lambda i: i.captured_at, reverse=True))
        if added:
            self.arrived.emit(added)

    def _failed(self, err: Exception) -> None:
        self._task = None
        if not self._failing:
            self._failing = True
            self.failed.emit(err)
