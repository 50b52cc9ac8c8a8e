"""The folder crop store: crop JPEGs on a local folder, keyed by the sha256 of their bytes.

A crop with hash ``abcdef…`` lives at ``<root>/ab/cd/abcdef….jpg``. Writes go to a temporary
file in the same folder, are made durable, then renamed over the target (``os.replace``), so a
reader never sees a partial file and a crash leaves at most a stray ``.tmp`` file. The same
bytes always land at the same path, so storing a crop twice is harmless. One crop is fsynced
(file, then folder); a batch (:meth:`FolderCropStore.put_many`) on Linux writes every file,
makes them durable with one ``syncfs``, renames them, and makes the renames durable with a
second: two journal commits a batch instead of two fsyncs a crop.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from lensflow.cloud.storage import syncfs
from lensflow.cloud.storage.crops_base import LocalFile, NotStoredError, checked_sha256
from lensflow.cloud.storage.errors import StorageError

logger = logging.getLogger(__name__)

_WRITERS = 8
"""Threads that write (and fsync) the files of one :meth:`FolderCropStore.put_many` at once."""


@dataclass(frozen=True)
class _Staged:
    """A crop written to its temporary file, to be renamed once the batch is durable."""

    sha256: str
    temporary: Path
    target: Path


class FolderCropStore:
    """Crop JPEGs in a folder, content-addressed by sha256 (a :class:`CropStore`)."""

    def __init__(self, root: Path | str) -> None:
        """Use ``root`` as the store's folder (created on the first write).

        Args:
            root: The folder that holds the ``ab/cd/<sha>.jpg`` tree.

        """
        self.root = Path(root)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def close(self) -> None:
        """Stop the writer threads of :meth:`put_many` (a later call starts them again)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def path(self, sha256: str) -> Path:
        """Where the crop with this hash is (or would be) stored.

        Args:
            sha256: 64 lowercase hex digits.

        Returns:
            ``<root>/ab/cd/<sha256>.jpg``.

        Raises:
            StorageError: If ``sha256`` is not 64 lowercase hex digits.

        """
        checked_sha256(sha256)
        return self.root / sha256[:2] / sha256[2:4] / f"{sha256}.jpg"

    def put(self, data: bytes, *, expected_sha256: str | None = None) -> str:
        """Store ``data`` (atomically, idempotently) and return its sha256.

        Args:
            data: The JPEG bytes.
            expected_sha256: The hash the sender announced (the header's ``jpeg_sha256``);
                when given, bytes with another hash are refused.

        Returns:
            The sha256 of ``data``, the key to :meth:`get` it back.

        Raises:
            StorageError: If the bytes do not have the expected hash, or cannot be written.

        """
        sha256 = hashlib.sha256(data).hexdigest()
        if expected_sha256 is not None and expected_sha256 != sha256:
            raise StorageError(
                f"expected crop bytes with sha256 {expected_sha256!r}, got bytes with {sha256!r}"
            )
        target = self.path(sha256)
        try:
            if target.is_file() and target.stat().st_size == len(data):
                return sha256  # same name, same size: the same bytes are already there
            target.parent.mkdir(parents=True, exist_ok=True)
            _write_atomically(target, data)
        except OSError as err:
            raise StorageError(f"could not write crop {sha256} to {target}: {err}") from err
        logger.debug("stored crop %s (%d bytes)", sha256, len(data))
        return sha256

    def put_many(self, items: Sequence[tuple[bytes, str | None]]) -> list[str]:
        """Store several crops at once; every file is durable when this returns.

        On Linux the files are written concurrently without an fsync each, made durable by
        one ``syncfs`` of the store's filesystem, renamed into place, and the renames made
        durable by a second: a target path never names bytes that are not on disk. Elsewhere
        each file is put as :meth:`put` does, concurrently.

        Args:
            items: ``(data, expected_sha256)`` pairs, as :meth:`put` takes them.

        Returns:
            The sha256 of each item, in order.

        Raises:
            StorageError: The first error of an item (the others are still stored), or the
                filesystem failed to sync (caused by the ``OSError``: transient).

        """
        if len(items) <= 1:
            return [self.put(data, expected_sha256=expected) for data, expected in items]
        pool = self._writers()
        if not syncfs.available():
            futures = [pool.submit(self.put, data, expected_sha256=exp) for data, exp in items]
            wait(futures)
            return [future.result() for future in futures]
        staged = list(pool.map(lambda item: self._stage(*item), items))
        pending = [entry for entry in staged if isinstance(entry, _Staged)]
        try:
            if pending:
                syncfs.sync_filesystem(self.root)  # the files' bytes
                for entry in pending:
                    os.replace(entry.temporary, entry.target)
                syncfs.sync_filesystem(self.root)  # the renames
        except OSError as err:
            for entry in pending:
                entry.temporary.unlink(missing_ok=True)
            raise StorageError(
                f"could not make a batch of crops durable in {self.root}: {err}"
            ) from err
        hashes = []
        for outcome in staged:
            if isinstance(outcome, StorageError):
                raise outcome
            hashes.append(outcome if isinstance(outcome, str) else outcome.sha256)
        logger.debug("stored %d crops (%d written)", len(items), len(pending))
        return hashes

    def _writers(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(_WRITERS, thread_name_prefix="crop-store")
            return self._pool

    def _stage(self, data: bytes, expected_sha256: str | None) -> str | _Staged | StorageError:
        """Write one crop's temporary file (no fsync): its sha256 when already stored."""
        sha256 = hashlib.sha256(data).hexdigest()
        if expected_sha256 is not None and expected_sha256 != sha256:
            return StorageError(
                f"expected crop bytes with sha256 {expected_sha256!r}, got bytes with {sha256!r}"
            )
        target = self.path(sha256)
        try:
            if target.is_file() and target.stat().st_size == len(data):
                return sha256
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
            with temporary.open("xb") as file:
                file.write(data)
        except OSError as err:
            error = StorageError(f"could not write crop {sha256} to {target}: {err}")
            error.__cause__ = err
            return error
        return _Staged(sha256, temporary, target)

    def get(self, sha256: str) -> bytes:
        """Read back the crop with this hash.

        Args:
            sha256: The key :meth:`put` returned.

        Returns:
            The JPEG bytes.

        Raises:
            StorageError: If the hash is malformed, or no such crop is stored or readable.

        """
        target = self.path(sha256)
        try:
            return target.read_bytes()
        except FileNotFoundError as err:
            raise NotStoredError(f"expected a stored crop {sha256} at {target}, got none") from err
        except OSError as err:
            raise StorageError(f"could not read crop {sha256} at {target}: {err}") from err

    def exists(self, sha256: str) -> bool:
        """Whether a crop with this hash is stored.

        Args:
            sha256: 64 lowercase hex digits.

        Returns:
            True if its file exists.

        """
        return self.path(sha256).is_file()

    def serve(self, sha256: str) -> LocalFile:
        """The crop's file, for the API to send.

        Args:
            sha256: 64 lowercase hex digits.

        Returns:
            Its path and ``stat`` result.

        Raises:
            NotStoredError: No such crop is stored.
            StorageError: The folder cannot be read (its cause is the ``OSError``).

        """
        target = self.path(sha256)
        try:
            return LocalFile(path=target, stat=target.stat())
        except FileNotFoundError:
            raise NotStoredError(f"expected a stored crop {sha256} at {target}, got none") from None
        except OSError as err:
            raise StorageError(f"could not read crop {sha256} at {target}: {err}") from err


def _write_atomically(target: Path, data: bytes) -> None:
    """Write ``data`` to a temporary sibling, fsync it, and rename it over ``target``."""
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_folder(target.parent)


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable where the platform allows opening a folder (POSIX)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # e.g. Windows: folders cannot be opened; the rename is still atomic
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
