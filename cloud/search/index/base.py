"""The vector index contract: :class:`VectorIndex`, its metadata and filters, input checks.

Vectors are embeddings compared by inner product after L2 normalisation, so a score is the
cosine similarity (1.0 is the same direction). Every backend normalises what it is given.
Ids are the caller's non-negative 64-bit integers (the crops table's primary key).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lensflow.cloud.search.errors import SearchInputError

Vectors = NDArray[np.float32]
"""A ``(n, dim)`` float32 array."""
Hit = tuple[int, float]
"""One search result: the id and its cosine similarity to the query."""


def epoch_s(moment: datetime | float) -> float:
    """Seconds since the epoch of an aware datetime (or a number, returned as a float).

    Raises:
        SearchInputError: If ``moment`` is a naive datetime (its zone would be a guess).

    """
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            raise SearchInputError(f"expected a timezone-aware datetime, but got {moment!r}")
        return moment.timestamp()
    return float(moment)


@dataclass(frozen=True)
class Metadata:
    """What a filter can select on, one entry per vector, as columns.

    Attributes:
        cameras: Camera id of each vector.
        classes: Detected class name of each vector.
        captured_at: Capture time of each vector, seconds since the epoch (UTC).

    """

    cameras: tuple[str, ...]
    classes: tuple[str, ...]
    captured_at: NDArray[np.float64] = field(repr=False)

    def __post_init__(self) -> None:
        times = np.ascontiguousarray(self.captured_at, dtype=np.float64).reshape(-1)
        object.__setattr__(self, "captured_at", times)
        sizes = (len(self.cameras), len(self.classes), len(times))
        if len(set(sizes)) != 1:
            raise SearchInputError(
                "metadata columns must have one entry per vector, but got "
                f"{sizes[0]} cameras, {sizes[1]} classes and {sizes[2]} times"
            )
        if not np.isfinite(times).all():
            raise SearchInputError("captured_at must be finite seconds since the epoch")

    @classmethod
    def of(cls, rows: Iterable[tuple[str, str, datetime | float]]) -> Metadata:
        """Build columns from ``(camera, class_name, captured_at)`` rows."""
        cameras, classes, times = [], [], []
        for camera, class_name, moment in rows:
            cameras.append(camera)
            classes.append(class_name)
            times.append(epoch_s(moment))
        return cls(tuple(cameras), tuple(classes), np.asarray(times, dtype=np.float64))

    def __len__(self) -> int:
        return len(self.cameras)


@dataclass(frozen=True)
class SearchFilter:
    """Which vectors a search may return; ``None`` leaves that dimension open.

    Attributes:
        cameras: Only these cameras.
        classes: Only these class names.
        since: Captured at or after this time (epoch seconds), inclusive.
        until: Captured before this time (epoch seconds), exclusive.

    """

    cameras: frozenset[str] | None = None
    classes: frozenset[str] | None = None
    since: float | None = None
    until: float | None = None

    def __post_init__(self) -> None:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise SearchInputError(
                f"time range must have since < until, but got {self.since} >= {self.until}"
            )

    @classmethod
    def of(
        cls,
        *,
        cameras: Iterable[str] | str | None = None,
        classes: Iterable[str] | str | None = None,
        since: datetime | float | None = None,
        until: datetime | float | None = None,
    ) -> SearchFilter:
        """Build a filter from single values or collections, and aware datetimes or epochs."""
        return cls(
            cameras=_names(cameras),
            classes=_names(classes),
            since=None if since is None else epoch_s(since),
            until=None if until is None else epoch_s(until),
        )

    @property
    def is_open(self) -> bool:
        """Whether the filter lets every vector through."""
        return all(value is None for value in (self.cameras, self.classes, self.since, self.until))


def _names(value: Iterable[str] | str | None) -> frozenset[str] | None:
    """One name or a collection of names as a frozenset."""
    if value is None:
        return None
    return frozenset([value] if isinstance(value, str) else value)


@runtime_checkable
class VectorIndex(Protocol):
    """Nearest neighbours of embeddings by cosine similarity, with metadata filters."""

    @property
    def dim(self) -> int:
        """The dimension every vector must have."""
        ...

    def add(self, ids: ArrayLike, vectors: ArrayLike, metadata: Metadata) -> None:
        """Insert vectors (an id already present is replaced).

        Args:
            ids: ``n`` distinct non-negative integers.
            vectors: ``(n, dim)`` numbers; each is L2-normalised before it is stored.
            metadata: ``n`` entries: camera, class name, capture time.

        Raises:
            SearchInputError: If the shapes, ids or values are not as described.

        """
        ...

    def remove(self, ids: ArrayLike) -> int:
        """Delete vectors by id; unknown ids are ignored. Returns how many were deleted."""
        ...

    def search(
        self, vector: ArrayLike, *, k: int = 10, filters: SearchFilter | None = None
    ) -> list[Hit]:
        """The ``k`` stored vectors most similar to ``vector`` that pass ``filters``.

        Fewer than ``k`` come back only when fewer than ``k`` vectors pass the filters.

        Returns:
            ``(id, score)`` pairs, best first; the score is the cosine similarity.

        """
        ...

    def count(self) -> int:
        """How many vectors are stored (deleted ones excluded)."""
        ...

    def save(self) -> None:
        """Persist everything added so far (atomically: a crash keeps the previous save)."""
        ...

    def load(self) -> None:
        """Replace what is in memory with the last save."""
        ...


def as_unit_vectors(vectors: ArrayLike, *, dim: int) -> Vectors:
    """Check ``vectors`` is ``(n, dim)`` or ``(dim,)`` finite numbers; return them L2-normalised.

    Raises:
        SearchInputError: On a wrong shape, a non-finite value or a zero vector.

    """
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2 or array.shape[1] != dim:
        raise SearchInputError(
            f"vectors must have shape (n, {dim}) or ({dim},), but got {np.shape(vectors)}"
        )
    if not np.isfinite(array).all():
        raise SearchInputError("vectors must be finite numbers, but got NaN or infinity")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if (norms == 0).any():
        raise SearchInputError("vectors must be non-zero to be normalised, but got a zero vector")
    return np.ascontiguousarray(array / norms, dtype=np.float32)


def as_ids(ids: ArrayLike, *, count: int | None = None) -> NDArray[np.int64]:
    """Check ``ids`` are distinct non-negative integers (``count`` of them when given).

    Raises:
        SearchInputError: If they are not.

    """
    raw = np.asarray(ids)
    if raw.ndim == 0:
        raw = raw.reshape(1)
    if raw.ndim != 1 or (raw.size and not np.issubdtype(raw.dtype, np.integer)):
        raise SearchInputError(f"ids must be a list of integers, but got {raw.dtype} {raw.shape}")
    array = raw.astype(np.int64)
    if count is not None and array.size != count:
        raise SearchInputError(f"expected {count} ids (one per vector), but got {array.size}")
    if array.size and int(array.min()) < 0:
        raise SearchInputError(f"ids must be >= 0, but got {int(array.min())}")
    if np.unique(array).size != array.size:
        raise SearchInputError("ids must be distinct within one call, but some repeat")
    return array


def check_k(k: int) -> None:
    """Raise :class:`SearchInputError` unless ``1 <= k <= 10_000``."""
    if not 1 <= k <= 10_000:
        raise SearchInputError(f"k must be between 1 and 10000, but got {k}")


def check_batch(
    ids: ArrayLike, vectors: ArrayLike, metadata: Metadata, *, dim: int
) -> tuple[NDArray[np.int64], Vectors]:
    """Validate one :meth:`VectorIndex.add` call; return the ids and the unit vectors."""
    unit = as_unit_vectors(vectors, dim=dim)
    checked = as_ids(ids, count=len(unit))
    if len(metadata) != len(unit):
        raise SearchInputError(
            f"expected one metadata entry per vector ({len(unit)}), but got {len(metadata)}"
        )
    return checked, unit


def top_k(scores: NDArray[np.float32], k: int) -> NDArray[np.intp]:
    """Positions of the ``k`` largest finite ``scores``, best first."""
    k = min(k, int(np.isfinite(scores).sum()))
    if k <= 0:
        return np.empty(0, dtype=np.intp)
    part = np.argpartition(-scores, k - 1)[:k] if k < scores.size else np.arange(scores.size)
    order = np.argsort(-scores[part], kind="stable")
    return part[order][:k]


def hits(ids: Sequence[int] | NDArray[np.int64], scores: Sequence[float]) -> list[Hit]:
    """Zip ids and scores into plain Python ``(int, float)`` pairs."""
    return [(int(i), float(s)) for i, s in zip(ids, scores, strict=True)]
