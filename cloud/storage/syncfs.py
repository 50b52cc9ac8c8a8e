"""``syncfs(2)``: make everything written to one filesystem durable with one call (Linux).

The folder crop store writes a batch's files without an ``fsync`` each and then calls this
once per step (data, then renames), which costs one journal commit per batch instead of two
``fsync`` calls per crop.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from collections.abc import Callable
from pathlib import Path


@functools.cache
def _syncfs() -> Callable[[int], int] | None:
    """Libc's ``syncfs``, or None where there is none (not Linux)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        function = ctypes.CDLL(name, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int
    return function


def available() -> bool:
    """Whether this platform has ``syncfs``."""
    return _syncfs() is not None


def sync_filesystem(folder: Path) -> None:
    """Flush every write to the filesystem holding ``folder`` to stable storage.

    Raises:
        OSError: ``syncfs`` failed (an I/O error of some write since the last sync, since
            Linux 5.8), or the platform has none.

    """
    function = _syncfs()
    if function is None:
        raise OSError("syncfs is not available on this platform")
    fd = os.open(folder, os.O_RDONLY)
    try:
        if function(fd) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"syncfs of {folder}: {os.strerror(errno)}")
    finally:
        os.close(fd)
