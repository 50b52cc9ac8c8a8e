"""The on-disk queue that holds crops until the cloud confirms them.

Every crop the agent sends is written here first. With receipts (the default) the broker's
PUBACK only marks the row *published*; the row is deleted when the cloud's receipt for its
crop id arrives (:meth:`Spool.confirm`), and a published row without one is sent again once
it is older than the receipt timeout (:meth:`Spool.peek` with ``resend_after_s``). Without
receipts (a cloud that sends none) the PUBACK deletes the row
(:mod:`lensflow.edge.publisher`). Either way a crop survives a broker outage, a network
outage, a SIGKILL of the agent — and, with receipts, a broker that loses what it acknowledged.

The store is one SQLite file in WAL mode; the queue is bounded in bytes (and optionally in
messages) and drops the *oldest* rows when full, counting them in a
counter that is persisted with the rows.

A spool file that SQLite cannot read (a torn disk, a file that is not a database) is by
default moved aside as ``<name>.corrupt-<timestamp>`` (with its ``-wal``/``-shm``) and an
empty spool is started, logged at ERROR: an unattended edge device keeps sending new crops,
and the old file is kept for recovery. ``on_corrupt="raise"`` raises instead.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lensflow.edge.spool_file import SpoolError, Transaction, move_aside, open_database

__all__ = ["Spool", "SpoolError", "SpooledMessage"]

logger = logging.getLogger(__name__)

_COLUMNS = "id, topic, payload, key, created_at, attempts, published_at"


@dataclass(frozen=True, slots=True)
class SpooledMessage:
    """One queued message.

    Attributes:
        id: Row id; increases with every put and is never reused.
        topic: MQTT topic to publish to.
        payload: Message bytes.
        key: Caller's de-duplication key (the crop id).
        created_at: When it was put, seconds since the epoch.
        attempts: How many times it was handed to the broker so far.
        published_at: When the broker last acknowledged it (seconds since the epoch); None
            until then.

    """

    id: int
    topic: str
    payload: bytes
    key: str
    created_at: float
    attempts: int
    published_at: float | None = None


class Spool:
    """A bounded, persistent FIFO of MQTT messages in one SQLite file; thread-safe.

    Args:
        path: The SQLite file; created with its parent folder if missing.
        max_bytes: Largest total of payload + topic + key bytes; the oldest rows are dropped
            to make room for a new one.
        max_messages: Largest number of rows, or ``None`` for no count bound.
        synchronous: SQLite ``synchronous`` mode. In WAL mode, ``NORMAL`` makes a committed
            put durable against a crash (even SIGKILL) of the process: the commit is in the
            OS before ``put`` returns. Only an OS crash or power loss can take back the last
            commits. ``FULL`` also survives those, at the cost of an fsync per put.
        on_corrupt: ``"move_aside"`` (default) or ``"raise"``, see the module docstring.

    Raises:
        SpoolError: If the file cannot be opened, or is corrupt and ``on_corrupt="raise"``.
        ValueError: If a bound is not positive.

    """

    def __init__(
        self,
        path: Path | str,
        *,
        max_bytes: int,
        max_messages: int | None = None,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        on_corrupt: Literal["move_aside", "raise"] = "move_aside",
    ) -> None:
        if max_bytes <= 0 or (max_messages is not None and max_messages <= 0):
            raise ValueError(
                "max_bytes and max_messages must be positive, but got "
                f"max_bytes={max_bytes}, max_messages={max_messages}"
            )
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.max_messages = max_messages
        self._synchronous = synchronous
        self._lock = threading.Lock()
        try:
            self._db = self._open()
        except (sqlite3.OperationalError, OSError) as err:  # cannot open (permissions), not corrupt
            raise SpoolError(f"cannot open spool file {self.path}: {err}") from err
        except sqlite3.DatabaseError as err:
            if on_corrupt == "raise":
                raise SpoolError(
                    f"spool file {self.path} is not a readable SQLite database ({err}); "
                    "move it aside or delete it to start with an empty spool"
                ) from err
            self._move_aside(err)
            self._db = self._open()
        try:
            self._count, self._bytes = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM messages"
            ).fetchone()
            counters = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
            self._dropped, self._expired = counters["dropped"], counters["expired"]
        except sqlite3.Error as err:
            self._db.close()
            raise SpoolError(
                f"expected {self.path} to be a lensflow spool (tables messages and counters), "
                f"but reading it failed: {err}"
            ) from err

    def _open(self) -> sqlite3.Connection:
        return open_database(self.path, synchronous=self._synchronous)

    def _move_aside(self, err: sqlite3.DatabaseError) -> None:
        move_aside(self.path, err)

    def put(self, topic: str, payload: bytes, *, key: str) -> int:
        """Append a message; committed (crash-safe) when this returns.

        When the spool is full, the oldest rows are deleted to make room and counted in
        :attr:`dropped`.

        Args:
            topic: MQTT topic.
            payload: Message bytes.
            key: De-duplication key (the crop id).

        Returns:
            The new row's id.

        Raises:
            SpoolError: If the message alone is larger than ``max_bytes``, or SQLite fails.

        """
        size = len(payload) + len(topic.encode()) + len(key.encode())
        if size > self.max_bytes:
            raise SpoolError(
                f"message {key!r} needs {size} bytes, more than the spool's max_bytes "
                f"{self.max_bytes}; it was not spooled"
            )
        with self._lock:
            with self._transaction():
                dropped, freed = self._drop_oldest(size)
                cursor = self._db.execute(
                    "INSERT INTO messages (topic, payload, key, created_at, size) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (topic, bytes(payload), key, time.time(), size),
                )
            # the in-memory totals change only once the transaction is committed
            self._count += 1 - dropped
            self._bytes += size - freed
            self._dropped += dropped
        if dropped:
            logger.warning("spool full: dropped %d oldest message(s) for key=%s", dropped, key)
        if cursor.lastrowid is None:  # pragma: no cover - sqlite always sets it after an INSERT
            raise SpoolError(f"SQLite returned no row id for the message {key!r}")
        return cursor.lastrowid

    def _drop_oldest(self, size: int) -> tuple[int, int]:
        """Delete the oldest rows until ``size`` more bytes and one more row fit.

        Returns:
            How many rows were deleted, and their total size.

        """
        count, total, dropped, freed = self._count, self._bytes, 0, 0
        while count > 0 and (
            total + size > self.max_bytes
            or (self.max_messages is not None and count + 1 > self.max_messages)
        ):
            (row_size,) = self._db.execute(
                "DELETE FROM messages WHERE id = (SELECT MIN(id) FROM messages) RETURNING size"
            ).fetchone()
            count, total, dropped, freed = (
                count - 1,
                total - row_size,
                dropped + 1,
                freed + row_size,
            )
        if dropped:
            self._db.execute(
                "UPDATE counters SET value = value + ? WHERE name = 'dropped'", (dropped,)
            )
        return dropped, freed

    def peek(
        self,
        limit: int,
        *,
        exclude: Collection[int] = (),
        resend_after_s: float | None = None,
    ) -> list[SpooledMessage]:
        """Return up to ``limit`` messages to send, oldest first, leaving them in the spool.

        Args:
            limit: Most messages to return.
            exclude: Row ids to skip (the ones already in flight).
            resend_after_s: Also return published rows whose receipt is this overdue; None:
                only rows not published yet.

        Returns:
            The messages, in put order.

        """
        if limit <= 0:
            return []
        due = -1.0 if resend_after_s is None else time.time() - resend_after_s
        with self._lock:
            rows = self._run(
                f"SELECT {_COLUMNS} FROM messages "  # noqa: S608 - constant column list
                "WHERE (published_at IS NULL OR published_at < ?) "
                "AND id NOT IN (SELECT value FROM json_each(?)) ORDER BY id LIMIT ?",
                (due, json.dumps(list(exclude)), limit),
            ).fetchall()
        return [SpooledMessage(*row) for row in rows]

    def mark_published(self, row_id: int) -> bool:
        """Record the broker's acknowledgement of a row: now it waits for its receipt.

        Returns:
            ``True`` if the row is there; ``False`` if it was confirmed or dropped meanwhile.

        """
        with self._lock:
            row = self._run(
                "UPDATE messages SET published_at = ? WHERE id = ? RETURNING id",
                (time.time(), row_id),
            ).fetchone()
        return row is not None

    def confirm(self, keys: Iterable[str]) -> int:
        """Delete the rows of the given keys (crop ids): the cloud committed them.

        Returns:
            How many rows were deleted (a key already gone counts nothing).

        """
        wanted = json.dumps(list(dict.fromkeys(keys)))
        with self._lock, self._transaction():
            rows = self._db.execute(
                "DELETE FROM messages WHERE key IN (SELECT value FROM json_each(?)) RETURNING size",
                (wanted,),
            ).fetchall()
            self._count -= len(rows)
            self._bytes -= sum(size for (size,) in rows)
        return len(rows)

    def expire(self, max_attempts: int) -> list[str]:
        """Give up on published rows sent ``max_attempts`` times without a receipt.

        A crop the cloud never confirms (a dead letter whose header it could not read) would
        otherwise be sent forever. The rows are deleted and counted in :attr:`expired`.

        Returns:
            The keys given up on.

        """
        with self._lock, self._transaction():
            rows = self._db.execute(
                "DELETE FROM messages WHERE published_at IS NOT NULL AND attempts >= ? "
                "RETURNING key, size",
                (max_attempts,),
            ).fetchall()
            if rows:
                self._db.execute(
                    "UPDATE counters SET value = value + ? WHERE name = 'expired'", (len(rows),)
                )
            self._count -= len(rows)
            self._bytes -= sum(size for _, size in rows)
            self._expired += len(rows)
        return [key for key, _ in rows]

    def counts(self) -> tuple[int, int]:
        """``(waiting to be published, published and waiting for a receipt)``."""
        with self._lock:
            pending, published = self._run(
                "SELECT COUNT(*) - COUNT(published_at), COUNT(published_at) FROM messages"
            ).fetchone()
        return int(pending), int(published)

    def mark_attempted(self, ids: Iterable[int]) -> None:
        """Add one to the ``attempts`` of each row (rows already gone are ignored)."""
        params = [(row_id,) for row_id in ids]
        if not params:
            return
        with self._lock, self._transaction():
            self._db.executemany("UPDATE messages SET attempts = attempts + 1 WHERE id = ?", params)

    def remove(self, row_id: int) -> bool:
        """Delete one message (its broker acknowledgement arrived).

        Returns:
            ``True`` if it was there; ``False`` if it was already removed or dropped.

        """
        with self._lock:
            row = self._run(
                "DELETE FROM messages WHERE id = ? RETURNING size", (row_id,)
            ).fetchone()
            if row is None:
                return False
            self._count -= 1
            self._bytes -= row[0]
            return True

    def __len__(self) -> int:
        return int(self._count)

    @property
    def size_bytes(self) -> int:
        """Total payload + topic + key bytes of the queued messages."""
        return int(self._bytes)

    @property
    def dropped(self) -> int:
        """Messages dropped because the spool was full, since the file was created."""
        return int(self._dropped)

    @property
    def expired(self) -> int:
        """Messages given up on without a receipt (:meth:`expire`), since the file was created."""
        return int(self._expired)

    def close(self) -> None:
        """Close the database (a checkpoint folds the WAL into the main file)."""
        with self._lock:
            self._db.close()

    def _run(self, sql: str, params: tuple[object, ...] = ()) -> sqlite3.Cursor:
        """Execute one statement; translate SQLite errors to SpoolError."""
        try:
            return self._db.execute(sql, params)
        except sqlite3.Error as err:
            raise SpoolError(f"spool {self.path}: {err} (running {sql.split()[0]})") from err

    def _transaction(self) -> Transaction:
        """Return a BEGIN IMMEDIATE ... COMMIT/ROLLBACK context; the caller holds the lock."""
        return Transaction(self._db, self.path)
