"""What the in-process indexes keep beside their vectors, and how they save it to a folder.

:class:`RowStore` maps row positions (the order vectors were added in) to ids, deletion marks
and metadata columns (camera and class as codes into small vocabularies, time as float64), and
turns a :class:`SearchFilter` into a boolean mask over rows with numpy.

:func:`write_snapshot` saves files into a fresh ``v-*`` subfolder, fsyncs them, then points
``CURRENT`` at it with an atomic rename; :func:`current_snapshot` follows that pointer. A crash
at any moment leaves the previous snapshot readable.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lensflow.cloud.search.errors import VectorIndexError
from lensflow.cloud.search.index.base import Metadata, SearchFilter

logger = logging.getLogger(__name__)

_POINTER = "CURRENT"
_COLUMNS = ("ids", "alive", "camera_codes", "class_codes", "captured_at")


def grow(array: NDArray[Any], needed: int) -> NDArray[Any]:
    """``array`` itself when it holds ``needed`` rows, else a copy with 1.5x room."""
    if len(array) >= needed:
        return array
    bigger = np.zeros((max(needed, int(len(array) * 1.5), 1024), *array.shape[1:]), array.dtype)
    bigger[: len(array)] = array
    return bigger


class _Vocabulary:
    """Names to small integer codes and back."""

    def __init__(self, names: list[str] | None = None) -> None:
        self.names: list[str] = list(names or [])
        self.codes: dict[str, int] = {name: code for code, name in enumerate(self.names)}

    def encode(self, values: tuple[str, ...]) -> NDArray[np.int32]:
        uniques, inverse = np.unique(np.asarray(values, dtype=object), return_inverse=True)
        table = np.asarray([self._code(str(name)) for name in uniques], dtype=np.int32)
        return table[inverse.reshape(-1)]

    def lookup(self, names: frozenset[str]) -> NDArray[np.int32]:
        return np.asarray([self.codes[n] for n in names if n in self.codes], dtype=np.int32)

    def _code(self, name: str) -> int:
        code = self.codes.get(name)
        if code is None:
            code = self.codes[name] = len(self.names)
            self.names.append(name)
        return code


class RowStore:
    """Ids, deletion marks and metadata of the rows of an in-process index."""

    def __init__(self) -> None:
        self.size = 0
        self.ids = np.zeros(0, np.int64)
        self.alive = np.zeros(0, bool)
        self.camera_codes = np.zeros(0, np.int32)
        self.class_codes = np.zeros(0, np.int32)
        self.captured_at = np.zeros(0, np.float64)
        self.cameras = _Vocabulary()
        self.classes = _Vocabulary()
        self.row_of: dict[int, int] = {}
        self.deleted = 0

    def append(self, ids: NDArray[np.int64], metadata: Metadata) -> int:
        """Add rows for ``ids`` (replacing live rows with the same ids); return the first row."""
        start, end = self.size, self.size + len(ids)
        self.remove(ids)
        for name in _COLUMNS:
            setattr(self, name, grow(getattr(self, name), end))
        self.ids[start:end] = ids
        self.alive[start:end] = True
        self.camera_codes[start:end] = self.cameras.encode(metadata.cameras)
        self.class_codes[start:end] = self.classes.encode(metadata.classes)
        self.captured_at[start:end] = metadata.captured_at
        self.row_of.update(zip(ids.tolist(), range(start, end), strict=True))
        self.size = end
        return start

    def remove(self, ids: NDArray[np.int64]) -> int:
        """Mark the live rows of ``ids`` deleted; return how many there were."""
        popped = (self.row_of.pop(key, None) for key in ids.tolist())
        rows = [row for row in popped if row is not None]
        self.alive[rows] = False
        self.deleted += len(rows)
        return len(rows)

    @property
    def count(self) -> int:
        """Live rows."""
        return self.size - self.deleted

    def mask(self, filters: SearchFilter | None) -> NDArray[np.bool_] | None:
        """Rows a search may return, or ``None`` when every row may be returned."""
        if (filters is None or filters.is_open) and self.deleted == 0:
            return None
        keep = self.alive[: self.size].copy()
        if filters is None:
            return keep
        if filters.cameras is not None:
            keep &= np.isin(self.camera_codes[: self.size], self.cameras.lookup(filters.cameras))
        if filters.classes is not None:
            keep &= np.isin(self.class_codes[: self.size], self.classes.lookup(filters.classes))
        if filters.since is not None:
            keep &= self.captured_at[: self.size] >= filters.since
        if filters.until is not None:
            keep &= self.captured_at[: self.size] < filters.until
        return keep

    def live_rows(self) -> NDArray[np.intp]:
        """Row numbers of the live rows, in order."""
        return np.flatnonzero(self.alive[: self.size])

    def metadata(self, rows: NDArray[np.intp]) -> Metadata:
        """The metadata of ``rows`` (for a rebuild)."""
        cameras = tuple(self.cameras.names[c] for c in self.camera_codes[rows].tolist())
        classes = tuple(self.classes.names[c] for c in self.class_codes[rows].tolist())
        return Metadata(cameras, classes, self.captured_at[rows])

    def files(self) -> dict[str, Callable[[Path], None]]:
        """Writers of this store's files, by file name, for :func:`write_snapshot`."""
        writers: dict[str, Callable[[Path], None]] = {
            f"{name}.npy": npy_writer(getattr(self, name)[: self.size]) for name in _COLUMNS
        }
        vocab = {"cameras": self.cameras.names, "classes": self.classes.names}
        writers["vocabulary.json"] = json_writer(vocab)
        return writers

    @classmethod
    def read(cls, folder: Path) -> RowStore:
        """Load a store written by :meth:`files` from a snapshot folder."""
        store = cls()
        try:
            for name in _COLUMNS:
                setattr(store, name, np.load(folder / f"{name}.npy", allow_pickle=False))
            vocab = json.loads((folder / "vocabulary.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise VectorIndexError(f"cannot read the index rows in {folder}: {err}") from err
        sizes = {len(getattr(store, name)) for name in _COLUMNS}
        if len(sizes) != 1:
            raise VectorIndexError(f"index rows in {folder} have columns of different lengths")
        store.size = sizes.pop()
        store.cameras = _Vocabulary(vocab["cameras"])
        store.classes = _Vocabulary(vocab["classes"])
        live = store.live_rows()
        store.row_of = dict(zip(store.ids[live].tolist(), live.tolist(), strict=True))
        store.deleted = store.size - len(live)
        return store


def npy_writer(array: NDArray[Any]) -> Callable[[Path], None]:
    """A writer of ``array`` as an ``.npy`` file (fsynced), for :func:`write_snapshot`."""

    def write(path: Path) -> None:
        with path.open("wb") as handle:
            np.save(handle, array, allow_pickle=False)
            handle.flush()
            os.fsync(handle.fileno())

    return write


def json_writer(document: Mapping[str, Any]) -> Callable[[Path], None]:
    """A writer of ``document`` as a JSON file (fsynced), for :func:`write_snapshot`."""

    def write(path: Path) -> None:
        with path.open("w", encoding="utf-8") as handle:
            json.dump(document, handle)
            handle.flush()
            os.fsync(handle.fileno())

    return write


def write_snapshot(root: Path, files: Mapping[str, Callable[[Path], None]]) -> Path:
    """Write ``files`` into a new snapshot under ``root`` and make it the current one.

    Args:
        root: The index folder (created if missing).
        files: File name to a function that writes (and fsyncs) that file at a path.

    Returns:
        The new snapshot's folder.

    Raises:
        VectorIndexError: If a file cannot be written; the previous snapshot stays current.

    """
    folder = root / f"v-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
    try:
        folder.mkdir(parents=True)
        for name, write in files.items():
            write(folder / name)
        _fsync_dir(folder)
        pointer = root / f".{_POINTER}.{uuid.uuid4().hex}.tmp"
        pointer.write_text(folder.name + "\n", encoding="utf-8")
        with pointer.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(pointer, root / _POINTER)
        _fsync_dir(root)
    except OSError as err:
        shutil.rmtree(folder, ignore_errors=True)
        raise VectorIndexError(f"cannot save the index to {root}: {err}") from err
    for old in root.glob("v-*"):
        if old.name != folder.name:
            shutil.rmtree(old, ignore_errors=True)
    logger.info("index saved folder=%s", folder)
    return folder


def current_snapshot(root: Path) -> Path | None:
    """The folder ``CURRENT`` points at, or ``None`` when nothing was saved under ``root``.

    Raises:
        VectorIndexError: If the pointer names a folder that does not exist.

    """
    pointer = root / _POINTER
    if not pointer.is_file():
        return None
    folder = root / pointer.read_text(encoding="utf-8").strip()
    if not folder.is_dir() or not folder.name.startswith("v-"):
        raise VectorIndexError(f"{pointer} names {folder.name!r}, which is not a saved index")
    return folder


def read_manifest(folder: Path, *, kind: str, dim: int) -> dict[str, Any]:
    """Read ``manifest.json`` of a snapshot and check it is a ``kind`` index of ``dim``.

    Raises:
        VectorIndexError: If it is missing, unreadable or of another kind or dimension.

    """
    try:
        manifest: dict[str, Any] = json.loads((folder / "manifest.json").read_text("utf-8"))
    except (OSError, ValueError) as err:
        raise VectorIndexError(f"cannot read {folder / 'manifest.json'}: {err}") from err
    if manifest.get("kind") != kind or manifest.get("dim") != dim:
        raise VectorIndexError(
            f"expected a {kind} index of dimension {dim} in {folder}, but found a "
            f"{manifest.get('kind')} index of dimension {manifest.get('dim')}"
        )
    return manifest


def _fsync_dir(folder: Path) -> None:
    """Make a folder's entries (new files, renames) durable."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
