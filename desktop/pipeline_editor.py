"""Edit the cloud's pipeline DAG (``configs/pipeline.yaml``) with its problems at their lines.

The page works on a local file (open, edit, validate, save); validation is the workers' own
(:func:`lensflow.shared.dag.compiler.compile_pipeline`: schema, unknown or duplicate nodes, cycles,
conditions, plugin classes and their params), run off the UI thread. Connected to an API it
can also validate with the API (the server's plugins, e.g. model paths that exist there) and
publish: store the text as a pipeline version and make it the active one of its name
(``/v1/pipelines``). Each problem is shown at its line either way.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from lensflow.desktop.api_types import ConfigIssue
from lensflow.desktop.client_pipelines import PipelineValidation, PipelineVersion
from lensflow.desktop.errors import ApiError, ValidationFailed
from lensflow.desktop.workers import Runner
from lensflow.desktop.yaml_editor import YamlEditor
from lensflow.shared.config.pipeline import PipelineConfig
from lensflow.shared.config.yaml_loader import YamlDocument, load_model
from lensflow.shared.dag.compiler import compile_pipeline
from lensflow.shared.errors import ConfigError

logger = logging.getLogger(__name__)


def pipeline_issues(text: str, *, source: str = "pipeline.yaml") -> list[ConfigIssue]:
    """Every problem of a pipeline DAG text, with its line; empty if the workers accept it."""
    try:
        doc = YamlDocument(text, path=source)
        compile_pipeline(load_model(PipelineConfig, doc), doc=doc)
    except ConfigError as err:
        return [
            ConfigIssue(
                message=issue.message,
                field=issue.field,
                line=issue.location.line if issue.location else None,
                column=issue.location.column if issue.location else None,
            )
            for issue in err.issues
        ]
    return []


class PipelineApi(Protocol):
    """What the page needs of the API (:class:`lensflow.desktop.client.ApiClient` is one)."""

    def validate_pipeline(self, text: str) -> PipelineValidation:
        """Compile a DAG text on the server."""

    def create_pipeline(self, text: str, *, activate: bool = False) -> PipelineVersion:
        """Store a DAG text as a version, optionally active."""


class PipelineEditor(QWidget):
    """The pipeline page: a YAML editor on a local file; with an API, validate there and publish.

    Signals:
        validated: The issues found (a list; empty when valid), locally or by the API.
        published: The stored, now active, version (a :class:`PipelineVersion`).
        failed: A file could not be read or written, or a call failed; the message.

    """

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
        """Build the page (no file open); ``api`` enables validating with it and publishing."""
        super().__init__(parent)
        self.api = api
        self.runner = runner or Runner(threads=1, parent=self)
        self.path: Path | None = None
        self.editor = YamlEditor()
        self.status = QLabel("Open a pipeline file (configs/pipeline.yaml).")
        self.status.setWordWrap(True)
        buttons = QHBoxLayout()
        for text, slot in (
            ("&Open…", self._choose),
            ("&Validate", self.validate),
            ("&Save", self.save),
        ):
            button = QPushButton(text)
            button.clicked.connect(slot)
            buttons.addWidget(button)
        self.remote_buttons: list[QPushButton] = []
        if api is not None:
            for text, slot, tip in (
                ("Validate with the &API", self.validate_remote, "Compile it on the server."),
                ("&Publish", self.publish, "Store it as a version and make it the active one."),
            ):
                button = QPushButton(text)
                button.setToolTip(tip)
                button.clicked.connect(slot)
                buttons.addWidget(button)
                self.remote_buttons.append(button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(self.editor, 1)
        layout.addWidget(self.status)

    def open(self, path: Path) -> None:
        """Load a pipeline file into the editor and validate it."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            self._fail(f"Cannot read {path}: {err.strerror or err}")
            return
        self.path = path
        self.editor.set_text(text)
        self.validate()

    def validate(self) -> None:
        """Validate the text off the UI thread; the issues appear at their lines."""
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
        """Store the text as a pipeline version and make it the active one of its name."""
        api = self._connected()
        if api is None:
            return
        text = self.editor.text()
        self.status.setText("Publishing…")
        self.runner.submit(
            lambda: api.create_pipeline(text, activate=True),
            on_done=self._published,
            on_error=self._call_failed,
            name="publish pipeline",
        )

    def save(self) -> None:
        """Write the text back to the file (the workers load it at their next start)."""
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
        self.status.setText(f"Saved {self.path}; restart the workers to use it.")

    def _choose(self) -> None:
        chosen, _ = QFileDialog.getOpenFileName(self, "Open pipeline", "", "YAML (*.yaml *.yml)")
        if chosen:
            self.open(Path(chosen))

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
            f"Published pipeline {version.name!r} as version {version.id} (active); "
            "workers read their local file until they follow the API."
        )
        self.published.emit(version)

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
