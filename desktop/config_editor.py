"""Edit, validate and publish edge configs; watch each edge's ack and online state.

The YAML goes to the API's validator (the agents' own checks); each problem is shown at its
line. Publishing stores the text as a new config version and assigns it to the edges
selected in the table (all listed edges when none is selected); the cloud then pushes it and
the table shows each edge's answer: pending until the edge acks, then applied or rejected
(with its reason). The table refreshes on a timer. Every API call runs off the UI thread
(:class:`lensflow.desktop.workers.Runner`); every failure ends in the status line.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from PySide6.QtCore import QItemSelectionModel, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from lensflow.desktop.api_types import (
    Assignment,
    ConfigIssue,
    ConfigValidation,
    ConfigVersion,
    EdgeInfo,
)
from lensflow.desktop.edge_table import EdgeTableModel
from lensflow.desktop.errors import ApiError, ValidationFailed
from lensflow.desktop.workers import Runner
from lensflow.desktop.yaml_editor import YamlEditor

logger = logging.getLogger(__name__)

REFRESH_MS = 5000
"""How often the edge table is refreshed."""
_OK = "color: #1b6e1b"
_BAD = "color: #b00020"


class ConfigApi(Protocol):
    """What the editor needs of the API (:class:`lensflow.desktop.client.ApiClient` is one)."""

    def configs(self, *, before: int | None = None, limit: int = 50) -> list[ConfigVersion]:
        """Config versions, newest first."""

    def validate_config(self, text: str) -> ConfigValidation:
        """Validate a config text."""

    def create_config(self, text: str, *, comment: str | None = None) -> ConfigVersion:
        """Store a new version."""

    def assign_config(self, version_id: int, edges: Sequence[tuple[str, str]]) -> list[Assignment]:
        """Assign a version to edges."""

    def edges(self) -> list[EdgeInfo]:
        """Every known edge."""


class ConfigEditor(QWidget):
    """The edge config page: versions, the YAML editor, validate, publish, the edge table.

    Signals:
        edges_refreshed: The edge table was refreshed.
        validated: A validation answer arrived (a :class:`ConfigValidation`).
        published: A version was created and assigned (the :class:`ConfigVersion`).
        failed: A call failed; the message (also shown in the status line).

    """

    edges_refreshed = Signal()
    validated = Signal(object)
    published = Signal(object)
    failed = Signal(str)

    def __init__(
        self,
        api: ConfigApi,
        *,
        runner: Runner | None = None,
        refresh_ms: int = REFRESH_MS,
        parent: QWidget | None = None,
    ) -> None:
        """Build the page; call :meth:`start` to load versions and edges.

        Args:
            api: The API client.
            runner: Where calls run (a private one when None).
            refresh_ms: Edge table refresh period; 0 turns the timer off.
            parent: The Qt parent.

        """
        super().__init__(parent)
        self.api = api
        self.runner = runner or Runner(threads=2, parent=self)
        self._versions: list[ConfigVersion] = []
        self._refreshing = False
        self._refresh_again = False
        self._build()
        self.timer = QTimer(self)
        self.timer.setInterval(refresh_ms)
        self.timer.timeout.connect(self.refresh_edges)
        self.refresh_ms = refresh_ms

    def _build(self) -> None:
        self.versions = QComboBox()
        self.versions.setObjectName("configVersions")
        self.versions.setMinimumContentsLength(30)
        self.versions.activated.connect(self._load_version)
        self.validate_button = QPushButton("&Validate")
        self.validate_button.clicked.connect(self.validate)
        self.comment = QLineEdit()
        self.comment.setPlaceholderText("Why this version (comment)")
        self.publish_button = QPushButton("&Publish to selected edges")
        self.publish_button.setToolTip(
            "Create a version and assign it (all edges if none selected)"
        )
        self.publish_button.clicked.connect(lambda: self.publish())
        self.refresh_button = QPushButton("&Refresh")
        self.refresh_button.clicked.connect(self.refresh_edges)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Version:"))
        bar.addWidget(self.versions, 1)
        bar.addWidget(self.validate_button)
        bar.addWidget(self.comment, 1)
        bar.addWidget(self.publish_button)
        self.editor = YamlEditor()
        self.status = QLabel("")
        self.status.setObjectName("configStatus")
        self.status.setWordWrap(True)
        self.edge_model = EdgeTableModel()
        self.edge_view = QTableView()
        self.edge_view.setObjectName("edgeTable")
        self.edge_view.setModel(self.edge_model)
        self.edge_view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.edge_view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.edge_view.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents
        )
        self.edge_view.horizontalHeader().setStretchLastSection(True)
        edges = QWidget()
        edge_layout = QVBoxLayout(edges)
        edge_layout.setContentsMargins(0, 0, 0, 0)
        edge_header = QHBoxLayout()
        edge_header.addWidget(QLabel("Edges (select the ones to publish to)"), 1)
        edge_header.addWidget(self.refresh_button)
        edge_layout.addLayout(edge_header)
        edge_layout.addWidget(self.edge_view)
        splitter = QSplitter()
        splitter.addWidget(self.editor)
        splitter.addWidget(edges)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.status)

    # -- actions ---------------------------------------------------------------------------

    def start(self) -> None:
        """Load the versions (the newest into the editor) and the edges; start the timer."""
        self.load_versions()
        self.refresh_edges()
        if self.refresh_ms > 0:
            self.timer.start()

    def load_versions(self) -> None:
        """Fetch the version list; the editor gets the newest if it is empty."""
        self.runner.submit(
            self.api.configs, on_done=self._versions_arrived, on_error=self._fail, name="configs"
        )

    def refresh_edges(self) -> None:
        """Fetch the edges; asked while a fetch is in flight, fetch again after it."""
        if self._refreshing:
            self._refresh_again = True
            return
        self._refreshing, self._refresh_again = True, False
        self.runner.submit(
            self.api.edges, on_done=self._edges_arrived, on_error=self._edges_failed, name="edges"
        )

    def validate(self) -> None:
        """Validate the text with the API; its issues appear at their lines."""
        text = self.editor.text()
        self._say("Validating…", _OK)
        self.runner.submit(
            lambda: self.api.validate_config(text),
            on_done=self._validation_arrived,
            on_error=self._fail,
            name="validate config",
        )

    def selected_edges(self) -> list[tuple[str, str]]:
        """The ``(site, agent_id)`` of the selected rows, in table order."""
        rows = sorted({index.row() for index in self.edge_view.selectionModel().selectedRows()})
        return [(self.edge_model.edge(r).site, self.edge_model.edge(r).agent_id) for r in rows]

    def publish(self, edges: Sequence[tuple[str, str]] | None = None) -> None:
        """Create a version of the text and assign it to ``edges``.

        Args:
            edges: Where to; the selected rows when None, or every listed edge if none is
                selected.

        """
        targets = list(edges) if edges is not None else self.selected_edges()
        if not targets:
            targets = [(e.site, e.agent_id) for e in self.edge_model.edges()]
        if not targets:
            self._fail_message("No edge to publish to: no edge has reported yet.")
            return
        text, comment = self.editor.text(), self.comment.text().strip() or None
        self.publish_button.setEnabled(False)
        self._say(f"Publishing to {len(targets)} edges…", _OK)

        def call() -> tuple[ConfigVersion, list[Assignment]]:
            version = self.api.create_config(text, comment=comment)
            return version, self.api.assign_config(version.id, targets)

        self.runner.submit(
            call, on_done=self._publish_done, on_error=self._publish_failed, name="publish"
        )

    # -- outcomes (UI thread) -----------------------------------------------------------------

    def _versions_arrived(self, versions: list[ConfigVersion]) -> None:
        self._versions = versions
        self.versions.clear()
        for version in versions:
            when = version.created_at.astimezone().strftime("%Y-%m-%d %H:%M")
            comment = f" — {version.comment}" if version.comment else ""
            self.versions.addItem(f"#{version.id} {when} by {version.created_by}{comment}")
        if versions and not self.editor.text().strip():
            self.editor.set_text(versions[0].text)

    def _load_version(self, row: int) -> None:
        if 0 <= row < len(self._versions):
            self.editor.set_text(self._versions[row].text)
            self._say(f"Loaded version #{self._versions[row].id}.", _OK)

    def _edges_arrived(self, edges: list[EdgeInfo]) -> None:
        self._refreshing = False
        chosen = set(self.selected_edges())
        self.edge_model.set_edges(edges)
        selection = self.edge_view.selectionModel()
        keep = QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
        for row, edge in enumerate(edges):
            if (edge.site, edge.agent_id) in chosen:
                selection.select(self.edge_model.index(row, 0), keep)
        self.edges_refreshed.emit()
        if self._refresh_again:
            self.refresh_edges()

    def _edges_failed(self, err: Exception) -> None:
        self._refreshing = False
        self._fail(err)
        if self._refresh_again:
            self.refresh_edges()

    def _validation_arrived(self, result: ConfigValidation) -> None:
        self.editor.set_issues(result.issues)
        if result.valid:
            self._say(f"Valid. Config hash {result.config_hash}.", _OK)
        else:
            self._say(_count(result.issues) + " See the marked lines.", _BAD)
        self.validated.emit(result)

    def _publish_done(self, outcome: tuple[ConfigVersion, list[Assignment]]) -> None:
        version, assignments = outcome
        self.publish_button.setEnabled(True)
        self.editor.set_issues([])
        self._say(
            f"Published version #{version.id} to {len(assignments)} edges; "
            "their acks appear in the table.",
            _OK,
        )
        self.load_versions()
        self.refresh_edges()
        self.published.emit(version)

    def _publish_failed(self, err: Exception) -> None:
        self.publish_button.setEnabled(True)
        if isinstance(err, ValidationFailed) and err.issues:
            self.editor.set_issues(err.issues)
            self._fail_message("Not published: " + _count(err.issues))
            return
        self._fail(err)

    def _fail(self, err: Exception) -> None:
        message = err.message if isinstance(err, ApiError) else f"{type(err).__name__}: {err}"
        self._fail_message(message)

    def _fail_message(self, message: str) -> None:
        logger.warning("config editor: %s", message)
        self._say(message, _BAD)
        self.failed.emit(message)

    def _say(self, text: str, style: str) -> None:
        self.status.setStyleSheet(style)
        self.status.setText(text)


def _count(issues: Sequence[ConfigIssue]) -> str:
    lines = sorted({i.line for i in issues if i.line is not None})
    where = f" (lines {', '.join(map(str, lines))})" if lines else ""
    return f"{len(issues)} problem{'s' * (len(issues) != 1)} in the config{where}."
