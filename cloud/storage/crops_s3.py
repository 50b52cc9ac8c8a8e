"""The S3 crop store: crop JPEGs in an S3-compatible bucket, keyed by the sha256 of their bytes.

A crop with hash ``abcdef…`` is the object ``<prefix>crops/ab/cd/abcdef….jpg``. A put checks
the bytes against the announced hash first, then creates the object with a conditional put
(``If-None-Match: *``) that also sends the sha256 for the store to verify; when the object
already exists (412, or 409 for a concurrent writer) the stored size is compared and the put
is the no-op it should be. An object put is atomic: a reader never sees a partial crop.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Literal

from lensflow.cloud.storage.crops_base import (
    Content,
    NotStoredError,
    Redirect,
    checked_sha256,
    crop_key,
)
from lensflow.cloud.storage.errors import StorageError
from lensflow.cloud.storage.s3_client import S3Location

logger = logging.getLogger(__name__)

WRITERS = 16
"""Threads that put the crops of one :meth:`S3CropStore.put_many` at once (S3 latency bound)."""


class S3CropStore:
    """Crop JPEGs in a bucket, content-addressed by sha256 (a :class:`CropStore`)."""

    def __init__(
        self, location: S3Location, *, serve: Literal["stream", "redirect"] = "stream"
    ) -> None:
        """Keep crops under ``location`` (the bucket must exist).

        Args:
            location: The client, bucket and key prefix.
            serve: ``stream``: :meth:`serve` hands the API the bytes; ``redirect``: a
                presigned URL the client fetches itself.

        """
        self.location = location
        self.serve_mode = serve
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def key(self, sha256: str) -> str:
        """The object key of the crop with this hash (``<prefix>crops/ab/cd/<sha256>.jpg``).

        Raises:
            StorageError: ``sha256`` is not 64 lowercase hex digits.

        """
        return crop_key(sha256, prefix=self.location.prefix)

    def put(self, data: bytes, *, expected_sha256: str | None = None) -> str:
        """Store ``data`` once (a second put of the same bytes writes nothing); its sha256.

        Args:
            data: The JPEG bytes.
            expected_sha256: The hash the sender announced; bytes with another are refused.

        Returns:
            The sha256 of ``data``, the key to :meth:`get` it back.

        Raises:
            StorageError: The bytes do not have the expected hash (no cause: not transient),
                or the store failed (transient ones are caused by a ``ConnectionError``).

        """
        sha256 = hashlib.sha256(data).hexdigest()
        if expected_sha256 is not None and expected_sha256 != sha256:
            raise StorageError(
                f"expected crop bytes with sha256 {expected_sha256!r}, got bytes with {sha256!r}"
            )
        key = self.key(sha256)
        if self.location.put_if_absent(key, data, sha256=sha256):
            logger.debug("stored crop %s (%d bytes) at %s", sha256, len(data), key)
            return sha256
        self.location.confirm_stored(key, size=len(data), sha256=sha256)
        return sha256

    def put_many(self, items: Sequence[tuple[bytes, str | None]]) -> list[str]:
        """Store several crops at once, their puts in flight together.

        Args:
            items: ``(data, expected_sha256)`` pairs, as :meth:`put` takes them.

        Returns:
            The sha256 of each item, in order.

        Raises:
            StorageError: The first error of an item (the others are still attempted).

        """
        if len(items) <= 1:
            return [self.put(data, expected_sha256=expected) for data, expected in items]
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(WRITERS, thread_name_prefix="crop-store-s3")
            pool = self._pool
        futures = [
            pool.submit(self.put, data, expected_sha256=expected) for data, expected in items
        ]
        wait(futures)
        return [future.result() for future in futures]

    def get(self, sha256: str) -> bytes:
        """Read back the crop with this hash.

        Raises:
            NotStoredError: No such crop is stored.
            StorageError: The hash is malformed, or the store failed.

        """
        key = self.key(sha256)
        data = self.location.read(key)
        if data is None:
            raise NotStoredError(
                f"expected a stored crop {sha256} at {self.location.url(key)}, got none"
            )
        return data

    def exists(self, sha256: str) -> bool:
        """Whether a crop with this hash is stored (a HEAD request).

        Raises:
            StorageError: The hash is malformed, or the store failed.

        """
        return self.location.size(self.key(sha256)) is not None

    def serve(self, sha256: str) -> Content | Redirect:
        """The crop's bytes, or (``serve: redirect``) a presigned URL to them.

        Raises:
            NotStoredError: No such crop is stored (checked in both modes, so the API's 404
                does not become the store's).
            StorageError: The store failed.

        """
        if self.serve_mode == "stream":
            return Content(self.get(sha256))
        if not self.exists(checked_sha256(sha256)):
            raise NotStoredError(
                f"expected a stored crop {sha256} at {self.location.url(self.key(sha256))}, "
                "got none"
            )
        return Redirect(self.location.presign(self.key(sha256)))

    def close(self) -> None:
        """Stop the writer threads of :meth:`put_many` (a later call starts them again)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
