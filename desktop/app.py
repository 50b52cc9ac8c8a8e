"""Start the review app: ``lensflow review [--api URL --key KEY]`` ends up in :func:`run`."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtWidgets import QApplication

from lensflow.desktop.main_window import MainWindow
from lensflow.desktop.settings import SettingsStore
from lensflow.desktop.theme import follow_system_theme


def drop_foreign_qt_plugins() -> None:
    """Forget a Qt plugin folder another package put in the environment.

    Importing OpenCV's GUI build (``cv2``, pulled in by ultralytics) points
    ``QT_QPA_PLATFORM_PLUGIN_PATH`` at its own Qt plugins, built for another Qt: PySide6 would
    then fail to load the ``xcb`` platform on a real X display. PySide6 finds its own.
    """
    path = os.environ.get("QT_QPA_PLATFORM_PLUGIN_PATH", "")
    if "cv2" in Path(path).parts:
        del os.environ["QT_QPA_PLATFORM_PLUGIN_PATH"]


def run(
    argv: Sequence[str] | None = None, *, api: str | None = None, key: str | None = None
) -> int:
    """Show the window and run the event loop until it closes.

    With ``api`` (and ``key``) it connects at once; otherwise it uses the remembered
    connection, or asks for one.

    Args:
        argv: Qt's command line arguments.
        api: The API URL.
        key: The API key (the remembered one for that URL when not given).

    Returns:
        The event loop's exit code.

    """
    drop_foreign_qt_plugins()
    app = QApplication.instance() or QApplication(list(argv or sys.argv[:1]))
    app.setApplicationName("lensflow review")
    if isinstance(app, QApplication):  # not a bare QCoreApplication made before
        follow_system_theme(app)  # light or dark, as the OS is (and when it changes)
    settings = SettingsStore()
    window = MainWindow(settings)
    window.show()
    saved = settings.load()
    if api:
        remembered = saved.key if saved and saved.url == api else ""
        window.connect_to(api, key or remembered, remember=key is not None, ask_on_failure=True)
    elif saved is not None:
        window.connect_to(saved.url, saved.key, ask_on_failure=True)
    else:
        window.ask_connection()
    return int(app.exec())
