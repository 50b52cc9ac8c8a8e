"""SQLite plumbing of the spool: opening (with upgrades), moving a corrupt file aside, writes.

Used only by :mod:`lensflow.edge.spool`.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

from lensflow.shared.errors import LensflowError

logger = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    key TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters (name, value) VALUES ('dropped', 0);
INSERT OR IGNORE INTO counters (name, value) VALUES ('expired', 0);
"""


class SpoolError(LensflowError):
    """The spool file cannot be opened, read or written, or a message cannot fit in it."""


def open_database(path: Path, *, synchronous: str) -> sqlite3.Connection:
    """Open the file: WAL, the sync mode, the tables (upgrading older files), an integrity check.

    Raises:
        sqlite3.DatabaseError: The file is not a readable database.
        sqlite3.OperationalError: It cannot be opened.

    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # autocommit (isolation_level=None): every multi-statement change opens its own
    # BEGIN IMMEDIATE; one connection shared under the spool's lock by every thread.
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.executescript(SCHEMA)
        columns = {row[1] for row in db.execute("PRAGMA table_info(messages)")}
        if {"id", "topic", "payload", "key", "size"} <= columns:  # a spool: upgrade it
            if "published_at" not in columns:  # written before receipts
                db.execute("ALTER TABLE messages ADD COLUMN published_at REAL")
            db.execute("CREATE INDEX IF NOT EXISTS messages_key ON messages (key)")
        result = db.execute("PRAGMA quick_check").fetchone()
        if result is None or result[0] != "ok":
            raise sqlite3.DatabaseError(f"quick_check failed: {result}")
    except sqlite3.DatabaseError:
        db.close()
        raise
    return db


def move_aside(path: Path, err: sqlite3.DatabaseError) -> None:
    """Rename an unreadable file (and its WAL/SHM) to ``.corrupt-<ts>``; log loudly."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            source.rename(target.with_name(target.name + suffix))
    logger.error(
        "spool file %s is corrupt (%s): moved it to %s and started an empty spool; "
        "the crops in it were not sent",
        path,
        err,
        target,
    )


class Transaction:
    """BEGIN IMMEDIATE on enter; COMMIT on success, ROLLBACK and SpoolError on failure."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db = db
        self._path = path

    def __enter__(self) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as err:
            raise SpoolError(f"spool {self._path}: cannot begin a write: {err}") from err

    def __exit__(self, exc_type: type[BaseException] | None, exc: object, tb: object) -> None:
        if exc_type is None:
            try:
                self._db.execute("COMMIT")
                return
            except sqlite3.Error as err:
                self._rollback()
                raise SpoolError(f"spool {self._path}: commit failed: {err}") from err
        self._rollback()
        if isinstance(exc, sqlite3.Error):
            raise SpoolError(f"spool {self._path}: write failed: {exc}") from exc

    def _rollback(self) -> None:
        """Roll back, unless SQLite already did (it does on some errors)."""
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")
