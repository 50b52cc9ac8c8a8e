"""The filter bar: camera, class, label (and node), score range, time range, review status, sort.

Every change emits :attr:`FilterBar.query_changed` with the new review queue
(:class:`~lensflow.desktop.api_review_types.QueueQuery`: the filters, a review status and a
sort such as lowest confidence first), debounced so typing a camera name sends one request.
The drop-downs offer the values the API has, with their counts (:meth:`FilterBar.use_facets`,
from ``GET /v1/facets``); typing another value still works.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from PySide6.QtCore import QDateTime, QSignalBlocker, QTimer, QTimeZone, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDateTimeEdit,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from lensflow.desktop.api_review_types import FacetCount, Facets, QueueQuery, QueueSort
from lensflow.desktop.api_types import DETECTION_NODE, ResultQuery

ANY = "(any)"
DEBOUNCE_MS = 300
SORTS: dict[str, tuple[QueueSort, str]] = {
    "Newest first": ("captured_at", "desc"),
    "Oldest first": ("captured_at", "asc"),
    "Lowest confidence first": ("confidence_asc", "desc"),
    "Cloud/edge disagreement first": ("disagreement", "desc"),
    "Unreviewed first": ("unreviewed_first", "desc"),
}
"""The sorts offered: the API's queue sort and the capture-time order within it."""
STATUSES = ("unreviewed", "accepted", "relabelled", "rejected", "unsure")
"""The review states offered (of the label node, else of any node)."""


def _combo(placeholder: str, *, width: int = 130) -> QComboBox:
    combo = QComboBox()
    combo.setEditable(True)
    combo.addItem(ANY)
    combo.setMinimumWidth(width)
    combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
    combo.setToolTip(placeholder)
    line = combo.lineEdit()
    if line is not None:
        line.setPlaceholderText(placeholder)
        line.setClearButtonEnabled(True)
    return combo


def _text(combo: QComboBox) -> str | None:
    """The value chosen (an offered item's value, without its count) or typed."""
    text = combo.currentText().strip()
    index = combo.currentIndex()
    if index > 0 and combo.itemText(index).strip() == text and combo.itemData(index) is not None:
        return str(combo.itemData(index))
    return None if not text or text == ANY else text


def _time_edit() -> QDateTimeEdit:
    edit = QDateTimeEdit()
    edit.setTimeZone(QTimeZone.utc())
    edit.setDisplayFormat("yyyy-MM-dd HH:mm")
    edit.setCalendarPopup(True)
    edit.setDateTime(QDateTime.currentDateTimeUtc())
    edit.setEnabled(False)
    return edit


