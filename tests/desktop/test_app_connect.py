"""Connecting: failures end in a readable message, and the UI thread never waits on the network."""

from __future__ import annotations

import itertools
import stat
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import keyring
import pytest
from keyring.backends import fail
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QDialogButtonBox
from pytestqt.qtbot import QtBot

from lensflow.desktop.connect_dialog import ConnectDialog
from lensflow.desktop.main_window import MainWindow
from lensflow.services.process import free_port
from tests.desktop.app_support import ReviewSetup, make_window

pytestmark = pytest.mark.integration

SLOW_S = 1.5


class _SlowHandler(BaseHTTPRequestHandler):
    """Answers an empty results page, but only after SLOW_S seconds."""

    def do_GET(self) -> None:
        time.sleep(SLOW_S)
        body = b'{"items": [], "next_cursor": null}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        return


@pytest.fixture
def slow_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("unreachable", "Cannot reach the API"),  # nothing listens on the port
        ("unknown key", "did not accept the API key"),  # 401
        ("not a URL", "expected an http:// or https:// API URL"),  # refused before any request
    ],
)
def test_a_failed_connection_says_why(
    review_setup: ReviewSetup, qtbot: QtBot, tmp_path: Path, case: str, says: str
) -> None:
    url, key = {
        "unreachable": (f"http://127.0.0.1:{free_port()}", "lfk_x"),
        "unknown key": (review_setup.api.base_url, "lfk_not-a-key"),
        "not a URL": ("ftp://example", "lfk_x"),
    }[case]
    window = make_window(tmp_path)
    qtbot.addWidget(window)
    window.show()

    window.connect_to(url, key)

    qtbot.waitUntil(lambda: says in window.last_error, timeout=10_000)
    assert window.error_label.text() == window.last_error
    assert window.client is None
    assert window.model.rowCount() == 0


def test_a_viewer_key_is_told_it_may_not_relabel(
    review_setup: ReviewSetup, qtbot: QtBot, tmp_path: Path
) -> None:
    window = make_window(tmp_path)
    qtbot.addWidget(window)
    window.show()
    window.connect_to(review_setup.api.base_url, review_setup.api.tokens["viewer"])
    qtbot.waitUntil(lambda: window.model.rowCount() > 0, timeout=10_000)

    window.relabel.relabel_selection("person")  # 403 from the API

    qtbot.waitUntil(lambda: "may not do this" in window.last_error, timeout=10_000)
    assert "role operator" in window.last_error


def test_the_event_loop_runs_while_a_slow_api_answers(
    slow_api: str, qtbot: QtBot, tmp_path: Path
) -> None:
    window = make_window(tmp_path)
    qtbot.addWidget(window)
    window.show()
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start()

    started = time.monotonic()
    window.connect_to(slow_api, "lfk_x")
    returned = time.monotonic() - started
    qtbot.waitUntil(lambda: window.client is not None, timeout=10_000)
    timer.stop()

    assert returned < 0.2  # connect_to does not wait for the answer
    gaps = [later - earlier for earlier, later in itertools.pairwise(ticks)]
    assert len(ticks) > SLOW_S / 0.1  # the timer kept firing while the request waited
    assert max(gaps) < 0.5  # no freeze of the UI thread


@pytest.fixture
def no_keyring() -> Iterator[None]:
    """A machine without an OS keyring (keyring's ``fail`` backend), as a headless box."""
    before = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        keyring.set_keyring(before)


def _open_dialog(window: MainWindow, qtbot: QtBot) -> ConnectDialog:
    qtbot.waitUntil(
        lambda: any(d.isVisible() for d in window.findChildren(ConnectDialog)), timeout=10_000
    )
    [dialog] = [d for d in window.findChildren(ConnectDialog) if d.isVisible()]
    return dialog


def _type_into(qtbot: QtBot, field: object, text: str) -> None:
    """Replace a line edit's text by typing, as the operator does."""
    qtbot.mouseClick(field, Qt.MouseButton.LeftButton)  # type: ignore[no-untyped-call]
    qtbot.keyClick(field, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)  # type: ignore[no-untyped-call]
    qtbot.keyClicks(field, text)  # type: ignore[no-untyped-call]


def _click_connect(qtbot: QtBot, dialog: ConnectDialog) -> None:
    button = dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)
    assert button is not None
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)  # type: ignore[no-untyped-call]


def test_after_a_wrong_key_the_dialog_keeps_the_api_url_it_was_given(
    review_setup: ReviewSetup, qtbot: QtBot, tmp_path: Path, no_keyring: None
) -> None:
    window = make_window(tmp_path)
    qtbot.addWidget(window)
    window.show()
    api = review_setup.api.base_url

    # what `lensflow review --api URL --key WRONG` does
    window.connect_to(api, "lfk_wrong", remember=True, ask_on_failure=True)
    dialog = _open_dialog(window, qtbot)

    assert dialog.url.text() == api  # not http://127.0.0.1:8080
    assert "did not accept the API key" in dialog.status.text()
    _type_into(qtbot, dialog.key, review_setup.api.tokens["viewer"])
    _click_connect(qtbot, dialog)
    qtbot.waitUntil(lambda: window.client is not None, timeout=10_000)
    assert window.client is not None and window.client.base_url == api


def test_a_remembered_key_goes_to_a_private_file_and_the_dialog_says_so(
    review_setup: ReviewSetup, qtbot: QtBot, tmp_path: Path, no_keyring: None
) -> None:
    window = make_window(tmp_path)
    qtbot.addWidget(window)
    window.show()
    token = review_setup.api.tokens["viewer"]

    dialog = window.ask_connection()
    qtbot.waitUntil(dialog.isVisible)
    key_file = tmp_path / "review.key"
    assert dialog.remember.isChecked()
    assert f"The key goes to {key_file} (readable only by you" in dialog.key_destination.text()
    _type_into(qtbot, dialog.url, review_setup.api.base_url)
    _type_into(qtbot, dialog.key, token)
    _click_connect(qtbot, dialog)
    qtbot.waitUntil(lambda: window.client is not None, timeout=10_000)

    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert token in key_file.read_text()
    assert token not in (tmp_path / "review.ini").read_text()  # the settings file: 0644
