"""Edit the cloud's pipeline DAG file (``configs/pipeline.yaml``) with its problems at their lines.

The cloud API has no pipeline route, so this page works on a local file: open, edit,
validate, save. Validation is the workers' own (:func:`shared.dag.compiler.compile_pipeline`:
schema, unknown or duplicate nodes, cycles, conditions, plugin classes and their params),
run off the UI thread; each problem is shown at its line.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop.api_types import ConfigIssue
from desktop.workers import Runner
from desktop.yaml_editor import YamlEditor
from shared.config.pipeline import PipelineConfig
from shared.config.yaml_loader import YamlDocument, load_model
from shared.dag.compiler import compile_pipeline
from shared.errors import ConfigError

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


class PipelineEditor(QWidget):
    """The pipeline page: a YAML editor on a local file, validate and save.

    Signals:
        validated: The issues found (a list; empty when valid).
        failed: A file could not be read or written; the message.

    """

    validated = Signal(object)
    failed = Signal(str)

    def __init__(self, *, runner: Runner | None = None, parent: QWidget | None = None) -> None:
        """Build the page (no file open)."""
        super().__init__(parent)
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

    def _fail(self, message: str) -> None:
        logger.warning("pipeline editor: %s", message)
        self.status.setText(message)
        self.failed.emit(message)
