"""The label schemas of the session: which label each number key sets, per node, for good.

The keys come from the API's label schema of the node (``GET /v1/label-schemas/{node}``:
labels with their class id, hotkey and colour; docs/labels.md), never from the labels seen in
the loaded rows. A key, once shown, keeps its label for the whole session: a newer schema
version (a label added) only fills keys that were free, and a key the API would move (it never
should) is kept as it was. :class:`SchemaBook` fetches each node's schema once, off the UI
thread, and announces it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

from lensflow.desktop.api_review_types import LabelSchema, SchemaLabel
from lensflow.desktop.client_reviews import ReviewCalls
from lensflow.desktop.workers import Runner

logger = logging.getLogger(__name__)

KEYS = tuple(str(digit) for digit in range(1, 10))
"""The number keys of the relabel bar, in order."""


class SchemaBook(QObject):
    """The label schema of each node, and the session's fixed key of each label.

    Signals:
        changed(str): The schema (or the keys) of this node changed.
        failed(object): A schema could not be fetched (the error).

    """

    changed = Signal(str)
    failed = Signal(object)

    def __init__(
        self,
        runner: Runner,
        client: Callable[[], ReviewCalls | None],
        parent: QObject | None = None,
    ) -> None:
        """Fetch schemas with ``client()`` on ``runner``."""
        super().__init__(parent)
        self.runner = runner
        self.client = client
        self._schemas: dict[str, LabelSchema] = {}
        self._keys: dict[str, dict[str, str]] = {}  # node -> key -> label name, for the session
        self._asked: set[str] = set()

    def reset(self) -> None:
        """Forget every schema and key (another connection)."""
        self._schemas.clear()
        self._keys.clear()
        self._asked.clear()

    # -- reading -----------------------------------------------------------------------------

    def schema(self, node: str) -> LabelSchema | None:
        """The node's schema, once fetched."""
        return self._schemas.get(node)

    def names(self, node: str) -> list[str]:
        """The node's labels in model order (empty until fetched)."""
        schema = self._schemas.get(node)
        return schema.names() if schema is not None else []

    def label(self, node: str, name: str) -> SchemaLabel | None:
        """A label of the node's schema by its exact name."""
        schema = self._schemas.get(node)
        if schema is None:
            return None
        return next((label for label in schema.labels if label.name == name), None)

    def keys(self, node: str) -> dict[str, SchemaLabel]:
        """The labels on the number keys of ``node``, by key, as fixed for the session."""
        fixed = self._keys.get(node, {})
        labels = {key: self.label(node, name) for key, name in fixed.items()}
        return {key: label for key, label in labels.items() if label is not None}

    def key_label(self, node: str, key: str) -> SchemaLabel | None:
        """The label number key ``key`` sets for ``node`` (None: the key is free)."""
        return self.keys(node).get(key)

    # -- fetching ----------------------------------------------------------------------------

    def ensure(self, node: str) -> None:
        """Fetch the node's schema unless it is known or asked for."""
        if node in self._schemas or node in self._asked:
            return
        self.fetch(node)

    def fetch(self, node: str) -> None:
        """Fetch the node's current schema (again)."""
        client = self.client()
        if client is None:
            return
        self._asked.add(node)
        self.runner.submit(
            lambda: client.label_schema(node),
            on_done=self.use,
            on_error=lambda err: self._failed(node, err),
            name=f"label schema {node}",
            priority=1500,
        )

    def use(self, schema: LabelSchema) -> None:
        """Take ``schema`` as its node's current one; keys already shown stay where they are."""
        node = schema.node
        known = self._schemas.get(node)
        if known is not None and known.version > schema.version:
            return  # an older answer arriving late
        self._schemas[node] = schema
        fixed = self._keys.setdefault(node, {})
        placed = set(fixed.values())
        for label in schema.labels:
            if label.name in placed or label.key is None or label.key in fixed:
                continue
            fixed[label.key] = label.name
            placed.add(label.name)
        moved = [
            f"{key}: {name}"
            for key, name in fixed.items()
            if (lab := self.label(node, name)) and lab.key not in (None, key)
        ]
        if moved:
            logger.warning(
                "schema %s v%d moves keys; kept as they were: %s",
                node,
                schema.version,
                ", ".join(moved),
            )
        self.changed.emit(node)

    def _failed(self, node: str, err: Exception) -> None:
        self._asked.discard(node)
        self.failed.emit(err)
