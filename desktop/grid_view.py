"""The thumbnail grid and the table: two views on one results model.

The model is :class:`~lensflow.desktop.models.ResultsModel`.

Both are virtualised (Qt paints only the visible cells) and fetch the next page as they
near the end of the loaded rows. The grid's delegate draws the thumbnail, the current label
(bold and green when a human set it) and the camera and score.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QSize, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPen
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

from lensflow.desktop.api_types import ResultItem
from lensflow.desktop.models import ItemRole, ResultsModel
from lensflow.desktop.thumbs import THUMB_SIZE

CELL = QSize(THUMB_SIZE.width() + 16, THUMB_SIZE.height() + 44)
_HUMAN = QColor("#1b7a1b")
_SELECTED = QColor("#2f6fdb")


class CropDelegate(QStyledItemDelegate):
    """Paints one grid cell: thumbnail, label, camera and score."""

    def __init__(self, model: ResultsModel, parent: QWidget | None = None) -> None:
        """Paint rows of ``model`` (its label node decides which label is shown)."""
        super().__init__(parent)
        self.model = model

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
        """Draw the cell."""
        item: ResultItem | None = index.data(ItemRole)
        if item is None:
            return
        rect: QRect = option.rect
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        painter.save()
        if selected:
            painter.fillRect(rect.adjusted(1, 1, -1, -1), _SELECTED.lighter(170))
            painter.setPen(QPen(_SELECTED, 2))
            painter.drawRect(rect.adjusted(1, 1, -2, -2))
        thumb_box = QRect(rect.x() + 8, rect.y() + 6, THUMB_SIZE.width(), THUMB_SIZE.height())
        pixmap = index.data(Qt.ItemDataRole.DecorationRole)
        if pixmap is not None and not pixmap.isNull():
            x = thumb_box.x() + (thumb_box.width() - pixmap.width()) // 2
            y = thumb_box.y() + (thumb_box.height() - pixmap.height()) // 2
            painter.drawPixmap(x, y, pixmap)
        else:
            painter.fillRect(thumb_box, QColor("#e4e4e4"))
        node = self.model.label_node
        human = node in item.human_labels
        label_font = QFont(option.font)
        label_font.setBold(human)
        painter.setFont(label_font)
        painter.setPen(_HUMAN if human else option.palette.text().color())
        text_top = thumb_box.bottom() + 4
        label = (item.label(node) or "-") + (" ✓" if human else "")
        painter.drawText(
            QRect(rect.x() + 4, text_top, rect.width() - 8, 18),
            Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter,
            label,
        )
        small = QFont(option.font)
        small.setPointSizeF(max(small.pointSizeF() - 1.5, 7.0))
        painter.setFont(small)
        painter.setPen(option.palette.placeholderText().color())
        painter.drawText(
            QRect(rect.x() + 4, text_top + 17, rect.width() - 8, 16),
            Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter,
            f"{item.camera} · {item.detection.score:.2f}",
        )
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