class FilterBar(QWidget):
    """Two rows of filters; :meth:`query` reads them, ``query_changed`` announces changes."""

    query_changed = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        """Build the widgets (all filters off: every result, newest first)."""
        super().__init__(parent)
        self.camera = _combo("Camera")
        self.class_name = _combo("Edge class")
        self.label = _combo("Label")
        self.node = _combo("Label of node", width=110)
        self.min_score = self._score(0.0, "Least edge score")
        self.max_score = self._score(1.0, "Greatest edge score")
        self.use_from, self.captured_from = QCheckBox("From"), _time_edit()
        self.use_to, self.captured_to = QCheckBox("To"), _time_edit()
        self.status = QComboBox()
        self.status.addItem(ANY)
        self.status.addItems(list(STATUSES))
        self.status.setToolTip("Review status of the label node (any node when none is chosen)")
        self.corrected = QCheckBox("Corrected by a person")
        self.corrected.setToolTip(
            "A person's label differs from the edge class or the node's classifier label"
        )
        self.sort = QComboBox()
        self.sort.addItems(list(SORTS))
        self.sort.setToolTip(
            "Review queue order. Cloud/edge disagreement: a cloud node's label names another "
            "class of the edge model first"
        )
        self.facets: Facets | None = None
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(DEBOUNCE_MS)
        self._debounce.timeout.connect(self._emit)
        self._layout()
        self._wire()

    def _score(self, value: float, tip: str) -> QDoubleSpinBox:
        box = QDoubleSpinBox()
        box.setRange(0.0, 1.0)
        box.setSingleStep(0.05)
        box.setDecimals(2)
        box.setValue(value)
        box.setToolTip(tip)
        return box

    def _layout(self) -> None:
        top, bottom = QHBoxLayout(), QHBoxLayout()
        widget: QWidget
        for widget in (
            QLabel("Camera"),
            self.camera,
            QLabel("Class"),
            self.class_name,
            QLabel("Label"),
            self.label,
            QLabel("of"),
            self.node,
            QLabel("Score"),
            self.min_score,
            QLabel("to"),
            self.max_score,
        ):
            top.addWidget(widget)
        top.addStretch(1)
        for widget in (
            self.use_from,
            self.captured_from,
            self.use_to,
            self.captured_to,
            QLabel("Status"),
            self.status,
            self.corrected,
            QLabel("Sort"),
            self.sort,
        ):
            bottom.addWidget(widget)
        bottom.addStretch(1)
        rows = QVBoxLayout(self)
        rows.setContentsMargins(6, 4, 6, 4)
        rows.setSpacing(2)
        rows.addLayout(top)
        rows.addLayout(bottom)

    def _wire(self) -> None:
        for combo in (self.camera, self.class_name, self.label, self.node):
            combo.currentTextChanged.connect(self._changed)
        for spin in (self.min_score, self.max_score):
            spin.valueChanged.connect(self._changed)
        for edit in (self.captured_from, self.captured_to):
            edit.dateTimeChanged.connect(self._changed)
        self.use_from.toggled.connect(self.captured_from.setEnabled)
        self.use_to.toggled.connect(self.captured_to.setEnabled)
        for box in (self.use_from, self.use_to, self.corrected):
            box.toggled.connect(self._changed)
        self.sort.currentTextChanged.connect(self._changed)
        self.status.currentTextChanged.connect(self._changed)
        self.node.currentTextChanged.connect(lambda _text: self._fill_labels())

    def _changed(self) -> None:
        self._debounce.start()

    def _emit(self) -> None:
        self.query_changed.emit(self.queue())

    def queue(self) -> QueueQuery:
        """The review queue the filters describe: filters, status and sort."""
        sort, _order = SORTS[self.sort.currentText()]
        status = self.status.currentText()
        chosen = None if status in (ANY, "unreviewed") else status
        return QueueQuery(filters=self.query(), sort=sort, status=chosen)  # type: ignore[arg-type]

    def query(self) -> ResultQuery:
        """The result filters the bar describes (without the sort's key and status)."""
        low, high = self.min_score.value(), self.max_score.value()
        return ResultQuery(
            camera=_text(self.camera),
            class_name=_text(self.class_name),
            label=_text(self.label),
            node=_text(self.node),
            min_score=low if low > 0.0 else None,
            max_score=high if high < 1.0 else None,
            captured_from=_utc(self.captured_from) if self.use_from.isChecked() else None,
            captured_to=_utc(self.captured_to) if self.use_to.isChecked() else None,
            reviewed=False if self.status.currentText() == "unreviewed" else None,
            disagreement=True if self.corrected.isChecked() else None,
            order="asc" if SORTS[self.sort.currentText()][1] == "asc" else "desc",
        )

    def set_choices(
        self,
        *,
        cameras: Iterable[str | FacetCount] = (),
        classes: Iterable[str | FacetCount] = (),
        nodes: Iterable[str | FacetCount] = (),
    ) -> None:
        """Offer these cameras, classes and nodes in the combos (typing others still works)."""
        for combo, values in ((self.camera, cameras), (self.class_name, classes)):
            _refill(combo, values)
        _refill(self.node, nodes)

    def use_facets(self, facets: Facets) -> None:
        """Fill the drop-downs with the API's values and counts (``GET /v1/facets``)."""
        self.facets = facets
        self.set_choices(
            cameras=[FacetCount(value=c.camera, count=c.count) for c in facets.cameras],
            classes=facets.classes,
            nodes=facets.nodes,
        )
        self._fill_labels()

    def _fill_labels(self) -> None:
        if self.facets is not None:
            node = _text(self.node) or DETECTION_NODE
            _refill(self.label, self.facets.labels.get(node, []), replace=True)

    def apply_now(self) -> None:
        """Emit the current query at once (skip the debounce)."""
        self._debounce.stop()
        self._emit()


def _refill(combo: QComboBox, values: Iterable[str | FacetCount], *, replace: bool = False) -> None:
    """Replace a combo's choices (a value with its count), keeping what is chosen or typed."""
    counts: dict[str, int | None] = {}
    for value in values:
        if isinstance(value, FacetCount):
            counts[value.value] = (counts.get(value.value) or 0) + value.count
        else:
            counts.setdefault(value, None)
    if not counts and not replace:
        return
    chosen = _text(combo)
    with QSignalBlocker(combo):
        combo.clear()
        combo.addItem(ANY)
        for value in sorted(counts):
            count = counts[value]
            combo.addItem(value if count is None else f"{value} ({count:,})", value)
        index = combo.findData(chosen) if chosen is not None else 0
        if index >= 0:
            combo.setCurrentIndex(index)
        else:
            combo.setCurrentText(chosen or "")


def _utc(edit: QDateTimeEdit) -> datetime:
    stamp = edit.dateTime().toUTC().toSecsSinceEpoch()
    return datetime.fromtimestamp(stamp, tz=UTC)
