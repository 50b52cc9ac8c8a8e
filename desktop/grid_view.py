"""The thumbnail grid and the table: two views on one results model.

The model is :class:`~lensflow.desktop.models.ResultsModel`.

Both are virtualised (Qt paints only the visible cells) and fetch the next page as they
near the end of the loaded rows. The grid's delegate draws the thumbnail, the current label
with its review status (bold, in the status's colour: ✓ accepted or relabelled, ✗ rejected,
? unsure), an "unsaved" badge while the API has not stored a decision, and the camera and
score; a selected cell uses the palette's highlight colours, so it reads on light and dark.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QSize, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QListView,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableView,
    QWidget,
)

from lensflow.desktop.api_review_types import ReviewItem
from lensflow.desktop.models import ItemRole, ResultsModel
from lensflow.desktop.review_state import (
    UNSAVED,
    label_text,
    status_color,
    status_of,
    unsaved_color,
)
from lensflow.desktop.thumbs import THUMB_SIZE

CELL = QSize(THUMB_SIZE.width() + 16, THUMB_SIZE.height() + 44)


class CropDelegate(QStyledItemDelegate):
    """Paints one grid cell: thumbnail, label, camera and score."""

    def __init__(self, model: ResultsModel, parent: QWidget | None = None) -> None:
        """Paint rows of ``model`` (its label node decides which label is shown)."""
        super().__init__(parent)
        self.model = model
        self._font_cache: dict[str, tuple[QFont, QFont, QFont]] = {}

    def _fonts(self, font: QFont) -> tuple[QFont, QFont, QFont]:
        """The cell's label font, its bold form and the small font (made once per font)."""
        key = font.key()
        fonts = self._font_cache.get(key)
        if fonts is None:
            bold, small = QFont(font), QFont(font)
            bold.setBold(True)
            small.setPointSizeF(max(small.pointSizeF() - 1.5, 7.0))
            fonts = self._font_cache[key] = (QFont(font), bold, small)
        return fonts

    def sizeHint(  # noqa: N802 - Qt API
        self, _option: QStyleOptionViewItem, _index: QModelIndex | QPersistentModelIndex
    ) -> QSize:
        """Every cell has the same size (the view can then lay out 100k cells cheaply)."""
        return CELL

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        """Draw the cell: selection in the palette's highlight, the status in its colour."""
        item: ReviewItem | None = index.data(ItemRole)
        if item is None:
            return
        rect: QRect = option.rect
        palette = option.palette
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        painter.save()
        if selected:
            highlight = palette.highlight().color()
            painter.fillRect(rect.adjusted(1, 1, -1, -1), highlight)
            painter.setPen(QPen(highlight.darker(130), 2))
            painter.drawRect(rect.adjusted(1, 1, -2, -2))
        thumb_box = QRect(rect.x() + 8, rect.y() + 6, THUMB_SIZE.width(), THUMB_SIZE.height())
        pixmap = index.data(Qt.ItemDataRole.DecorationRole)
        if pixmap is not None and not pixmap.isNull():
            x = thumb_box.x() + (thumb_box.width() - pixmap.width()) // 2
            y = thumb_box.y() + (thumb_box.height() - pixmap.height()) // 2
            painter.drawPixmap(x, y, pixmap)
        else:
            painter.fillRect(thumb_box, palette.midlight().color())
        node = self.model.label_node
        status = status_of(item, node)
        text_color = palette.highlightedText().color() if selected else palette.text().color()
        plain, bold, small = self._fonts(option.font)
        painter.setFont(bold if status is not None else plain)
        mark = status_color(status) if status is not None else None
        painter.setPen(text_color if selected or mark is None else mark)
        text_top = thumb_box.bottom() + 4
        painter.drawText(
            QRect(rect.x() + 4, text_top, rect.width() - 8, 18),
            Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter,
            label_text(item, node),
        )
        painter.setFont(small)
        painter.setPen(text_color if selected else palette.placeholderText().color())
        painter.drawText(
            QRect(rect.x() + 4, text_top + 17, rect.width() - 8, 16),
            Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter,
            f"{item.camera} · {item.detection.score:.2f}",
        )
        if self.model.is_unsaved(item.crop_id):
            badge = QRect(thumb_box.x(), thumb_box.y(), 62, 16)
            painter.fillRect(badge, unsaved_color())
            painter.setFont(small)
            painter.setPen(QColor("white"))
            painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, UNSAVED)
        painter.restore()


class GridView(QListView):
    """The thumbnail grid: icon mode, uniform cells, extended selection."""

    def __init__(self, model: ResultsModel, parent: QWidget | None = None) -> None:
        """A grid on ``model``."""
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)
        self.setGridSize(CELL)
        self.setSpacing(0)
        self.setWrapping(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.verticalScrollBar().setSingleStep(CELL.height() // 3)
        self.setItemDelegate(CropDelegate(model, self))
        self.setModel(model)
        self.results = model

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt API
        """The cells; an empty list says why it is empty instead of staying blank."""
        super().paintEvent(event)
        if self.results.rowCount():
            return
        text = "Loading…" if self.results.loading else "No crops match these filters."
        painter = QPainter(self.viewport())
        painter.setPen(self.palette().placeholderText().color())
        painter.drawText(self.viewport().rect(), Qt.AlignmentFlag.AlignCenter, text)
        painter.end()


class ResultTable(QTableView):
    """The table: one row per result, the thumbnail small in the first column."""

    def __init__(self, model: ResultsModel, parent: QWidget | None = None) -> None:
        """A table on ``model``."""
        super().__init__(parent)
        self.setModel(model)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setIconSize(QSize(40, 40))
        self.verticalHeader().setDefaultSectionSize(44)
        self.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.verticalHeader().hide()
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        for column, width in enumerate((190, 100, 150, 90, 60, 110)):
            self.setColumnWidth(column, width)
        self.setAlternatingRowColors(True)
        self.setWordWrap(False)
