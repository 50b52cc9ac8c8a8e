"""The results list as a Qt table model, paged lazily over the API's keyset cursor.

Views ask :meth:`ResultsModel.canFetchMore` when they scroll near the end; ``fetchMore``
requests the next page on the runner (never on the UI thread) and the rows are inserted
when it arrives. A new query bumps a generation number, so a page of the old query that
arrives late is dropped. The query is a review queue (:class:`QueueQuery`: the filters, a
sort such as lowest confidence first, a status); every row carries its reviews per node.
Decisions and undos patch rows in place from the audit trail's events (no reload), and rows
whose decision the API has not stored yet are marked unsaved (:meth:`ResultsModel.set_unsaved`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    Signal,
)
from PySide6.QtGui import QBrush

from lensflow.desktop.api_review_types import QueueQuery, ReviewEvent, ReviewItem, ReviewPage
from lensflow.desktop.api_types import DETECTION_NODE, LabelEvent, ResultQuery
from lensflow.desktop.client import PAGE_LIMIT
from lensflow.desktop.review_state import label_text, status_background, status_of, with_event
from lensflow.desktop.thumbs import ThumbnailLoader
from lensflow.desktop.workers import Runner, Task

logger = logging.getLogger(__name__)

ItemRole = Qt.ItemDataRole.UserRole + 1
"""``data(index, ItemRole)`` is the row's :class:`~lensflow.desktop.api_review_types.ReviewItem`."""
COLUMNS = ("Crop", "Camera", "Captured (UTC)", "Edge class", "Score", "Label", "Classifiers")
FetchPage = Callable[[QueueQuery, str | None, int], ReviewPage]
"""``(queue, cursor, limit) -> page``: ``ApiClient.review_queue`` with positional arguments."""
AnyIndex = QModelIndex | QPersistentModelIndex


