"""The filter bar: camera, class, label (and node), score range, time range, review state, sort.

Every change emits :attr:`FilterBar.query_changed` with the new
:class:`~lensflow.desktop.api_types.ResultQuery`, debounced so typing a camera name sends one
request.
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

from lensflow.desktop.api_types import ResultQuery

ANY = "(any)"
DEBOUNCE_MS = 300
SORTS = {"Newest first": "desc", "Oldest first": "asc"}


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
    text = combo.currentText().strip()
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
        self.unreviewed = QCheckBox("Unreviewed only")
        self.disagreement = QCheckBox("Edge/cloud disagreement")
        self.disagreement.setToolTip("A human label differs from the edge class or classifier")
        self.sort = QComboBox()
        self.sort.addItems(list(SORTS))
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
            self.unreviewed,
            self.disagreement,
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
        for box in (self.use_from, self.use_to, self.unreviewed, self.disagreement):
            box.toggled.connect(self._changed)
        self.sort.currentTextChanged.connect(self._changed)

    def _changed(self) -> None:
        self._debounce.start()

    def _emit(self) -> None:
        self.query_changed.emit(self.query())

    def query(self) -> ResultQuery:
        """The query the filters describe."""
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
            reviewed=False if self.unreviewed.isChecked() else None,
            disagreement=True if self.disagreement.isChecked() else None,
            order="asc" if SORTS[self.sort.currentText()] == "asc" else "desc",
        )

    def set_choices(
        self,
        *,
        cameras: Iterable[str] = (),
        classes: Iterable[str] = (),
        nodes: Iterable[str] = (),
    ) -> None:
        """Offer these cameras, classes and nodes in the combos (typing others still works)."""
        for combo, values in ((self.camera, cameras), (self.class_name, classes)):
            _refill(combo, values)
        _refill(self.node, nodes)

    def apply_now(self) -> None:
        """Emit the current query at once (skip the debounce)."""
        self._debounce.stop()
        self._emit()


def _refill(combo: QComboBox, values: Iterable[str]) -> None:
    """Replace a combo's choices, keeping what is typed or chosen."""
    wanted = sorted(set(values))
    if not wanted:
        return
    current = combo.currentText()
    with QSignalBlocker(combo):
        combo.clear()
        combo.addItem(ANY)
        combo.addItems(wanted)
        combo.setCurrentText(current)


def _utc(edit: QDateTimeEdit) -> datetime:
    stamp = edit.dateTime().toUTC().toSecsSinceEpoch()
    return datetime.fromtimestamp(stamp, tz=UTC)
