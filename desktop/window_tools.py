"""The main window's File > Export and File > Configuration.

Export asks for a folder and exports the labelled crops that the window's current filters
list, labelled for the window's relabel node (:class:`~lensflow.desktop.export_dialog.ExportDialog`:
progress, cancel, YOLO and COCO). Configuration opens one
:class:`~lensflow.desktop.config_window.ConfigWindow` per connection (edge configs and the pipeline
DAG
as tabs). Outcomes reach the window's status bar.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QFileDialog, QWidget

from lensflow.desktop.client import ApiClient
from lensflow.desktop.config_window import ConfigWindow
from lensflow.desktop.errors import ApiError
from lensflow.desktop.export import ExportOptions, dataset_folder
from lensflow.desktop.export_dialog import ExportDialog
from lensflow.desktop.models import ResultsModel
from lensflow.desktop.relabel import RelabelController
from lensflow.desktop.workers import Runner


class ToolHost(Protocol):
    """What the tools need of the window they serve (the main window provides it)."""

    client: ApiClient | None
    model: ResultsModel
    relabel: RelabelController
    runner: Runner

    def show_message(self, text: str) -> None:
        """Say ``text`` in the status bar."""

    def show_error(self, err: object) -> None:
        """Say what went wrong, in the window."""


_CANCEL_WAIT_MS = 3000


class WindowTools(QObject):
    """Export and configuration of one main window.

    Attributes:
        config_window: The configuration window of the current connection, once opened.
        export_dialog: The last export's progress dialog.

    """

    def __init__(self, window: ToolHost, *, parent: QWidget) -> None:
        """Serve ``window``'s menu actions; dialogs open over ``parent`` (the window itself)."""
        super().__init__(parent)
        self.window = window
        self.parent_widget = parent
        self.config_window: ConfigWindow | None = None
        self.export_dialog: ExportDialog | None = None

    def _client_for(self, title: str) -> ApiClient | None:
        client = self.window.client
        if client is None:
            message = f"{title} needs a connection: use File > Connect first."
            self.window.show_error(ApiError(message))
        return client

    # -- export -------------------------------------------------------------------------------

    def ask_export(self) -> None:
        """Ask for a folder (a new name creates it), then export what the filters list."""
        if self._client_for("Export") is None:
            return
        start = Path.home() / dataset_folder(Path.home()).name  # a new dated folder
        chosen, _filter = QFileDialog.getSaveFileName(
            self.parent_widget,
            "Export labelled crops (YOLO and COCO): choose or name a folder",
            str(start),
            "Dataset folder (*)",
            options=QFileDialog.Option.DontConfirmOverwrite,
        )
        if chosen:
            self.export_to(Path(chosen))

    def export_to(self, folder: Path, *, show_messages: bool = True) -> ExportDialog | None:
        """Export the current filters' labelled crops into ``folder`` (YOLO and COCO).

        The class of a crop is its label for the window's relabel node; the dataset goes
        into ``folder`` when that is empty, else into a new dated folder inside it.

        Args:
            folder: The folder the operator chose.
            show_messages: Show the outcome in a message box as well as the status bar.

        Returns:
            The running progress dialog (None without a connection).

        """
        client = self._client_for("Export")
        if client is None:
            return None
        options = ExportOptions(
            out_dir=dataset_folder(folder),
            query=self.window.model.query,
            node=self.window.relabel.node,
        )
        dialog = ExportDialog(client, options, self.parent_widget, show_messages=show_messages)
        dialog.finished_export.connect(lambda: self._export_finished(dialog))
        self.export_dialog = dialog
        dialog.start()
        return dialog

    def _export_finished(self, dialog: ExportDialog) -> None:
        if dialog.summary is not None:
            total = sum(dialog.summary.counts.values())
            self.window.show_message(f"Exported {total} crops to {dialog.summary.path}.")
        elif dialog.error is not None:
            self.window.show_error(ApiError(f"Export failed: {dialog.error}"))
        else:
            self.window.show_message("Export cancelled; nothing was written.")

    # -- configuration ------------------------------------------------------------------------

    def open_config(self) -> ConfigWindow | None:
        """Show the configuration window (edge configs, pipeline DAG) of this connection."""
        client = self._client_for("Configuration")
        if client is None:
            return None
        if self.config_window is None:
            self.config_window = ConfigWindow(
                client, runner=self.window.runner, parent=self.parent_widget
            )
        self.config_window.show()
        self.config_window.raise_()
        self.config_window.activateWindow()
        return self.config_window

    def drop_config_window(self) -> None:
        """Close and forget the configuration window (the connection changes)."""
        if self.config_window is not None:
            self.config_window.stop()
            self.config_window.close()
            self.config_window.deleteLater()
            self.config_window = None

    def shut_down(self) -> None:
        """The window closes: stop the config page's timer, cancel a running export."""
        if self.config_window is not None:
            self.config_window.stop()
            self.config_window.close()
        dialog = self.export_dialog
        if dialog is not None and dialog.is_running():
            dialog.thread_.cancel()
            dialog.thread_.wait(_CANCEL_WAIT_MS)
