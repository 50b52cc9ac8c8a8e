"""The review window: filter bar, grid or table, inspector, relabel strip and status bar.

The keys (1-9 from the node's label schema, A accept, R reject, U unsure, L label, N next
unreviewed, Ctrl+Z undo) and honest saves are the
:class:`~lensflow.desktop.review_flow.ReviewFlow`'s; quitting while decisions wait to be stored
asks first.

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
from PySide6.QtGui import QCloseEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QLabel,
    QMainWindow,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from lensflow.desktop.api_review_types import Facets, ReviewItem
from lensflow.desktop.client import ApiClient
from lensflow.desktop.connect_dialog import ConnectDialog
from lensflow.desktop.errors import ApiError, describe
from lensflow.desktop.filters import FilterBar
from lensflow.desktop.grid_view import GridView, ResultTable
from lensflow.desktop.inspector import Inspector
from lensflow.desktop.live import DEFAULT_INTERVAL_MS, LivePoller
from lensflow.desktop.models import ResultsModel
from lensflow.desktop.review_flow import ReviewFlow
from lensflow.desktop.settings import Connection, SettingsStore
from lensflow.desktop.shortcut_sheet import ShortcutSheet, show_shortcut_sheet
from lensflow.desktop.theme import error_color
from lensflow.desktop.thumbs import DiskCache, ThumbnailLoader, default_cache_dir
from lensflow.desktop.window_menus import add_menu
from lensflow.desktop.window_tools import WindowTools
from lensflow.desktop.workers import Runner

logger = logging.getLogger(__name__)

INSPECT_DELAY_MS = 60
"""Holding an arrow key moves the selection quickly: inspect only where it rests."""


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
        self.flow = ReviewFlow(self, parent=self, dialog_parent=self)
        self.relabel = self.flow.relabel
        self.label_bar = self.flow.label_bar
        self.quit_choice: object | None = None  # a QMessageBox button: tests answer the question
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
        self.statusBar().addPermanentWidget(self.label_bar.pending)
        self.statusBar().addPermanentWidget(self.count_label)

    def _build_menus(self) -> None:
        std = QKeySequence.StandardKey
        add_menu(self, "&File", [
            ("&Connect…", self.ask_connection, "Ctrl+K"),
            ("&Export…", self.tools.ask_export, "Ctrl+E"),
            ("Con&figuration…", self.tools.open_config, "Ctrl+Shift+F"),
            None,
            ("&Quit", self.close, std.Quit),
        ])  # fmt: skip
        flow = self.flow
        add_menu(self, "&Edit", [
            ("&Undo", self.relabel.undo, std.Undo),
            ("&Accept the model's label", flow.accept, "A"),
            ("&Reject the detection", flow.reject, "R"),
            ("Mark &unsure", flow.unsure, "U"),
            ("Relabel &as…", flow.ask_label, "L"),
            ("&Next unreviewed", flow.next_unreviewed, "N"),
            ("Relabel all &similar…", self.ask_similar, "Ctrl+Shift+L"),
        ])  # fmt: skip
        add_menu(self, "&View", [
            ("&Grid", lambda: self.show_view(0), "Ctrl+1"),
            ("&Table", lambda: self.show_view(1), "Ctrl+2"),
            ("&Refresh", self.refresh, std.Refresh),
            ("&Filters", self.filters.camera.setFocus, "Ctrl+F"),
        ])  # fmt: skip
        # the shortcut sheet lists every key above (and any added later)
        (sheet,) = add_menu(self, "&Help", [("&Keyboard shortcuts…", self.show_shortcuts, None)])
        sheet.setShortcuts([QKeySequence("?"), QKeySequence(std.HelpContents)])

    def _build_shortcuts(self) -> None:
        for number in range(1, 10):
            shortcut = QShortcut(QKeySequence(str(number)), self)
            shortcut.activated.connect(lambda n=number: self.flow.number_key(n))

    def _wire(self) -> None:
        self.filters.query_changed.connect(self.model.set_query)
        self.model.page_loaded.connect(self._page_loaded)
        self.model.load_failed.connect(self.show_error)
        self.model.rowsInserted.connect(lambda *_: self._update_count())
        self.model.modelReset.connect(self._update_count)
        self.grid.selectionModel().currentChanged.connect(lambda *_: self._inspect_timer.start())
        self.relabel.failed.connect(self.show_error)
        self.relabel.decided.connect(lambda _d: self._refresh_inspector())
        self.flow.queue.recovered.connect(self._inspect_current)  # what failed while down
        self.inspector.failed.connect(self.show_error)
        self.inspector.relabel_similar.connect(self.flow.ask_similar)
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
            lambda queue, cursor, limit: client.review_queue(queue, cursor=cursor, limit=limit)
        )
        self.model.set_query(self.filters.queue())
        self.flow.connected()
        self.load_facets()
        self.live.start()
        (self.table if self.views.currentIndex() else self.grid).setFocus()  # keys relabel

    def refresh(self) -> None:
        """Reload the list from its first page, and the filters' values (F5)."""
        self.model.refresh()
        self.load_facets()

    def load_facets(self) -> None:
        """Fill the filters' drop-downs with the API's values and counts."""
        client = self.client
        if client is not None:
            self.runner.submit(
                client.facets, on_done=self._facets, on_error=self.show_error, name="facets"
            )

    def _facets(self, facets: Facets) -> None:
        self.filters.use_facets(facets)
        self.flow.use_facets(facets)

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
        self.label_bar.set_nodes(self.model.nodes())
        if not self.grid.selectionModel().currentIndex().isValid() and self.model.rowCount():
            self.select_row(0)

    # -- selection and keys -------------------------------------------------------------------

    def show_view(self, which: int) -> None:
        """Show the grid (0) or the table (1), keeping the selection."""
        self.views.setCurrentIndex(which)
        (self.table if which else self.grid).setFocus()

    def selected_items(self) -> list[ReviewItem]:
        """The selected results, in row order (the current one if nothing is selected)."""
        selection = self.grid.selectionModel()
        rows = sorted({index.row() for index in selection.selectedIndexes()})
        if not rows and selection.currentIndex().isValid():
            rows = [selection.currentIndex().row()]
        return [self.model.item(row) for row in rows if row < self.model.rowCount()]

    def current_row(self) -> int | None:
        """The current row, if any."""
        index = self.grid.selectionModel().currentIndex()
        return index.row() if index.isValid() else None

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

    def ask_similar(self) -> None:
        """Relabel all similar… of the current crop."""
        self.flow.ask_similar([item.crop_id for item in self.selected_items()][:1])

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
        """Ask when decisions wait to be stored; stop polling; wait briefly for requests."""
        if not self.flow.may_quit(self.quit_choice):
            event.ignore()
            return
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
