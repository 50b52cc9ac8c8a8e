"""The review window: filter bar, grid or table, inspector, relabel strip and status bar.

Nothing here talks to the network on the UI thread: every API call goes through the
:class:`~lensflow.desktop.workers.Runner`, and every failure ends in the status bar's error line
(and
in :attr:`MainWindow.last_error`, which the tests read).

File > Export asks for a folder and exports the crops the current filters list
(:class:`~lensflow.desktop.export_dialog.ExportDialog`: progress, cancel); File > Configuration
opens
the :class:`~lensflow.desktop.config_window.ConfigWindow` (edge configs and the pipeline DAG as
tabs).
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QItemSelectionModel, QModelIndex, Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QInputDialog,
    QLabel,
    QMainWindow,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from lensflow.desktop.api_types import ResultItem
from lensflow.desktop.client import ApiClient
from lensflow.desktop.connect_dialog import ConnectDialog
from lensflow.desktop.errors import ApiError
from lensflow.desktop.filters import FilterBar
from lensflow.desktop.grid_view import GridView, ResultTable
from lensflow.desktop.inspector import Inspector
from lensflow.desktop.live import DEFAULT_INTERVAL_MS, LivePoller
from lensflow.desktop.models import ResultsModel
from lensflow.desktop.relabel import LabelBar, RelabelController
from lensflow.desktop.settings import Connection, SettingsStore
from lensflow.desktop.shortcut_sheet import ShortcutSheet, show_shortcut_sheet
from lensflow.desktop.theme import error_color
from lensflow.desktop.thumbs import DiskCache, ThumbnailLoader, default_cache_dir
from lensflow.desktop.window_tools import WindowTools
from lensflow.desktop.workers import Runner

logger = logging.getLogger(__name__)

INSPECT_DELAY_MS = 60
"""Holding an arrow key moves the selection quickly: inspect only where it rests."""


def describe(err: object) -> str:
    """An error as the operator reads it."""
    if isinstance(err, ApiError):
        return err.message
    return f"Unexpected error: {err} ({type(err).__name__})"


class MainWindow(QMainWindow):
    """The review app's window."""

    def __init__(
        self,
        settings: SettingsStore | None = None,
        *,
        cache_dir: Path | None = None,
        live_interval_ms: int = DEFAULT_INTERVAL_MS,
    ) -> None:
        """Build the window (not connected yet: call :meth:`connect_to` or :meth:`ask_connection`).

        Args:
            settings: Where the connection is remembered.
            cache_dir: The crop image cache folder (the user's cache folder by default).
            live_interval_ms: How often to poll for new results.

        """
        super().__init__()
        self.setWindowTitle("lensflow review")
        self.settings = settings or SettingsStore()
        self.client: ApiClient | None = None
        self.connection: Connection | None = None  # the one in use, or the last one tried
        self.last_error = ""
        self.closing = False
        self.runner = Runner(threads=4, parent=self)
        self.thumbs = ThumbnailLoader(None, cache=DiskCache(cache_dir or default_cache_dir()))
        self.model = ResultsModel(self.runner, thumbs=self.thumbs, parent=self)
        self.filters = FilterBar()
        self.grid = GridView(self.model)
        self.table = ResultTable(self.model)
        self.table.setSelectionModel(self.grid.selectionModel())
        self.views = QStackedWidget()
        self.views.addWidget(self.grid)
        self.views.addWidget(self.table)
        self.inspector = Inspector(self.runner, self.thumbs)
        self.relabel = RelabelController(self.runner, self.model, self.selected_items)
        self.label_bar = LabelBar(self.relabel)
        self.live = LivePoller(self.runner, self.model, interval_ms=live_interval_ms)
        self.tools = WindowTools(self, parent=self)
        self._inspect_timer = QTimer(self)
        self._inspect_timer.setSingleShot(True)
        self._inspect_timer.setInterval(INSPECT_DELAY_MS)
        self._inspect_timer.timeout.connect(self._inspect_current)
        self._build_layout()
        self._build_status()
        self._build_menus()
        self._build_shortcuts()
        self._wire()
        self.resize(1400, 860)

    # -- layout -------------------------------------------------------------------------------

    def _build_layout(self) -> None:
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.views)
        splitter.addWidget(self.inspector)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        splitter.setSizes([860, 520])
        central = QWidget()
        column = QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.filters)
        column.addWidget(self.label_bar)
        column.addWidget(splitter, 1)
        self.setCentralWidget(central)

    def _build_status(self) -> None:
        self.error_label = QLabel("")
        self.count_label = QLabel("not connected")
        self.statusBar().addWidget(self.error_label, 1)
        self.statusBar().addPermanentWidget(self.count_label)

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self._action(file_menu, "&Connect…", self.ask_connection, "Ctrl+K")
        self._action(file_menu, "&Export…", self.tools.ask_export, "Ctrl+E")
        self._action(file_menu, "Con&figuration…", self.tools.open_config, "Ctrl+Shift+F")
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        edit = self.menuBar().addMenu("&Edit")
        self._action(edit, "&Undo relabel", self.relabel.undo, QKeySequence.StandardKey.Undo)
        self._action(edit, "&Accept label", self._accept, "A")
        self._action(edit, "&Reject", self._reject, "R")
        self._action(edit, "Relabel &as…", self.ask_label, "L")
        view = self.menuBar().addMenu("&View")
        self._action(view, "&Grid", lambda: self.show_view(0), "Ctrl+1")
        self._action(view, "&Table", lambda: self.show_view(1), "Ctrl+2")
        self._action(view, "&Refresh", self.model.refresh, QKeySequence.StandardKey.Refresh)
        self._action(view, "&Filters", self.filters.camera.setFocus, "Ctrl+F")
        # -- help: the shortcut sheet lists every key above (and any added later) --
        help_menu = self.menuBar().addMenu("&Help")
        sheet = self._action(help_menu, "&Keyboard shortcuts…", self.show_shortcuts)
        sheet.setShortcuts([QKeySequence("?"), QKeySequence(QKeySequence.StandardKey.HelpContents)])

    def _action(
        self, menu: object, text: str, slot: object, shortcut: object | None = None
    ) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))  # type: ignore[call-overload]
        action.triggered.connect(slot)
        self.addAction(action)
        menu.addAction(action)  # type: ignore[attr-defined]
        return action

    def _build_shortcuts(self) -> None:
        for number in range(1, 10):
            shortcut = QShortcut(QKeySequence(str(number)), self)
            shortcut.activated.connect(lambda n=number: self._number_key(n))

    def _wire(self) -> None:
        self.filters.query_changed.connect(self.model.set_query)
        self.model.page_loaded.connect(self._page_loaded)
        self.model.load_failed.connect(self.show_error)
        self.model.rowsInserted.connect(lambda *_: self._update_count())
        self.model.modelReset.connect(self._update_count)
        self.grid.selectionModel().currentChanged.connect(lambda *_: self._inspect_timer.start())
        self.relabel.message.connect(self.show_message)
        self.relabel.failed.connect(self.show_error)
        self.relabel.relabelled.connect(lambda _n: self._refresh_inspector())
        self.inspector.failed.connect(self.show_error)
        self.inspector.relabel_similar.connect(self.ask_label_for)
        # the inspector follows the list: refreshed after an undo, empty states, similar crops
        self.inspector.follow(self.model, select_row=self.select_row)
        self.live.arrived.connect(lambda n: self.show_message(f"{n} new result(s)."))
        self.live.failed.connect(self.show_error)
        self.thumbs.failed.connect(
            lambda crop_id, why: logger.debug("no image %s: %s", crop_id, why)
        )

    def show_shortcuts(self) -> ShortcutSheet:
        """Open the sheet of every key the window has (``?``)."""
        return show_shortcut_sheet(self)

    # -- connection ---------------------------------------------------------------------------

    def ask_connection(self, error: str = "") -> ConnectDialog:
        """Open the connect dialog (not modal to the event loop: it returns at once).

        It is filled with the connection in use or last tried (``--api``), else the
        remembered one, and says where a remembered key goes.
        """
        dialog = ConnectDialog(
            self.runner,
            initial=self.connection or self.settings.load(),
            key_destination=self.settings.key_destination(),
            parent=self,
        )
        if error:
            dialog.show_error(error)
        dialog.connected.connect(self._connected_by_dialog)
        dialog.open()
        return dialog

    def connect_to(
        self, url: str, key: str, *, remember: bool = False, ask_on_failure: bool = False
    ) -> None:
        """Connect to ``url`` with ``key``: checked off the UI thread, then the list loads.

        Args:
            url: The API URL.
            key: The API key.
            remember: Save the connection once it works.
            ask_on_failure: Open the connect dialog, with the reason, if it fails.

        """
        try:
            client = ApiClient(url, key=key)
        except ValueError as err:
            self.show_error(ApiError(str(err)))
            return
        self.show_message(f"Connecting to {client.base_url}…")
        connection = Connection(url=url, key=key)
        self.connection = connection  # a retry starts from it, not from :8080
        self.runner.submit(
            client.check,
            on_done=lambda _: self.use_client(client, connection, remember=remember),
            on_error=lambda err: self._connect_failed(client, err, ask=ask_on_failure),
            name="connect",
        )

    def _connected_by_dialog(self, client: ApiClient, connection: Connection) -> None:
        dialog = self.sender()
        remember = isinstance(dialog, ConnectDialog) and dialog.remember.isChecked()
        self.use_client(client, connection, remember=remember)

    def _connect_failed(self, client: ApiClient, err: Exception, *, ask: bool) -> None:
        client.close()
        self.show_error(err)
        self.count_label.setText("not connected")
        if ask:
            self.ask_connection(describe(err))

    def use_client(self, client: ApiClient, connection: Connection, *, remember: bool) -> None:
        """Use a checked client: load the results, start live updates."""
        if self.client is not None:
            self.client.close()
        self.tools.drop_config_window()  # its pages talk to the old connection
        self.client = client
        self.connection = connection
        self.relabel.client = client
        self.inspector.client = client
        self.live.client = client
        self.thumbs.reset(client.crop_jpeg)
        self.clear_error()
        where = ""
        if remember:
            try:
                saved = self.settings.save(connection)
                where = f" The key is saved in {saved.where}."
            except OSError as err:
                self.show_error(ApiError(f"The key could not be saved: {err}"))
        self.show_message(f"Connected to {client.base_url}.{where}")
        self.setWindowTitle(f"lensflow review · {client.base_url}")
        self.model.set_source(
            lambda query, cursor, limit: client.results(query, cursor=cursor, limit=limit)
        )
        self.model.set_query(self.filters.query())
        self.live.start()
        (self.table if self.views.currentIndex() else self.grid).setFocus()  # keys relabel

    # -- messages -----------------------------------------------------------------------------

    def show_message(self, text: str) -> None:
        """A passing message in the status bar."""
        self.statusBar().showMessage(text, 8000)

    def show_error(self, err: object) -> None:
        """A failure, shown until the next success, and logged."""
        if self.closing:
            return  # requests cut short by the shutdown
        text = describe(err)
        self.last_error = text
        self.error_label.setStyleSheet(f"color: {error_color().name()}; font-weight: bold;")
        self.error_label.setText(text)
        self.error_label.setToolTip(text)
        logger.warning("%s", text)

    def clear_error(self) -> None:
        """Remove the error line."""
        self.last_error = ""
        self.error_label.setText("")

    def _update_count(self) -> None:
        rows = self.model.rowCount()
        more = "" if self.model.exhausted else "+"
        self.count_label.setText(f"{rows:,}{more} results")

    def _page_loaded(self, _rows: int) -> None:
        self.clear_error()
        self._update_count()
        self.relabel.refresh_shortcuts()
        self.label_bar.set_nodes(self.model.nodes())
        if not self.grid.selectionModel().currentIndex().isValid() and self.model.rowCount():
            self.select_row(0)

    # -- selection and keys -------------------------------------------------------------------

    def show_view(self, which: int) -> None:
        """Show the grid (0) or the table (1), keeping the selection."""
        self.views.setCurrentIndex(which)
        (self.table if which else self.grid).setFocus()

    def selected_items(self) -> list[ResultItem]:
        """The selected results, in row order (the current one if nothing is selected)."""
        selection = self.grid.selectionModel()
        rows = sorted({index.row() for index in selection.selectedIndexes()})
        if not rows and selection.currentIndex().isValid():
            rows = [selection.currentIndex().row()]
        return [self.model.item(row) for row in rows if row < self.model.rowCount()]

    def select_row(self, row: int) -> None:
        """Make ``row`` current and the only selected row."""
        index = self.model.index(row, 0)
        flags = (
            QItemSelectionModel.SelectionFlag.ClearAndSelect
            | QItemSelectionModel.SelectionFlag.Rows
        )
        self.grid.selectionModel().setCurrentIndex(index, flags)
        self.grid.scrollTo(index)
        self.table.scrollTo(index)

    def _advance_if_single(self, items: list[ResultItem]) -> None:
        """After acting on one crop, move to the next (keyboard flow)."""
        if len(items) != 1:
            return
        row = self.model.row_of(items[0].crop_id)
        if row is not None and row + 1 < self.model.rowCount():
            self.select_row(row + 1)

    def _number_key(self, number: int) -> None:
        items = self.selected_items()
        self.relabel.number_key(number)
        if number <= len(self.relabel.shortcuts):
            self._advance_if_single(items)

    def _accept(self) -> None:
        items = self.selected_items()
        self.relabel.accept()
        self._advance_if_single(items)

    def _reject(self) -> None:
        items = self.selected_items()
        self.relabel.reject()
        self._advance_if_single(items)

    def ask_label(self) -> None:
        """Ask for a label to set on the selection."""
        self.ask_label_for([item.crop_id for item in self.selected_items()])

    def ask_label_for(self, crop_ids: list[str]) -> None:
        """Ask for a label to set on ``crop_ids`` (e.g. a crop and its similar ones)."""
        if not crop_ids:
            self.show_message("Select a crop first.")
            return
        dialog = QInputDialog(self)
        dialog.setWindowTitle("Relabel")
        dialog.setLabelText(f"Label for {len(crop_ids)} crop(s) ({self.relabel.node}):")
        dialog.setComboBoxItems(self.relabel.shortcuts)
        dialog.setComboBoxEditable(True)
        dialog.textValueSelected.connect(lambda label: self.relabel.relabel(crop_ids, label=label))
        dialog.open()

    def _inspect_current(self) -> None:
        index: QModelIndex = self.grid.selectionModel().currentIndex()
        item = self.model.item(index.row()) if index.isValid() else None
        self.inspector.show_item(item)

    def _refresh_inspector(self) -> None:
        current = self.inspector.item
        row = self.model.row_of(current.crop_id) if current else None
        if row is not None:
            self.inspector.refresh(self.model.item(row))

    # -- shutdown -----------------------------------------------------

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt API
        """Stop polling and wait briefly for requests in flight."""
        self.closing = True
        self.live.stop()
        self.tools.shut_down()
        self.thumbs.cancel_pending()
        self.runner.wait(3000)
        self.thumbs.runner.wait(3000)
        if self.client is not None:
            self.client.close()
            self.client = self.relabel.client = self.inspector.client = self.live.client = None
        super().closeEvent(event)
