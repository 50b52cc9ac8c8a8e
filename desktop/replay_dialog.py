"""Replay before activate: what a pipeline version would change, shown before it goes live.

The dialog queues ``POST /v1/pipelines/{id}/replay`` (the newest stored crops, run through the
version in the API's replay process), follows its progress, and shows the report: per node the
crops compared, labels changed, newly run and newly skipped, errors, and for the chosen node
the old → new table with example crops. Only then does "Activate" make the version the one the
workers run.
"""

from __future__ import annotations

from typing import Any, Protocol

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from lensflow.desktop.client_pipelines import PipelineVersion, ReplayJob
from lensflow.desktop.errors import ApiError
from lensflow.desktop.workers import Runner

POLL_MS = 500
REPLAY_LIMIT = 500
COUNTS = ("compared", "changed", "newly_run", "newly_skipped", "errors")
HEADERS = ("node", "compared", "changed", "newly run", "newly skipped", "errors")
CONFUSION_ROWS = 30


class ReplayApi(Protocol):
    """The calls the dialog makes."""

    def replay_pipeline(self, version_id: int, *, limit: int = ...) -> ReplayJob: ...  # noqa: D102

    def replay_job(self, job_id: int) -> ReplayJob: ...  # noqa: D102

    def activate_pipeline(self, version_id: int) -> PipelineVersion: ...  # noqa: D102