class ResultsModel(QAbstractTableModel):
    """Results of one query, loaded a page at a time.

    Signals:
        page_loaded(int): A page arrived; the number of rows now loaded.
        load_failed(object): A page request failed with this exception.
        loading_changed(bool): A page request started or ended.

    """

    page_loaded = Signal(int)
    load_failed = Signal(object)
    loading_changed = Signal(bool)

    def __init__(
        self,
        runner: Runner,
        *,
        thumbs: ThumbnailLoader | None = None,
        page_size: int = PAGE_LIMIT,
        parent: QObject | None = None,
    ) -> None:
        """An empty model; :meth:`set_source` and :meth:`set_query` fill it.

        Args:
            runner: Runs page requests off the UI thread.
            thumbs: Supplies the crop column's thumbnails (none: no images).
            page_size: Results per request.
            parent: The Qt parent.

        """
        super().__init__(parent)
        self.runner = runner
        self.thumbs = thumbs
        self.page_size = page_size
        self.queue = QueueQuery()
        self.label_node = DETECTION_NODE
        self._fetch: FetchPage | None = None
        self._items: list[ReviewItem] = []
        self._unsaved: frozenset[str] = frozenset()
        self._rows: dict[str, int] = {}
        self._cursor: str | None = None
        self._exhausted = True
        self._task: Task | None = None
        self._generation = 0
        if thumbs is not None:
            thumbs.loaded.connect(self._thumbnail_loaded)

    # -- loading ------------------------------------------------------------------------------

    @property
    def query(self) -> ResultQuery:
        """The filters of the list (its queue's, without the sort and the status)."""
        return self.queue.filters

    def set_source(self, fetch: FetchPage | None) -> None:
        """Page with ``fetch`` (None: disconnected, the model empties)."""
        self._fetch = fetch
        self.set_query(self.queue)

    def set_query(self, query: QueueQuery | ResultQuery) -> None:
        """Show the results of ``query``: drop the rows, request the first page.

        A bare :class:`ResultQuery` keeps the current sort and status filter.
        """
        if isinstance(query, ResultQuery):
            query = replace(self.queue, filters=query)
        self.queue = query
        self._generation += 1
        self._cancel()
        if self.thumbs is not None:
            self.thumbs.cancel_pending()
        self.beginResetModel()
        self._items, self._rows = [], {}
        self._cursor, self._exhausted = None, self._fetch is None
        self.endResetModel()
        if self._fetch is not None:
            self._request()

    def refresh(self) -> None:
        """Reload the current query from its first page."""
        self.set_query(self.queue)

    @property
    def loading(self) -> bool:
        """Whether a page request is in flight."""
        return self._task is not None

    def canFetchMore(self, parent: AnyIndex = QModelIndex()) -> bool:  # noqa: B008, N802 - Qt API
        """Whether another page exists and none is being loaded."""
        return not parent.isValid() and not self._exhausted and self._task is None

    def fetchMore(self, parent: AnyIndex = QModelIndex()) -> None:  # noqa: B008, N802 - Qt API
        """Request the next page (it is inserted when it arrives)."""
        if self.canFetchMore(parent):
            self._request()

    def _request(self) -> None:
        fetch, query, cursor, limit = self._fetch, self.queue, self._cursor, self.page_size
        if fetch is None:
            return
        generation = self._generation
        self._task = self.runner.submit(
            lambda: fetch(query, cursor, limit),
            on_done=lambda page: self._arrived(page, generation),
            on_error=lambda err: self._failed(err, generation),
            name="results page",
            priority=1000,
        )
        self.loading_changed.emit(True)

    def _cancel(self) -> None:
        if self._task is not None:
            self.runner.cancel(self._task)
            self._task = None
            self.loading_changed.emit(False)

    def _arrived(self, page: ReviewPage, generation: int) -> None:
        if generation != self._generation:
            return
        self._task = None
        self._cursor = page.next_cursor
        self._exhausted = page.next_cursor is None
        fresh = [item for item in page.items if item.crop_id not in self._rows]
        if fresh:
            first = len(self._items)
            self.beginInsertRows(QModelIndex(), first, first + len(fresh) - 1)
            for offset, item in enumerate(fresh):
                self._rows[item.crop_id] = first + offset
            self._items.extend(fresh)
            self.endInsertRows()
        self.loading_changed.emit(False)
        self.page_loaded.emit(len(self._items))

    def _failed(self, err: Exception, generation: int) -> None:
        if generation != self._generation:
            return
        self._task = None
        self.loading_changed.emit(False)
        self.load_failed.emit(err)

    # -- reading ------------------------------------------------------------------------------

    @property
    def exhausted(self) -> bool:
        """Whether every page of the query is loaded."""
        return self._exhausted

    def item(self, row: int) -> ReviewItem:
        """The result at ``row``."""
        return self._items[row]

    def items(self) -> Sequence[ReviewItem]:
        """Every loaded result, in order."""
        return self._items

    def row_of(self, crop_id: str) -> int | None:
        """The row of a crop, if loaded."""
        return self._rows.get(crop_id)

    def is_unsaved(self, crop_id: str) -> bool:
        """Whether a decision on the crop waits to be stored by the API."""
        return crop_id in self._unsaved

    def next_unreviewed(self, after: int, node: str) -> int | None:
        """The first row after ``after`` (then from the top) without a status of ``node``."""
        count = len(self._items)
        for offset in range(1, count + 1):
            row = (after + offset) % count
            if status_of(self._items[row], node) is None and not self.is_unsaved(
                self._items[row].crop_id
            ):
                return row
        return None

    def nodes(self) -> list[str]:
        """``detection`` and every classifier node among the loaded rows."""
        seen = {node for item in self._items for node in item.classifiers}
        return [DETECTION_NODE, *sorted(seen)]

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008, N802 - Qt API
        """Loaded rows."""
        return 0 if parent.isValid() else len(self._items)

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008, N802 - Qt API
        """The table's columns."""
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(  # noqa: N802 - Qt API
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        """Column titles."""
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        """The cell's text, thumbnail (crop column), background (reviewed) or item."""
        if not index.isValid() or index.row() >= len(self._items):
            return None
        item = self._items[index.row()]
        if role == ItemRole:
            return item
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(item, index.column())
        if role == Qt.ItemDataRole.DecorationRole and index.column() == 0 and self.thumbs:
            return self.thumbs.request(item.crop_id, item.jpeg_sha256)
        if role == Qt.ItemDataRole.BackgroundRole:
            tint = status_background(status_of(item, self.label_node))
            return QBrush(tint) if tint is not None else None
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{item.crop_id}: {item.camera}, {item.detection.class_name}"
        return None

    def _text(self, item: ReviewItem, column: int) -> str:
        match column:
            case 0:
                return item.crop_id
            case 1:
                return item.camera
            case 2:
                return item.captured_at.strftime("%Y-%m-%d %H:%M:%S")
            case 3:
                return item.detection.class_name
            case 4:
                return f"{item.detection.score:.2f}"
            case 5:
                unsaved = self.is_unsaved(item.crop_id)
                return label_text(item, self.label_node, unsaved=unsaved)
            case _:
                return ", ".join(
                    f"{node}={outcome.label}"
                    for node, outcome in item.classifiers.items()
                    if outcome.label
                )

    # -- changing -----------------------------------------------------------------------------

    def apply_events(self, events: Iterable[ReviewEvent | LabelEvent]) -> None:
        """Apply audit-trail events (labels and statuses, saved or undone) to loaded rows."""
        changed: set[int] = set()
        for event in events:
            row = self._rows.get(event.crop_id)
            if row is None:
                continue
            self._items[row] = with_event(self._items[row], event)
            changed.add(row)
        for row in sorted(changed):
            self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))

    def set_unsaved(self, crop_ids: Iterable[str]) -> None:
        """Mark these crops (and only these) as having a decision the API has not stored."""
        unsaved = frozenset(crop_ids)
        changed = unsaved ^ self._unsaved
        self._unsaved = unsaved
        for crop_id in changed:
            row = self._rows.get(crop_id)
            if row is not None:
                self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))

    def prepend(self, items: Sequence[ReviewItem]) -> int:
        """Insert new results at the top (live updates); returns how many were new."""
        fresh = [item for item in items if item.crop_id not in self._rows]
        if not fresh:
            return 0
        self.beginInsertRows(QModelIndex(), 0, len(fresh) - 1)
        self._items[:0] = fresh
        self._rows = {item.crop_id: row for row, item in enumerate(self._items)}
        self.endInsertRows()
        return len(fresh)

    def set_label_node(self, node: str) -> None:
        """Show (and mark reviewed) labels of ``node`` in the label column."""
        self.label_node = node
        if self._items:
            last = len(self._items) - 1
            self.dataChanged.emit(self.index(0, 0), self.index(last, len(COLUMNS) - 1))

    def _thumbnail_loaded(self, crop_id: str) -> None:
        row = self._rows.get(crop_id)
        if row is not None:
            index = self.index(row, 0)
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])
