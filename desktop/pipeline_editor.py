"""The cloud's pipeline DAG: the active version from the API, its YAML beside its drawing.

Connected to an API, the page opens the active pipeline version (``GET /v1/pipelines``: the
newest active one; the drop-down lists every stored version, active ones marked), validates
with the API (``POST /v1/pipelines/validate``: the workers' own compiler, without looking up
model files, which are each worker's concern) and publishes: stores the text as a version and
makes it the active one of its name. The DAG is drawn beside the YAML
(:class:`~lensflow.desktop.dag_view.DagView`: nodes, dependencies, conditions) and redrawn as
the text changes. Each problem is shown at its line.

Without an API (or to work on a file) it opens and saves a local pipeline file and validates
it here (:func:`pipeline_issues`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from lensflow.desktop.api_types import ConfigIssue
from lensflow.desktop.client_pipelines import PipelineValidation, PipelineVersion
from lensflow.desktop.dag_view import DagView, dag_nodes
from lensflow.desktop.errors import ApiError, ValidationFailed
from lensflow.desktop.pipeline_api import PipelineApi, pipeline_issues
from lensflow.desktop.replay_dialog import ReplayDialog
from lensflow.desktop.workers import Runner
from lensflow.desktop.yaml_editor import YamlEditor
from lensflow.shared.errors import ConfigError

logger = logging.getLogger(__name__)

REDRAW_MS = 300
"""Pause in typing after which the drawing follows the text."""
VERSIONS_LISTED = 100


class PipelineEditor(QWidget):
    """The pipeline page: the YAML and its drawing; validate, publish (API) or save (file).

    Signals:
        loaded: The API's versions arrived and the active one (a :class:`PipelineVersion`,
            or None when there is none) is in the editor.
        validated: The issues found (a list; empty when valid), by the API or locally.
        published: The stored, now active, version (a :class:`PipelineVersion`).
        failed: A file could not be read or written, or a call failed; the message.

    """

    loaded = Signal(object)
    validated = Signal(object)
    published = Signal(object)
    failed = Signal(str)

    def __init__(
        self,
        *,
        api: PipelineApi | None = None,
        runner: Runner | None = None,
        parent: QWidget | None = None,
    ) -> None:
        """Build the page (empty); ``api`` enables the API's versions, validation and publish."""
        super().__init__(parent)
        self.api = api
        self.runner = runner or Runner(threads=1, parent=self)
        self.path: Path | None = None
        self._versions: list[PipelineVersion] = []
        self.editor = YamlEditor()
        self.dag = DagView()
        self.dag_status = QLabel("")
        self.dag_status.setWordWrap(True)
        self.status = QLabel(
            "Loading the active pipeline from the API…" if api else "Open a pipeline file."
        )
        self.status.setWordWrap(True)
        self.versions = QComboBox()
        self.versions.setMinimumContentsLength(28)
        self.versions.setToolTip("Stored pipeline versions, newest first")
        self.versions.activated.connect(self._version_chosen)
        self.validate_button = QPushButton("&Validate")
        self.validate_button.setToolTip(
            "Compile it as the workers do (on the API when connected; model files are not "
            "looked up: they are each worker's concern)"
        )
        self.validate_button.clicked.connect(self.validate)
        self.publish_button: QPushButton | None = None
        self.replay_dialog: ReplayDialog | None = None
        self._redraw_timer = QTimer(self)
        self._redraw_timer.setSingleShot(True)
        self._redraw_timer.setInterval(REDRAW_MS)
        self._redraw_timer.timeout.connect(self.redraw)
        self.editor.text_edited.connect(self._redraw_timer.start)
        self._build()

    def _build(self) -> None:
        buttons = QHBoxLayout()
        if self.api is not None:
            buttons.addWidget(QLabel("Version:"))
            buttons.addWidget(self.versions, 1)
        for text, slot in (("&Open file…", self._choose), ("&Save as file…", self.save)):
            button = QPushButton(text)
            button.clicked.connect(slot)
            buttons.addWidget(button)
        buttons.addWidget(self.validate_button)
        if self.api is not None:
            self.publish_button = QPushButton("&Publish…")
            self.publish_button.setToolTip(
                "Store it as a version, replay it over the stored crops, then activate it"
            )
            self.publish_button.clicked.connect(self.publish)
            buttons.addWidget(self.publish_button)
            replay = QPushButton("&Replay version…")
            replay.setToolTip("Replay the chosen stored version (a trained head's candidate…)")
            replay.clicked.connect(self.replay_chosen)
            buttons.addWidget(replay)
        if self.api is None:
            buttons.addStretch(1)
        drawing = QWidget()
        column = QVBoxLayout(drawing)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.dag, 1)
        column.addWidget(self.dag_status)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.editor)
        splitter.addWidget(drawing)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([560, 640])  # the drawing gets room for a layer of three nodes
        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.status)

    # -- opening ------------------------------------------------------------------------------

    def load_active(self) -> None:
        """Fetch the stored versions and open the active one (off the UI thread)."""
        api = self._connected()
        if api is None:
            return
        self.status.setText("Loading the active pipeline from the API…")
        self.runner.submit(
            lambda: api.pipelines(limit=VERSIONS_LISTED),
            on_done=self._versions_arrived,
            on_error=self._call_failed,
            name="pipeline versions",
        )

    def open(self, path: Path) -> None:
        """Load a pipeline file into the editor and validate it."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            self._fail(f"Cannot read {path}: {err.strerror or err}")
            return
        self.path = path
        self._set_text(text)
        self.validate()

    def _list_versions(self, versions: list[PipelineVersion]) -> None:
        """Fill the drop-down (the shown version stays chosen)."""
        shown = self.versions.currentIndex()
        shown_id = self._versions[shown].id if 0 <= shown < len(self._versions) else None
        self._versions = versions
        self.versions.clear()
        for row, version in enumerate(versions):
            active = " · active" if version.active else ""
            when = version.created_at.astimezone().strftime("%Y-%m-%d %H:%M")
            self.versions.addItem(f"{version.name} #{version.id}{active} · {when}")
            if version.id == shown_id:
                self.versions.setCurrentIndex(row)

    def _versions_arrived(self, versions: list[PipelineVersion]) -> None:
        self._list_versions(versions)
        active = [v for v in versions if v.active]
        if not active:
            self.status.setText(
                "No active pipeline version on the API: open a pipeline file and publish it."
                if not versions
                else "No version is active: choose one, or publish one."
            )
            self.loaded.emit(None)
            return
        self.versions.setCurrentIndex(versions.index(active[0]))
        self._show_version(active[0])
        others = ", ".join(f"{v.name!r} #{v.id}" for v in active[1:])
        also = f" Also active: {others}." if others else ""
        self.status.setText(f"Active pipeline {active[0].name!r}, version #{active[0].id}.{also}")
        self.loaded.emit(active[0])
        self.validate()

    def _version_chosen(self, row: int) -> None:
        if 0 <= row < len(self._versions):
            version = self._versions[row]
            self._show_version(version)
            state = "active" if version.active else "not active"
            self.status.setText(f"Version #{version.id} of {version.name!r} ({state}).")

    def _show_version(self, version: PipelineVersion) -> None:
        self.path = None
        self._set_text(version.yaml)

    def _set_text(self, text: str) -> None:
        self.editor.set_text(text)
        self._redraw_timer.stop()
        self.redraw()

    # -- the drawing --------------------------------------------------------------------------

    def redraw(self) -> None:
        """Draw the DAG of the text; a text that is not a pipeline keeps the last drawing."""
        try:
            nodes = dag_nodes(self.editor.text())
        except ConfigError as err:
            if self.dag.nodes:
                self.dag_status.setText(f"Drawing not updated: {err.issues[0]}")
            else:
                self.dag_status.setText("")
            return
        self.dag.set_nodes(nodes)
        self.dag_status.setText(f"{len(nodes)} node{'s' * (len(nodes) != 1)}.")

    # -- validate, publish, save ---------------------------------------------------------------

    def validate(self) -> None:
        """Validate the text (with the API when connected); its issues appear at their lines."""
        if self.api is not None:
            self.validate_remote()
            return
        text = self.editor.text()
        source = self.path.name if self.path else "pipeline.yaml"
        self.status.setText("Validating…")
        self.runner.submit(
            lambda: pipeline_issues(text, source=source),
            on_done=self._validated,
            on_error=lambda err: self._fail(f"Validation failed: {err}"),
            name="validate pipeline",
        )

    def validate_remote(self) -> None:
        """Validate the text with the API (off the UI thread); the issues appear at their lines."""
        api = self._connected()
        if api is None:
            return
        text = self.editor.text()
        self.status.setText("Validating with the API…")
        self.runner.submit(
            lambda: api.validate_pipeline(text),
            on_done=self._validated_remote,
            on_error=self._call_failed,
            name="validate pipeline with the API",
        )

    def publish(self) -> None:
        """Store the text as a version, replay it, and offer to activate it (the dialog)."""
        api = self._connected()
        if api is None:
            return
        text = self.editor.text()
        self.status.setText("Storing the version…")
        self.runner.submit(
            lambda: api.create_pipeline(text, activate=False),
            on_done=self.replay,
            on_error=self._call_failed,
            name="store pipeline",
        )

    def replay_chosen(self) -> None:
        """Replay the version chosen in the drop-down (and offer to activate it)."""
        row = self.versions.currentIndex()
        if self._connected() is not None and 0 <= row < len(self._versions):
            self.replay(self._versions[row])

    def replay(self, version: PipelineVersion) -> None:
        """Open the replay dialog of a stored version: its report before "Activate"."""
        api = self._connected()
        if api is None:
            return
        self.editor.set_issues([])
        self.status.setText(f"Version #{version.id} stored; replaying it before activation…")
        dialog = ReplayDialog(api, version, runner=self.runner, parent=self)
        dialog.activated.connect(self._published)
        dialog.rejected.connect(
            lambda: self.status.setText(f"Version #{version.id} stored, not activated.")
        )
        self.replay_dialog = dialog
        dialog.open()
        dialog.start()

    def save(self) -> None:
        """Write the text to a file (asked for unless one was opened)."""
        if self.path is None:
            chosen, _ = QFileDialog.getSaveFileName(self, "Save pipeline", "pipeline.yaml")
            if not chosen:
                return
            self.path = Path(chosen)
        try:
            self.path.write_text(self.editor.text(), encoding="utf-8")
        except OSError as err:
            self._fail(f"Cannot write {self.path}: {err.strerror or err}")
            return
        self.status.setText(f"Saved {self.path}.")

    def _choose(self) -> None:
        chosen, _ = QFileDialog.getOpenFileName(self, "Open pipeline", "", "YAML (*.yaml *.yml)")
        if chosen:
            self.open(Path(chosen))

    # -- outcomes (UI thread) -----------------------------------------------------------------

    def _validated(self, issues: list[ConfigIssue]) -> None:
        self.editor.set_issues(issues)
        count = len(issues)
        self.status.setText(
            "Valid: the workers accept this pipeline."
            if not issues
            else f"{count} problem{'s' * (count != 1)}; see the marked lines."
        )
        self.validated.emit(issues)

    def _connected(self) -> PipelineApi | None:
        if self.api is None:
            self._fail("Not connected to an API: validate and save the local file instead.")
        return self.api

    def _validated_remote(self, answer: PipelineValidation) -> None:
        self._validated(list(answer.issues))
        if answer.valid:
            order = " → ".join(answer.nodes)
            self.status.setText(f"Valid on the API: pipeline {answer.name!r} runs {order}.")

    def _published(self, version: PipelineVersion) -> None:
        self.editor.set_issues([])
        self.status.setText(
            f"Published pipeline {version.name!r} as version {version.id} (active)."
        )
        self.published.emit(version)
        api = self.api
        if api is not None:  # the drop-down shows the new version, active
            self.runner.submit(
                lambda: api.pipelines(limit=VERSIONS_LISTED),
                on_done=self._list_versions,
                on_error=self._call_failed,
                name="pipeline versions",
            )

    def _call_failed(self, err: BaseException) -> None:
        if isinstance(err, ValidationFailed) and any(i.line is not None for i in err.issues):
            self._validated(list(err.issues))
            self.status.setText(f"Not published: {self.status.text()}")
            return
        message = str(err) if isinstance(err, ApiError) else f"{type(err).__name__}: {err}"
        self._fail(message)

    def _fail(self, message: str) -> None:
        logger.warning("pipeline editor: %s", message)
        self.status.setText(message)
        self.failed.emit(message)
