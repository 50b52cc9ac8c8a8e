"""Light or dark, as the OS is: the app's palette follows the system's colour scheme.

Qt 6 reports the OS's scheme (:meth:`QStyleHints.colorScheme`) and signals when it changes.
Where the platform's own palette already matches (Windows 11, macOS, GNOME with a Qt platform
theme) it is left alone; where it does not (a light palette on a dark desktop), the app takes
the Fusion style with a dark palette, or the style's standard light one.

The few colours the app draws itself (an error line, a problem's line tint, an edge's ack)
come from here too, chosen for the palette in use, so they stay readable in both.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication, QStyleFactory

logger = logging.getLogger(__name__)

_ROLE = QPalette.ColorRole


def is_dark(palette: QPalette | None = None) -> bool:
    """Whether ``palette`` (the application's by default) is a dark one."""
    palette = palette or QGuiApplication.palette()
    return palette.color(_ROLE.Window).lightness() < 128


def follow_system_theme(app: QApplication) -> None:
    """Use the OS's light or dark scheme now, and again whenever it changes."""
    hints = app.styleHints()
    apply_scheme(app, hints.colorScheme())
    hints.colorSchemeChanged.connect(lambda scheme: apply_scheme(app, scheme))


def apply_scheme(app: QApplication, scheme: Qt.ColorScheme) -> None:
    """Make the app's palette ``scheme`` (light or dark); an unknown scheme changes nothing."""
    dark = scheme == Qt.ColorScheme.Dark
    if scheme == Qt.ColorScheme.Unknown or is_dark(app.palette()) == dark:
        return  # the platform's palette already matches
    fusion = QStyleFactory.create("Fusion")
    if fusion is not None:
        app.setStyle(fusion)
    app.setPalette(dark_palette() if dark else app.style().standardPalette())
    logger.info("colour scheme: %s", "dark" if dark else "light")


def dark_palette() -> QPalette:
    """A dark palette for the Fusion style (text at good contrast, a blue highlight)."""
    palette = QPalette()
    window, base, text = QColor(45, 45, 48), QColor(30, 30, 32), QColor(230, 230, 230)
    for role, color in (
        (_ROLE.Window, window),
        (_ROLE.WindowText, text),
        (_ROLE.Base, base),
        (_ROLE.AlternateBase, QColor(40, 40, 43)),
        (_ROLE.ToolTipBase, QColor(60, 60, 64)),
        (_ROLE.ToolTipText, text),
        (_ROLE.PlaceholderText, QColor(150, 150, 150)),
        (_ROLE.Text, text),
        (_ROLE.Button, QColor(55, 55, 58)),
        (_ROLE.ButtonText, text),
        (_ROLE.BrightText, QColor(255, 90, 90)),
        (_ROLE.Link, QColor(110, 170, 255)),
        (_ROLE.Highlight, QColor(52, 120, 198)),
        (_ROLE.HighlightedText, QColor(255, 255, 255)),
        (_ROLE.Light, QColor(75, 75, 78)),
        (_ROLE.Midlight, QColor(62, 62, 65)),
        (_ROLE.Mid, QColor(40, 40, 42)),
        (_ROLE.Dark, QColor(25, 25, 27)),
        (_ROLE.Shadow, QColor(0, 0, 0)),
    ):
        palette.setColor(role, color)
    grey = QColor(128, 128, 128)
    for role in (_ROLE.Text, _ROLE.WindowText, _ROLE.ButtonText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, grey)
    return palette


def error_color() -> QColor:
    """Text of an error: dark red on light, light red on dark."""
    return QColor("#ff7b7b") if is_dark() else QColor("#b00020")


def ok_color() -> QColor:
    """Text of a success: dark green on light, light green on dark."""
    return QColor("#86d993") if is_dark() else QColor("#1b6e1b")


def issue_background() -> QColor:
    """Background of a text line with a problem."""
    return QColor(110, 36, 44) if is_dark() else QColor(255, 214, 214)


def ack_color(ack: str) -> QColor | None:
    """Background of an edge's config ack (applied, rejected, pending); None for the others."""
    dark = is_dark()
    colors = {
        "applied": QColor(38, 92, 48) if dark else QColor(206, 240, 206),
        "rejected": QColor(118, 38, 44) if dark else QColor(255, 205, 205),
        "pending": QColor(110, 90, 30) if dark else QColor(255, 239, 196),
    }
    return colors.get(ack)
