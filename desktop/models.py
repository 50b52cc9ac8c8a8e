"""The results list as a Qt table model, paged lazily over the API's keyset cursor.

Views ask :meth:`ResultsModel.canFetchMore` when they scroll near the end; ``fetchMore``
requests the next page on the runner (never on the UI thread) and the rows are inserted
when it arrives. A new query bumps a generation number, so a page of the old query that
arrives late is dropped. Relabels patch rows in place (no reload).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    Signal,
)
from PySide6.QtGui import QBrush, QColor

from lensflow.desktop.api_types import (
    DETECTION_NODE,
    LabelEvent,
    ResultItem,
    ResultPage,
    ResultQuery,
)
from lensflow.desktop.client import PAGE_LIMIT
from lensflow.desktop.thumbs import ThumbnailLoader
from lensflow.desktop.workers import Runner, Task

logger = logging.getLogger(__name__)

ItemRole = Qt.ItemDataRole.UserRole + 1
"""``data(index, ItemRole)`` is the row's :class:`ResultItem`."""
COLUMNS = ("Crop", "Camera", "Captured (UTC)", "Edge class", "Score", "Label", "Classifiers")
FetchPage = Callable[[ResultQuery, str | None, int], ResultPage]
"""``(query, cursor, limit) -> page``: ``ApiClient.results`` with positional arguments."""
AnyIndex = QModelIndex | QPersistentModelIndex
_REVIEWED = QBrush(QColor("#d7f0d7"))


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
        self.query = ResultQuery()
        self.label_node = DETECTION_NODE
        self._fetch: FetchPage | None = None
        self._items: list[ResultItem] = []
        self._rows: dict[str, int] = {}
        self._cursor: str | None = None
        self._exhausted = True
        self._task: Task | None = None
        self._generation = 0
        if thumbs is not None:
            thumbs.loaded.connect(self._thumbnail_loaded)

    # -- loading ------------------------------------------------------------------------------

    def set_source(self, fetch: FetchPage | None) -> None:
        """Page with ``fetch`` (None: disconnected, the model empties)."""
        self._fetch = fetch
        self.set_query(self.query)

    def set_query(self, query: ResultQuery) -> None:
        """Show the results of ``query``: drop the rows, request the first page."""
        self.query = query
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
        self.set_query(self.query)

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
        fetch, query, cursor, limit = self._fetch, self.query, self._cursor, self.page_size
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

    def _arrived(self, page: ResultPage, generation: int) -> None:
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

    def item(self, row: int) -> ResultItem:
        """The result at ``row``."""
        return self._items[row]

    def items(self) -> Sequence[ResultItem]:
        """Every loaded result, in order."""
        return self._items

    def row_of(self, crop_id: str) -> int | None:
        """The row of a crop, if loaded."""
        return self._rows.get(crop_id)

    def top_labels(self, node: str, *, count: int = 9) -> list[str]:
        """The labels of ``node`` most common among the loaded rows (human or model)."""
        counts = Counter(label for item in self._items if (label := item.label(node)))
        return [label for label, _ in counts.most_common(count)]

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
        if role == Qt.ItemDataRole.BackgroundRole and item.reviewed:
            return _REVIEWED
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{item.crop_id}: {item.camera}, {item.detection.class_name}"
        return None

    def _text(self, item: ResultItem, column: int) -> str:
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
                label = item.label(self.label_node) or ""
                return f"{label} ✓" if self.label_node in item.human_labels else label
            case _:
                return ", ".join(
                    f"{node}={outcome.label}"
                    for node, outcome in item.classifiers.items()
                    if outcome.label
                )

    # -- changing -----------------------------------------------------------------------------

    def apply_events(self, events: Iterable[LabelEvent]) -> None:
        """Apply relabel (or undo) events to the loaded rows: no reload."""
        changed: set[int] = set()
        for event in events:
            row = self._rows.get(event.crop_id)
            if row is None:
                continue
            labels = dict(self._items[row].human_labels)
            if event.new_label is None:
                labels.pop(event.node, None)
            else:
                labels[event.node] = event.new_label
            self._items[row] = self._items[row].model_copy(update={"human_labels": labels})
            changed.add(row)
        for row in sorted(changed):
            self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))

    def prepend(self, items: Sequence[ResultItem]) -> int:
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
            self.dataChanged.emit(self.index(0, 5), self.index(len(self._items) - 1, 5))

    def _thumbnail_loaded(self, crop_id: str) -> None:
        row = self._rows.get(crop_id)
        if row is not None:
            index = self.index(row, 0)
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])
