"""What every crop store is: the :class:`CropStore` interface, its keys and how it serves.

The implementations live beside it (``crops_folder``, ``crops_s3``); ``crops`` opens the
one a config names. The served forms (:class:`LocalFile`, :class:`Redirect`,
:class:`Content`, :class:`ObjectStream`) and :class:`NotStoredError` are shared with the
model bundle stores.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from lensflow.cloud.storage.errors import StorageError

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class NotStoredError(StorageError):
    """The store holds no object under the asked key (a crop or bundle never stored, or lost)."""


@dataclass(frozen=True)
class LocalFile:
    """A stored object that is a local file: the API sends it itself (ranges included)."""

    path: Path
    stat: os.stat_result


@dataclass(frozen=True)
class Redirect:
    """A stored object the client fetches itself, from a presigned URL (the API answers 307)."""

    url: str


@dataclass(frozen=True)
class Content:
    """A stored object's bytes, read whole (crops are small)."""

    data: bytes


@dataclass(frozen=True)
class ObjectStream:
    """A stored object (or the asked byte range of it) read in chunks, for large bundles."""

    chunks: Iterator[bytes]
    size: int
    """Bytes in ``chunks``."""
    content_range: str | None = None
    """``bytes a-b/total`` when a range was asked and answered (the API then answers 206)."""


Served = LocalFile | Redirect | Content
"""How a crop reaches an API client."""


class CropStore(Protocol):
    """Crop JPEGs, content-addressed by sha256: the same bytes always have the same key."""

    def put(self, data: bytes, *, expected_sha256: str | None = None) -> str:
        """Store ``data`` idempotently; its sha256 (refused if not ``expected_sha256``)."""
        ...

    def put_many(self, items: Sequence[tuple[bytes, str | None]]) -> list[str]:
        """Store ``(data, expected_sha256)`` pairs concurrently; their sha256s, in order."""
        ...

    def get(self, sha256: str) -> bytes:
        """The bytes stored under ``sha256`` (:class:`NotStoredError` if none)."""
        ...

    def exists(self, sha256: str) -> bool:
        """Whether a crop with this sha256 is stored."""
        ...

    def serve(self, sha256: str) -> Served:
        """How the API hands the crop out (:class:`NotStoredError` if none is stored)."""
        ...

    def close(self) -> None:
        """Release threads and connections (a later call opens them again)."""
        ...


def checked_sha256(sha256: object) -> str:
    """``sha256`` if it is 64 lowercase hex digits.

    Raises:
        StorageError: Otherwise (no cause: the key is refused, not the store down).

    """
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise StorageError(f"expected a sha256 of 64 lowercase hex digits, got {sha256!r}")
    return sha256


def crop_key(sha256: str, *, prefix: str = "") -> str:
    """The object key (or relative path) of a crop: ``<prefix>crops/ab/cd/<sha256>.jpg``.

    Raises:
        StorageError: ``sha256`` is not 64 lowercase hex digits.

    """
    checked_sha256(sha256)
    return f"{prefix}crops/{sha256[:2]}/{sha256[2:4]}/{sha256}.jpg"