class ReplayDialog(QDialog):
    """Replays a stored version, shows the report, activates on request.

    Signals:
        activated: The version, now active (a :class:`PipelineVersion`).
        reported: The replay job once it ended (done or failed), or None without crops.

    """

    activated = Signal(object)
    reported = Signal(object)

    def __init__(
        self,
        api: ReplayApi,
        version: PipelineVersion,
        *,
        runner: Runner,
        limit: int = REPLAY_LIMIT,
        parent: QWidget | None = None,
    ) -> None:
        """Build the dialog; :meth:`start` queues the replay."""
        super().__init__(parent)
        self.api, self.version, self.runner, self.limit = api, version, runner, limit
        self.job: ReplayJob | None = None
        self.setWindowTitle(f"Replay {version.name} version {version.id} before activating")
        self.status = QLabel("Queuing the replay…")
        self.status.setWordWrap(True)
        self.progress = QProgressBar()
        self.nodes = QTableWidget(0, len(HEADERS))
        self.nodes.setHorizontalHeaderLabels(list(HEADERS))
        self.nodes.verticalHeader().setVisible(False)
        self.nodes.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.nodes.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.nodes.itemSelectionChanged.connect(self._show_confusion)
        self.confusion_title = QLabel("")
        self.confusion = QTableWidget(0, 3)
        self.confusion.setHorizontalHeaderLabels(["stored", "this version", "crops"])
        self.confusion.verticalHeader().setVisible(False)
        self.confusion.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.examples = QLabel("")
        self.examples.setWordWrap(True)
        self.examples.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.activate_button = QPushButton(f"&Activate version {version.id}")
        self.activate_button.setEnabled(False)
        self.activate_button.clicked.connect(self.activate)
        close = QPushButton("&Close")
        close.clicked.connect(self.reject)
        close.setDefault(True)  # Enter does not activate by accident
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._poll)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.activate_button)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        for widget in (self.status, self.progress, self.nodes, self.confusion_title):
            layout.addWidget(widget)
        layout.addWidget(self.confusion, 1)
        layout.addWidget(self.examples)
        layout.addLayout(buttons)
        self.resize(780, 640)

    def start(self) -> None:
        """Queue the replay of the version over the newest stored crops."""
        version_id, limit = self.version.id, self.limit
        self.runner.submit(
            lambda: self.api.replay_pipeline(version_id, limit=limit),
            on_done=self._queued,
            on_error=self._queue_failed,
            name="replay pipeline",
        )

    def activate(self) -> None:
        """Make the version the active one (the workers swap to it between batches)."""
        self.activate_button.setEnabled(False)
        self.status.setText(f"Activating version {self.version.id}…")
        version_id = self.version.id
        self.runner.submit(
            lambda: self.api.activate_pipeline(version_id),
            on_done=self._activated,
            on_error=self._activation_failed,
            name="activate pipeline",
        )

    def done(self, result: int) -> None:  # noqa: D102 - QDialog's, stops the polling too
        self._timer.stop()
        super().done(result)

    # -- outcomes (UI thread) -----------------------------------------------------------------

    def _queued(self, job: ReplayJob) -> None:
        self.job = job
        self.status.setText(f"Replaying over the newest {job.total} stored crops…")
        self.progress.setRange(0, max(job.total, 1))
        self._timer.start()

    def _queue_failed(self, err: BaseException) -> None:
        if isinstance(err, ApiError) and err.code == "no_crops":
            self.progress.setRange(0, 1)
            self.progress.setValue(1)
            self.status.setText(
                "No stored crops to replay against yet: activating changes new crops only."
            )
            self.activate_button.setEnabled(True)
            self.reported.emit(None)
            return
        self.status.setText(f"The replay could not be queued: {err}")
        self.activate_button.setText(f"&Activate version {self.version.id} anyway")
        self.activate_button.setEnabled(True)

    def _poll(self) -> None:
        job = self.job
        if job is None:
            return
        self._timer.stop()  # one call at a time; restarted when it answers
        job_id = job.id
        self.runner.submit(
            lambda: self.api.replay_job(job_id),
            on_done=self._progressed,
            on_error=self._queue_failed,
            name="replay progress",
        )

    def _progressed(self, job: ReplayJob) -> None:
        self.job = job
        self.progress.setValue(job.done)
        if job.state in ("queued", "running"):
            self.status.setText(f"Replaying: {job.done} of {job.total} crops…")
            if self.isVisible():
                self._timer.start()
            return
        if job.state == "failed":
            self.status.setText(
                f"The replay failed: {job.error}. The workers would keep their version if they "
                "cannot load this one either."
            )
            self.activate_button.setText(f"&Activate version {self.version.id} anyway")
        else:
            self._show_report(job.report or {})
        self.activate_button.setEnabled(True)
        self.reported.emit(job)

    def _show_report(self, report: dict[str, Any]) -> None:
        nodes: dict[str, dict[str, Any]] = report.get("nodes", {})
        changed = sum(n["changed"] + n["newly_run"] + n["newly_skipped"] for n in nodes.values())
        self.status.setText(
            f"Replayed {report.get('crops', 0)} crops in {report.get('seconds', 0):.1f} s: "
            f"{changed} node outcomes would change (nothing was written). Pick a node for its "
            "stored → new table."
        )
        self.nodes.setRowCount(len(nodes))
        for row, (name, counts) in enumerate(nodes.items()):
            label = name if counts.get("in_candidate", True) else f"{name} (removed)"
            self.nodes.setItem(row, 0, QTableWidgetItem(label))
            for column, key in enumerate(COUNTS, start=1):
                item = QTableWidgetItem(str(counts.get(key, 0)))
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.nodes.setItem(row, column, item)
        self.nodes.resizeColumnsToContents()
        self.nodes.resizeRowsToContents()
        height = self.nodes.horizontalHeader().height() + 2 * self.nodes.frameWidth()
        self.nodes.setFixedHeight(height + sum(self.nodes.rowHeight(r) for r in range(len(nodes))))
        busiest = max(
            range(len(nodes)),
            key=lambda i: sum(list(nodes.values())[i][k] for k in COUNTS[1:4]),
            default=None,
        )
        if busiest is not None:
            self.nodes.selectRow(busiest)

    def _show_confusion(self) -> None:
        report = self.job.report if self.job is not None else None
        rows = self.nodes.selectionModel().selectedRows()
        if not report or not rows:
            return
        name, counts = list(report["nodes"].items())[rows[0].row()]
        self.confusion_title.setText(f"{name}: stored → this version")
        table = counts["confusion"][:CONFUSION_ROWS]
        self.confusion.setRowCount(len(table))
        for row, entry in enumerate(table):
            for column, key in enumerate(("old", "new", "count")):
                self.confusion.setItem(row, column, QTableWidgetItem(str(entry[key])))
        self.confusion.resizeColumnsToContents()
        examples = [
            f"{kind.replace('_', ' ')}: {', '.join(ids[:2])}"
            for kind, ids in counts["examples"].items()
        ]
        self.examples.setText("Example crops — " + "; ".join(examples) if examples else "")

    def _activated(self, version: PipelineVersion) -> None:
        self.activated.emit(version)
        self.accept()

    def _activation_failed(self, err: BaseException) -> None:
        self.status.setText(f"Not activated: {err}")
        self.activate_button.setEnabled(True)
