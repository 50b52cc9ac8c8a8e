"""The connect dialog: API URL and key, checked against the API before it closes.

The check (``ApiClient.check``) runs on the runner; the dialog stays responsive and shows
why a connection failed (unreachable, key refused, role too low) under the fields, keeping
the URL and key as they were (a wrong key is fixed where it was typed). Under "Remember" it
says where the key would go: the OS keyring, or a file only its owner can read.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from lensflow.desktop.client import ApiClient
from lensflow.desktop.settings import DEFAULT_URL, Connection
from lensflow.desktop.theme import error_color
from lensflow.desktop.workers import Runner


class ConnectDialog(QDialog):
    """Asks for the API URL and key; emits ``connected`` with a checked client.

    Signals:
        connected(object, object): The :class:`ApiClient` and the :class:`Connection`,
            once the API accepted the key.

    """

    connected = Signal(object, object)

    def __init__(
        self,
        runner: Runner,
        *,
        initial: Connection | None = None,
        key_destination: str = "",
        parent: QWidget | None = None,
    ) -> None:
        """A dialog prefilled with ``initial``; ``key_destination`` says where a key is saved."""
        super().__init__(parent)
        self.setWindowTitle("Connect to the lensflow API")
        self.runner = runner
        self.url = QLineEdit(initial.url if initial else DEFAULT_URL)
        self.url.setPlaceholderText("http://host:8080")
        self.key = QLineEdit(initial.key if initial else "")
        self.key.setEchoMode(QLineEdit.EchoMode.Password)
        self.key.setPlaceholderText("lfk_… (lensflow cloud keys create)")
        self.remember = QCheckBox("&Remember this connection")
        self.remember.setChecked(True)
        self.key_destination = QLabel(
            f"The key goes to {key_destination}." if key_destination else ""
        )
        self.key_destination.setWordWrap(True)
        self.remember.toggled.connect(self.key_destination.setVisible)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        if ok is not None:
            ok.setText("Connect")
        self.buttons.accepted.connect(self.try_connect)
        self.buttons.rejected.connect(self.reject)
        form = QFormLayout()
        form.addRow("API URL", self.url)
        form.addRow("API key", self.key)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.remember)
        layout.addWidget(self.key_destination)
        layout.addWidget(self.status)
        layout.addWidget(self.buttons)
        self.setMinimumWidth(460)

    def show_error(self, text: str) -> None:
        """Show why the last attempt failed."""
        self.status.setStyleSheet(f"color: {error_color().name()};")
        self.status.setText(text)
        self.adjustSize()  # a wrapped, multi-line message gets the height it needs

    def try_connect(self) -> None:
        """Check the URL and key off the UI thread; close on success."""
        connection = Connection(url=self.url.text().strip(), key=self.key.text().strip())
        try:
            client = ApiClient(connection.url, key=connection.key)
        except ValueError as err:
            self.show_error(str(err))
            return
        self.buttons.setEnabled(False)
        self.status.setStyleSheet("")
        self.status.setText(f"Connecting to {client.base_url}…")
        self.runner.submit(
            client.check,
            on_done=lambda _: self._succeeded(client, connection),
            on_error=lambda err: self._failed(client, err),
            name="connect",
        )

    def _succeeded(self, client: ApiClient, connection: Connection) -> None:
        self.buttons.setEnabled(True)
        self.connected.emit(client, connection)
        self.accept()

    def _failed(self, client: ApiClient, err: Exception) -> None:
        client.close()
        self.buttons.setEnabled(True)
        self.show_error(str(err))
