"""The pipeline DAG drawn: nodes in layers by dependency, arrows from each dependency, conditions.

:func:`dag_nodes` reads a pipeline text into :class:`DagNode` (schema only: no plugin is
resolved and no model looked up, so it works on any machine); :class:`DagView` lays them out
top to bottom, a node one layer below its deepest dependency, and draws each node as a box
(name, plugin, its ``when`` condition in readable form) with an arrow from every dependency.
A disabled node is drawn dashed. Colours come from the widget's palette (light or dark).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

from PySide6.QtCore import QEvent, QPointF, QRectF, Qt
from PySide6.QtGui import (
    QBrush,
    QColor,
    QPainter,
    QPainterPath,
    QPalette,
    QPen,
    QPolygonF,
    QResizeEvent,
)
from PySide6.QtWidgets import (
    QGraphicsPathItem,
    QGraphicsScene,
    QGraphicsTextItem,
    QGraphicsView,
    QWidget,
)

from lensflow.shared.config.pipeline import PipelineConfig
from lensflow.shared.config.yaml_loader import YamlDocument, load_model
from lensflow.shared.dag.condition_compile import compile_condition
from lensflow.shared.dag.condition_values import Op
from lensflow.shared.dag.conditions import AnyOf, Compare, Condition, Literal, Path
from lensflow.shared.errors import ConditionError

NODE_WIDTH = 250.0
H_GAP = 36.0
V_GAP = 56.0
PAD = 8.0
ARROW = 8.0


@dataclass(frozen=True)
class DagNode:
    """One node as drawn.

    Attributes:
        name: The node's name.
        plugin: Its ``class`` (a registered key or a dotted path).
        depends_on: The nodes it runs after.
        condition: Its ``when`` in readable form; empty when it always runs.
        enabled: False for a disabled node (it and its dependants never run).

    """

    name: str
    plugin: str
    depends_on: tuple[str, ...]
    condition: str
    enabled: bool = True


def dag_nodes(text: str) -> list[DagNode]:
    """The nodes of a pipeline text, in file order.

    Raises:
        ConfigError: If the text is not YAML or not a pipeline (each issue at its line).

    """
    config = load_model(PipelineConfig, YamlDocument(text, path="pipeline.yaml"))
    nodes = []
    for node in config.pipeline:
        try:
            condition = readable(compile_condition(node.when)) if node.when is not None else ""
        except ConditionError:
            condition = str(node.when)  # the validator says what is wrong with it
        nodes.append(
            DagNode(
                name=node.name,
                plugin=node.class_,
                depends_on=tuple(node.depends_on),
                condition=condition,
                enabled=node.enabled,
            )
        )
    return nodes


def readable(condition: Condition) -> str:
    """A condition in readable form; ``'car' in P or 'bus' in P`` reads ``'car' or 'bus' in P``."""
    if isinstance(condition, AnyOf):
        tests = [
            item
            for item in condition.items
            if isinstance(item, Compare)
            and item.op is Op.IN
            and isinstance(item.left, Literal)
            and isinstance(item.right, Path)
        ]
        if len(tests) == len(condition.items) and len({test.right for test in tests}) == 1:
            values = [test.left.describe() for test in tests]
            return f"{', '.join(values[:-1])} or {values[-1]} in {tests[0].right.describe()}"
    return condition.describe()


def layers(nodes: Sequence[DagNode]) -> list[list[DagNode]]:
    """Nodes grouped by depth: a node one below its deepest known dependency (cycles cut)."""
    by_name = {node.name: node for node in nodes}
    depth: dict[str, int] = {}

    def depth_of(name: str, seen: frozenset[str]) -> int:
        if name in depth:
            return depth[name]
        deps = [d for d in by_name[name].depends_on if d in by_name and d not in seen]
        found = 1 + max((depth_of(d, seen | {name}) for d in deps), default=-1)
        depth[name] = found
        return found

    grouped: dict[int, list[DagNode]] = {}
    for node in nodes:
        grouped.setdefault(depth_of(node.name, frozenset()), []).append(node)
    return [grouped[level] for level in sorted(grouped)]


class DagView(QGraphicsView):
    """Draws a DAG; :meth:`set_nodes` replaces the drawing."""

    def __init__(self, parent: QWidget | None = None) -> None:
        """An empty drawing."""
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setRenderHint(QPainter.RenderHint.Antialiasing)
        self.setAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
        self.nodes: list[DagNode] = []
        self.boxes: dict[str, QRectF] = {}
        self.arrows: list[tuple[str, str]] = []

    def set_nodes(self, nodes: Sequence[DagNode]) -> None:
        """Draw ``nodes`` (empty: clear) in layers, with an arrow from each dependency."""
        scene = self.scene()
        scene.clear()
        self.nodes, self.boxes, self.arrows = list(nodes), {}, []
        palette = self.palette()
        y = 0.0
        for row in layers(self.nodes):
            width = len(row) * NODE_WIDTH + (len(row) - 1) * H_GAP
            x = -width / 2
            height = 0.0
            for node in row:
                box = self._draw_node(node, x, y, palette)
                self.boxes[node.name] = box
                height = max(height, box.height())
                x += NODE_WIDTH + H_GAP
            y += height + V_GAP
        for node in self.nodes:
            for dep in node.depends_on:
                if dep in self.boxes:
                    self._draw_arrow(self.boxes[dep], self.boxes[node.name], palette)
                    self.arrows.append((dep, node.name))
        scene.setSceneRect(scene.itemsBoundingRect().adjusted(-PAD, -PAD, PAD, PAD))
        self._fit()

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt API
        """Keep the whole drawing in view."""
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        """Shrink the drawing to fit the view (never enlarge it past its size)."""
        rect = self.sceneRect()
        view = self.viewport().rect()
        if rect.width() > view.width() or rect.height() > view.height():
            self.fitInView(rect, Qt.AspectRatioMode.KeepAspectRatio)
        else:
            self.resetTransform()

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt API
        """Draw again in the new palette's colours (light or dark)."""
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange and self.nodes:
            self.set_nodes(self.nodes)

    def condition_of(self, name: str) -> str:
        """The condition drawn on node ``name`` (empty when it always runs)."""
        return next(node.condition for node in self.nodes if node.name == name)

    def _draw_node(self, node: DagNode, x: float, y: float, palette: QPalette) -> QRectF:
        text = QGraphicsTextItem()
        text.setDefaultTextColor(palette.color(QPalette.ColorRole.Text))
        text.setTextWidth(NODE_WIDTH - 2 * PAD)
        after = " (after its dependencies)" if node.depends_on else ""
        when = f"when {node.condition}" if node.condition else f"always{after}"
        state = "" if node.enabled else " · disabled"
        text.setHtml(
            f"<b>{_breakable(node.name)}</b><br><i>{html.escape(node.plugin)}{state}</i>"
            f"<br><small>{html.escape(when)}</small>"
        )
        text.setToolTip(f"{node.name}\nplugin: {node.plugin}\n{when}")
        box = QRectF(x, y, NODE_WIDTH, text.boundingRect().height() + 2 * PAD)
        shape = QPainterPath()
        shape.addRoundedRect(box, 8, 8)
        frame = QGraphicsPathItem(shape)
        pen = QPen(palette.color(QPalette.ColorRole.Highlight), 1.6)
        if not node.enabled:
            pen.setStyle(Qt.PenStyle.DashLine)
            pen.setColor(palette.color(QPalette.ColorRole.PlaceholderText))
        frame.setPen(pen)
        frame.setBrush(QBrush(palette.color(QPalette.ColorRole.Base)))
        self.scene().addItem(frame)
        text.setPos(x + PAD, y + PAD)
        self.scene().addItem(text)
        return box

    def _draw_arrow(self, start: QRectF, end: QRectF, palette: QPalette) -> None:
        color = palette.color(QPalette.ColorRole.Text)
        color.setAlphaF(0.7)
        tail = QPointF(start.center().x(), start.bottom())
        head = QPointF(end.center().x(), end.top())
        path = QPainterPath(tail)
        bend = (head.y() - tail.y()) / 2
        path.cubicTo(tail + QPointF(0, bend), head - QPointF(0, bend), head)
        line = QGraphicsPathItem(path)
        line.setPen(QPen(color, 1.4))
        self.scene().addItem(line)
        tip = QPolygonF(
            [head, head + QPointF(-ARROW / 2, -ARROW), head + QPointF(ARROW / 2, -ARROW)]
        )
        self.scene().addPolygon(tip, QPen(color), QBrush(QColor(color)))


def _breakable(name: str) -> str:
    """A node name that may wrap after its underscores, never inside a word."""
    return html.escape(name).replace("_", "_\u200b")
