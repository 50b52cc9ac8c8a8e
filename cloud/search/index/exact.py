"""Exact search: one matrix-vector product over every stored vector.

The recall baseline of the approximate indexes, and the default for small sets, where it is
fast enough (about 1 ms per 10k vectors of 256 floats on one core) and needs no build step.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from lensflow.cloud.search.errors import VectorIndexError
from lensflow.cloud.search.index.base import (
    Hit,
    Metadata,
    SearchFilter,
    Vectors,
    as_ids,
    as_unit_vectors,
    check_batch,
    check_k,
    hits,
    top_k,
)
from lensflow.cloud.search.index.store import (
    RowStore,
    current_snapshot,
    grow,
    json_writer,
    npy_writer,
    read_manifest,
    write_snapshot,
)

KIND = "exact"


class ExactIndex:
    """Brute-force cosine search over every vector, with metadata filters.

    Args:
        dim: Vector dimension.
        path: Folder for :meth:`save` and :meth:`load`; ``None`` keeps it in memory only.

    """

    def __init__(self, dim: int, *, path: Path | str | None = None) -> None:
        self._dim = dim
        self.path = None if path is None else Path(path)
        self._rows = RowStore()
        self._vectors: Vectors = np.zeros((0, dim), np.float32)
        self._lock = threading.RLock()

    @property
    def dim(self) -> int:
        """The dimension every vector must have."""
        return self._dim

    def add(self, ids: ArrayLike, vectors: ArrayLike, metadata: Metadata) -> None:
        """Insert vectors; an id already present is replaced. See :class:`VectorIndex`."""
        keys, unit = check_batch(ids, vectors, metadata, dim=self._dim)
        with self._lock:
            start = self._rows.append(keys, metadata)
            self._vectors = grow(self._vectors, start + len(unit))
            self._vectors[start : start + len(unit)] = unit

    def remove(self, ids: ArrayLike) -> int:
        """Delete vectors by id; return how many were stored."""
        keys = as_ids(ids)
        with self._lock:
            return self._rows.remove(keys)

    def search(
        self, vector: ArrayLike, *, k: int = 10, filters: SearchFilter | None = None
    ) -> list[Hit]:
        """The ``k`` most similar vectors that pass ``filters``, best first."""
        check_k(k)
        query = as_unit_vectors(vector, dim=self._dim)[0]
        with self._lock:
            size = self._rows.size
            mask = self._rows.mask(filters)
            if mask is None:
                scores = self._vectors[:size] @ query
                best = top_k(scores, k)
                return hits(self._rows.ids[best], scores[best].tolist())
            rows = np.flatnonzero(mask)
            if len(rows) > size // 2:  # gathering most rows costs more than scoring them all
                scores = self._vectors[:size] @ query
                scores[~mask] = -np.inf
                best = top_k(scores, k)
                return hits(self._rows.ids[best], scores[best].tolist())
            scores = self._vectors[rows] @ query
            best = top_k(scores, k)
            return hits(self._rows.ids[rows[best]], scores[best].tolist())

    def count(self) -> int:
        """How many vectors are stored."""
        return self._rows.count

    def save(self) -> None:
        """Write vectors, ids and metadata as a new snapshot of :attr:`path`.

        Raises:
            VectorIndexError: If the index has no path or the files cannot be written.

        """
        root = self._require_path()
        with self._lock:
            files = self._rows.files()
            files["vectors.npy"] = npy_writer(self._vectors[: self._rows.size])
            files["manifest.json"] = json_writer(
                {"kind": KIND, "dim": self._dim, "rows": self._rows.size}
            )
            write_snapshot(root, files)

    def load(self) -> None:
        """Replace the contents with the current snapshot of :attr:`path`.

        Raises:
            VectorIndexError: If nothing was saved there, or the files are inconsistent.

        """
        root = self._require_path()
        folder = current_snapshot(root)
        if folder is None:
            raise VectorIndexError(f"no saved index in {root}")
        read_manifest(folder, kind=KIND, dim=self._dim)
        rows = RowStore.read(folder)
        try:
            vectors = np.load(folder / "vectors.npy", allow_pickle=False)
        except (OSError, ValueError) as err:
            raise VectorIndexError(f"cannot read {folder / 'vectors.npy'}: {err}") from err
        if vectors.shape != (rows.size, self._dim) or vectors.dtype != np.float32:
            raise VectorIndexError(
                f"expected {rows.size} float32 vectors of {self._dim} in {folder}, but got "
                f"{vectors.dtype} {vectors.shape}"
            )
        with self._lock:
            self._rows, self._vectors = rows, vectors

    def _require_path(self) -> Path:
        if self.path is None:
            raise VectorIndexError("this index has no path: it lives in memory only")
        return self.path
