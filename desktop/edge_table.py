"""The edges as a table: online state, desired config version and the edge's ack of it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor

from lensflow.desktop.api_types import EdgeInfo
from lensflow.desktop.theme import ack_color

NO_ASSIGNMENT = "—"
"""Shown as the ack of an edge that has no config assigned."""
_Index = QModelIndex | QPersistentModelIndex


def ack_of(edge: EdgeInfo) -> str:
    """The edge's ack of its desired config: applied, rejected, pending, or — if none."""
    return edge.desired.ack_status if edge.desired else NO_ASSIGNMENT


def _time(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _short_hash(value: str | None) -> str:
    return value.removeprefix("sha256:")[:12] if value else ""


_COLUMNS: tuple[tuple[str, Callable[[EdgeInfo], str]], ...] = (
    ("Site", lambda e: e.site),
    ("Agent", lambda e: e.agent_id),
    ("Online", lambda e: "online" if e.online else "offline"),
    ("Config version", lambda e: str(e.desired.config_version_id) if e.desired else ""),
    ("Ack", ack_of),
    ("In sync", lambda e: {True: "yes", False: "no", None: ""}[e.in_sync]),
    ("Applied hash", lambda e: _short_hash(e.applied_config_hash)),
    ("Last seen", lambda e: _time(e.last_seen)),
    ("Agent version", lambda e: e.agent_version or ""),
    ("Error", lambda e: (e.desired.error or "") if e.desired else ""),
)
COLUMN_NAMES = tuple(name for name, _ in _COLUMNS)


class EdgeTableModel(QAbstractTableModel):
    """One row per edge, in the API's order (site, agent id)."""

    def __init__(self) -> None:
        """Start empty; :meth:`set_edges` fills it."""
        super().__init__()
        self._edges: list[EdgeInfo] = []

    def set_edges(self, edges: Sequence[EdgeInfo]) -> None:
        """Replace the rows."""
        self.beginResetModel()
        self._edges = list(edges)
        self.endResetModel()

    def edge(self, row: int) -> EdgeInfo:
        """The edge of a row."""
        return self._edges[row]

    def edges(self) -> list[EdgeInfo]:
        """Every edge shown."""
        return list(self._edges)

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008, N802 - Qt API
        """Edges, for the root."""
        return 0 if parent.isValid() else len(self._edges)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008, N802 - Qt API
        """The columns, for the root."""
        return 0 if parent.isValid() else len(_COLUMNS)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        """Text, ack colours and the rejection reason as a tooltip."""
        if not index.isValid():
            return None
        edge = self._edges[index.row()]
        name, text = _COLUMNS[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return text(edge)
        if role == Qt.ItemDataRole.BackgroundRole and name == "Ack":
            color = ack_color(ack_of(edge))  # for the palette in use, light or dark
            return QBrush(color) if color else None
        if role == Qt.ItemDataRole.ForegroundRole and name == "Online" and not edge.online:
            return QBrush(QColor(140, 140, 140))
        if role == Qt.ItemDataRole.ToolTipRole:
            if edge.desired and edge.desired.error:
                return f"Rejected: {edge.desired.error}"
            if edge.desired:
                return f"Desired {edge.desired.desired_hash}, applied {edge.applied_config_hash}"
        return None

    def headerData(  # noqa: N802 - Qt API
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> object:
        """The column names."""
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMN_NAMES[section]
        return None
