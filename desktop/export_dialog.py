"""The export's progress dialog: runs the dataset export off the UI thread.

:func:`lensflow.desktop.export.export_dataset` does the work.

The dialog shows what the export is doing (listing, writing n of N), and its Cancel button
sets the export's cancel event: the export stops at the next crop and removes what it had
written. A failure is shown in a message box with the error's own text; the dialog never
blocks the UI thread on the network or the disk.
"""

from __future__ import annotations

import logging
import threading

from PySide6.QtCore import QObject, Qt, QThread, Signal
from PySide6.QtWidgets import QMessageBox, QProgressDialog, QWidget

from lensflow.desktop.export import (
    ExportCancelledError,
    ExportOptions,
    ExportProgress,
    ExportSource,
    ExportSummary,
    export_dataset,
)

logger = logging.getLogger(__name__)


class ExportThread(QThread):
    """Runs one export; reports through signals, which Qt delivers on the UI thread.

    Signals:
        progressed: An :class:`ExportProgress`.
        succeeded: The :class:`ExportSummary`.
        failed: The error's message (not emitted on cancel).
        cancelled: The export stopped on request and left nothing behind.

    """

    progressed = Signal(object)
    succeeded = Signal(object)
    failed = Signal(str)
    cancelled = Signal()

    def __init__(
        self, source: ExportSource, options: ExportOptions, parent: QObject | None = None
    ) -> None:
        """Prepare the export of ``options`` from ``source``; :meth:`start` runs it."""
        super().__init__(parent)
        self.source = source
        self.options = options
        self.cancel_event = threading.Event()

    def cancel(self) -> None:
        """Ask the export to stop at the next crop."""
        self.cancel_event.set()

    def run(self) -> None:
        """The export, on this thread; every outcome ends in exactly one signal."""
        try:
            summary = export_dataset(
                self.source, self.options, progress=self.progressed.emit, cancel=self.cancel_event
            )
        except ExportCancelledError:
            self.cancelled.emit()
        except Exception as err:  # every failure must reach the operator
            logger.exception("export to %s failed", self.options.out_dir)
            self.failed.emit(str(err) or type(err).__name__)
        else:
            self.succeeded.emit(summary)


class ExportDialog(QProgressDialog):
    """A modal progress dialog around one export; :meth:`start` begins it.

    Attributes:
        summary: What was written, once the export succeeded.
        error: The failure's message, once it failed.
        was_cancelled: Whether the export stopped on the operator's request.

    """

    finished_export = Signal()
    """Emitted once the export ended, however it ended (after any message box)."""

    def __init__(
        self,
        source: ExportSource,
        options: ExportOptions,
        parent: QWidget | None = None,
        *,
        show_messages: bool = True,
    ) -> None:
        """Prepare the dialog.

        Args:
            source: The API client.
            options: What to export and where.
            parent: The parent window.
            show_messages: Show the outcome in a message box (off in tests that read the
                outcome from the attributes instead).

        """
        super().__init__("Listing labelled crops…", "Cancel", 0, 0, parent)
        self.setWindowTitle("Export dataset")
        self.setWindowModality(Qt.WindowModality.WindowModal)
        self.setAutoClose(False)
        self.setAutoReset(False)
        self.setMinimumDuration(0)
        self.summary: ExportSummary | None = None
        self.error: str | None = None
        self.was_cancelled = False
        self.show_messages = show_messages
        self.thread_ = ExportThread(source, options, self)
        self.thread_.progressed.connect(self._on_progress)
        self.thread_.succeeded.connect(self._on_success)
        self.thread_.failed.connect(self._on_failure)
        self.thread_.cancelled.connect(self._on_cancelled)
        self.canceled.connect(self._request_cancel)

    def start(self) -> None:
        """Show the dialog and start the export."""
        self.show()
        self.thread_.start()

    def is_running(self) -> bool:
        """Whether the export thread still runs."""
        return self.thread_.isRunning()

    def _request_cancel(self) -> None:
        if self.thread_.isRunning():
            self.setLabelText("Cancelling… removing the partial export")
            self.thread_.cancel()

    def _on_progress(self, progress: ExportProgress) -> None:
        if progress.phase == "listing":
            self.setRange(0, 0)
            self.setLabelText(f"Listing labelled crops… {progress.done} found")
        elif progress.phase == "writing" and progress.total:
            self.setRange(0, progress.total)
            self.setValue(progress.done)
            self.setLabelText(f"Writing crop {progress.done} of {progress.total}…")
        else:
            self.setLabelText("Finishing…")

    def _on_success(self, summary: ExportSummary) -> None:
        self.summary = summary
        self._end()
        if self.show_messages:
            missing = f"\n{len(summary.missing)} crops had no JPEG and were skipped." * bool(
                summary.missing
            )
            QMessageBox.information(
                self.parentWidget(),
                "Export done",
                f"Exported {sum(summary.counts.values())} crops "
                f"({summary.counts['train']} train, {summary.counts['val']} val) in "
                f"{len(summary.classes)} classes to\n{summary.path}{missing}",
            )
        self.finished_export.emit()

    def _on_failure(self, message: str) -> None:
        self.error = message
        self._end()
        if self.show_messages:
            QMessageBox.critical(
                self.parentWidget(), "Export failed", f"{message}\n\nNothing was written."
            )
        self.finished_export.emit()

    def _on_cancelled(self) -> None:
        self.was_cancelled = True
        self._end()
        self.finished_export.emit()

    def _end(self) -> None:
        self.thread_.wait()
        self.hide()
