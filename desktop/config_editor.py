"""Edit, validate and publish edge configs; watch each edge's ack and online state.

The editor starts from the selected edge's current config (the first edge is selected when
the table first fills): the version assigned to it, fetched from the API
(:func:`lensflow.desktop.edge_configs.current_config`). Selecting another edge loads its config
unless the text was edited since the last load ("Load edge config" replaces it then).

The YAML goes to the API's validator (the agents' own checks); every problem is shown at its
line at once. Publishing asks first, naming every target edge, then stores the text as a new
config version and assigns it to exactly the edges selected in the table; with no edge
selected nothing is published. The cloud then pushes it and the table shows each edge's
answer: pending until the edge acks, then applied or rejected (with its reason). The table
refreshes on a timer. Every API call runs off the UI thread
(:class:`lensflow.desktop.workers.Runner`); every failure ends in the status line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from PySide6.QtCore import QItemSelection, QItemSelectionModel, QTimer, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from lensflow.desktop.api_types import (
    Assignment,
    ConfigValidation,
    ConfigVersion,
    EdgeInfo,
)
from lensflow.desktop.edge_configs import (
    ConfigApi,
    EdgeCurrent,
    count_problems,
    current_config,
    edge_name,
    publish_question,
)
from lensflow.desktop.edge_table import EdgeTableModel
from lensflow.desktop.errors import ApiError, ValidationFailed
from lensflow.desktop.theme import error_color, ok_color
from lensflow.desktop.workers import Runner
from lensflow.desktop.yaml_editor import YamlEditor

logger = logging.getLogger(__name__)

REFRESH_MS = 5000
"""How often the edge table is refreshed."""
_OK, _BAD = ok_color, error_color  # read when a message is shown: light or dark palette


class ConfigEditor(QWidget):
    """The edge config page: versions, the YAML editor, validate, publish, the edge table.

    Signals:
        edges_refreshed: The edge table was refreshed.
        edge_config_loaded: The editor got an edge's current config (an :class:`EdgeCurrent`).
        validated: A validation answer arrived (a :class:`ConfigValidation`).
        published: A version was created and assigned (the :class:`ConfigVersion`).
        failed: A call failed; the message (also shown in the status line).

    """

    edges_refreshed = Signal()
    edge_config_loaded = Signal(object)
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
        self._loaded_text = ""  # what the last load put in the editor: edits are kept
        self._first_edges = True
        self._last_selection: list[tuple[str, str]] = []
        self.confirm_box: QMessageBox | None = None
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
        self.publish_button = QPushButton("&Publish to selected edges…")
        self.publish_button.setToolTip(
            "Create a version and assign it to the edges selected in the table (asks first)"
        )
        self.publish_button.clicked.connect(self.ask_publish)
        self.refresh_button = QPushButton("&Refresh")
        self.refresh_button.clicked.connect(self.refresh_edges)
        self.load_button = QPushButton("&Load edge config")
        self.load_button.setToolTip("Replace the text with the selected edge's current config")
        self.load_button.clicked.connect(lambda: self.load_edge_config(replace=True))
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
        edge_header.addWidget(self.load_button)
        edge_header.addWidget(self.refresh_button)
        edge_layout.addLayout(edge_header)
        edge_layout.addWidget(self.edge_view)
        self.edge_view.selectionModel().selectionChanged.connect(self._selection_changed)
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
        """Load versions and edges (the first edge's config goes to the editor); start the timer."""
        self.load_versions()
        self.refresh_edges()
        if self.refresh_ms > 0:
            self.timer.start()

    def load_versions(self) -> None:
        """Fetch the version list (the "Version" drop-down)."""
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

    def load_edge_config(self, *, replace: bool) -> None:
        """Load the selected edge's current config into the editor (off the UI thread).

        Args:
            replace: Replace the text even if it was edited since the last load; otherwise
                edits are kept and the status says how to load the edge's config.

        """
        chosen = self.selected_edges()
        if len(chosen) != 1:
            if replace:
                self._fail_message("Select one edge to load its config.")
            return
        if not replace and self.editor.text() != self._loaded_text:
            self._kept_edits(chosen[0])
            return
        site, agent = chosen[0]
        before = self.editor.text()
        self._say(f"Loading the config of {edge_name(chosen[0])}…", _OK)
        self.runner.submit(
            lambda: current_config(self.api, site, agent),
            on_done=lambda current: self._edge_config_arrived(current, before=before),
            on_error=self._fail,
            name="edge config",
        )

    def ask_publish(self) -> None:
        """Publish to the selected edges after a confirmation naming them; none: refuse."""
        targets = self.selected_edges()
        if not targets:
            self._fail_message(
                "Nothing published: select the edges to publish to in the table first."
            )
            return
        box = publish_question(self, targets)
        box.accepted.connect(lambda: self.publish(targets))
        box.finished.connect(box.deleteLater)
        self.confirm_box = box
        box.open()

    def publish(self, edges: Sequence[tuple[str, str]] | None = None) -> None:
        """Create a version of the text and assign it to ``edges``, without asking.

        Args:
            edges: Where to; the selected rows when None. With no edge nothing is published.

        """
        targets = list(edges) if edges is not None else self.selected_edges()
        if not targets:
            self._fail_message("Nothing published: no edge is selected.")
            return
        text, comment = self.editor.text(), self.comment.text().strip() or None
        self.publish_button.setEnabled(False)
        self._say(f"Publishing to {', '.join(map(edge_name, targets))}…", _OK)

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

    def _load_version(self, row: int) -> None:
        if 0 <= row < len(self._versions):
            self._set_text(self._versions[row].text)
            self._say(f"Loaded version #{self._versions[row].id}.", _OK)

    def _selection_changed(self) -> None:
        chosen = self.selected_edges()
        if chosen != self._last_selection:  # not the same rows selected again after a refresh
            self._last_selection = chosen
            self.load_edge_config(replace=False)

    def _edge_config_arrived(self, current: EdgeCurrent, *, before: str) -> None:
        edge = (current.edge.site, current.edge.agent_id)
        if self.selected_edges() != [edge]:
            return  # another edge was selected meanwhile
        if self.editor.text() != before:  # typed while it loaded
            self._kept_edits(edge)
        elif current.version is not None:
            self._set_text(current.version.text)
            self._say(current.summary, _OK)
        else:
            self._say(current.summary, _BAD)
        self.edge_config_loaded.emit(current)

    def _kept_edits(self, edge: tuple[str, str]) -> None:
        self._say(f"Kept your edits; 'Load edge config' loads {edge_name(edge)}'s config.", _OK)

    def _set_text(self, text: str) -> None:
        self.editor.set_text(text)
        self._loaded_text = text

    def _edges_arrived(self, edges: list[EdgeInfo]) -> None:
        self._refreshing = False
        chosen = set(self.selected_edges())
        self.edge_model.set_edges(edges)
        kept = QItemSelection()
        for row, edge in enumerate(edges):
            if (edge.site, edge.agent_id) in chosen:
                kept.select(self.edge_model.index(row, 0), self.edge_model.index(row, 0))
        flags = QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
        self.edge_view.selectionModel().select(kept, flags)  # one change, not one per row
        if self._first_edges and edges:
            self._first_edges = False
            if not chosen:
                self.edge_view.selectRow(0)  # the editor starts from this edge's config
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
            self._say(count_problems(result.issues) + " See the marked lines.", _BAD)
        self.validated.emit(result)

    def _publish_done(self, outcome: tuple[ConfigVersion, list[Assignment]]) -> None:
        version, assignments = outcome
        self.publish_button.setEnabled(True)
        self.editor.set_issues([])
        self._loaded_text = version.text
        self._say(
            f"Published version #{version.id} to "
            f"{', '.join(edge_name((a.site, a.agent_id)) for a in assignments)}; "
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
            self._fail_message("Not published: " + count_problems(err.issues))
            return
        self._fail(err)

    def _fail(self, err: Exception) -> None:
        message = err.message if isinstance(err, ApiError) else f"{type(err).__name__}: {err}"
        self._fail_message(message)

    def _fail_message(self, message: str) -> None:
        logger.warning("config editor: %s", message)
        self._say(message, _BAD)
        self.failed.emit(message)

    def _say(self, text: str, color: Callable[[], QColor]) -> None:
        self.status.setStyleSheet(f"color: {color().name()}")
        self.status.setText(text)
