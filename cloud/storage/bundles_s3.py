"""Model bundles in an S3-compatible bucket: ``<prefix>models/<sha256>.tar``.

An upload is received and validated in a local temporary file (the API's temp folder), then
put once, with ``If-None-Match: *`` and its sha256 for the store to verify: a bundle never
appears half-written, and a second upload of the same bundle writes nothing. Nothing is
left in the bucket by an upload that fails, so :meth:`S3BundleStore.sweep` has only the
local temporary files to remove.
"""

from __future__ import annotations

import logging
import re
import tempfile
import uuid
from pathlib import Path
from typing import Literal

from lensflow.cloud.storage.crops_base import NotStoredError, ObjectStream, Redirect, checked_sha256
from lensflow.cloud.storage.s3_client import S3Location

logger = logging.getLogger(__name__)

_RANGE = re.compile(r"^bytes=\d+-\d*$")  # one range, the form a resumed download sends


class S3BundleStore:
    """Bundle objects in a bucket, content-addressed by sha256 (a ``BundleStorage``)."""

    def __init__(
        self,
        location: S3Location,
        *,
        serve: Literal["stream", "redirect"] = "stream",
        temp_folder: Path | None = None,
    ) -> None:
        """Keep bundles under ``location``.

        Args:
            location: The client, bucket and key prefix.
            serve: ``stream`` the bytes through the API, or ``redirect`` to a presigned URL.
            temp_folder: Where uploads are received; a ``lensflow-bundle-uploads`` folder in
                the system's temporary folder when None.

        """
        self.location = location
        self.serve_mode = serve
        self.temp_folder = temp_folder or Path(tempfile.gettempdir()) / "lensflow-bundle-uploads"

    def key(self, sha256: str) -> str:
        """The bundle's object key, ``<prefix>models/<sha256>.tar``.

        Raises:
            StorageError: ``sha256`` is not 64 lowercase hex digits.

        """
        return f"{self.location.prefix}models/{checked_sha256(sha256)}.tar"

    def temp_file(self) -> Path:
        """A new local path to receive an upload into."""
        self.temp_folder.mkdir(parents=True, exist_ok=True)
        return self.temp_folder / f".upload-{uuid.uuid4().hex}.tmp"

    def commit(self, temp: Path, sha256: str) -> None:
        """Put the validated upload under its sha256 unless it is there already.

        Raises:
            StorageError: The put failed, or the object there holds other bytes.

        """
        key = self.key(sha256)
        size = temp.stat().st_size
        with temp.open("rb") as body:
            if self.location.put_if_absent(key, body, sha256=sha256):
                logger.info("model registry: stored bundle %s (%d bytes) at %s", sha256, size, key)
                return
        self.location.confirm_stored(key, size=size, sha256=sha256)

    def serve(self, sha256: str, *, byte_range: str | None = None) -> ObjectStream | Redirect:
        """The bundle's bytes in chunks (the asked range of them), or a presigned URL.

        Args:
            sha256: The bundle's hash.
            byte_range: The client's ``Range`` header; honoured when it is one ``bytes=a-``
                or ``bytes=a-b`` range (the whole bundle is sent otherwise).

        Raises:
            NotStoredError: No such bundle object.
            StorageError: The store failed.

        """
        key = self.key(sha256)
        if self.serve_mode == "redirect":
            if self.location.size(key) is None:
                raise NotStoredError(f"expected a bundle at {self.location.url(key)}, got none")
            return Redirect(self.location.presign(key))
        asked = byte_range if byte_range and _RANGE.fullmatch(byte_range) else None
        answer = self.location.open(key, byte_range=asked)
        if answer is None:
            raise NotStoredError(f"expected a bundle at {self.location.url(key)}, got none")
        return ObjectStream(
            chunks=self.location.chunks(answer["Body"]),
            size=int(answer["ContentLength"]),
            content_range=answer.get("ContentRange") if asked else None,
        )

    def sweep(self) -> int:
        """Remove the local files of uploads that never finished; how many."""
        return sweep_uploads(self.temp_folder)


def sweep_uploads(folder: Path) -> int:
    """Remove the ``.upload-*.tmp`` files of uploads that never finished in ``folder``; how many.

    Both bundle stores receive an upload into such a file first (the folder store beside its
    bundles, the S3 store in a local folder).
    """
    if not folder.is_dir():
        return 0
    stale = list(folder.glob(".upload-*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        logger.info("model registry: removed %d unfinished uploads", len(stale))
    return len(stale)
