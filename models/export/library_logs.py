"""Libraries that print through handlers of their own are made to log like any library.

nncf and ultralytics attach a stdout handler to their logger when imported, so a quantizer's
hundreds of INFO lines reach the terminal whatever the process configured. After
:func:`adopt`, their records propagate to the root logger, where the process's own set-up
decides where they go (``lensflow demo`` keeps them in its log file).
"""

from __future__ import annotations

import logging

ADOPTED = ("nncf", "ultralytics")


def adopt(names: tuple[str, ...] = ADOPTED) -> None:
    """Drop the named libraries' own handlers and let their records propagate (idempotent).

    Call it right after importing them.
    """
    for name in names:
        library = logging.getLogger(name)
        library.handlers.clear()
        library.propagate = True
