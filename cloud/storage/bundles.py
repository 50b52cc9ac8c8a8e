"""Model bundles in the registry: their files beside the crops, their rows in the DB.

:class:`BundleStorage` is what the registry's routes use; :func:`open_bundle_store` opens the
one ``crop_store:`` names: :class:`BundleStore` (a folder, below) or
:class:`~lensflow.cloud.storage.bundles_s3.S3BundleStore` (``<prefix>models/<sha>.tar`` in
a bucket, uploaded with a conditional put once validated in a local temporary file).

In a folder, a bundle with sha256 ``abcdef…`` lives at ``<crop_store>/models/abcdef….tar`` (the crop
tree uses two-hex-digit folders, so ``models`` never collides). An upload is written to a
``.upload-*.tmp`` file in the same folder and renamed over the target only once it is
complete and valid: a killed upload leaves no visible bundle, only a temporary file that
:meth:`BundleStore.sweep` removes. The ``model_bundles`` table (migration 0009) lists what
the registry has, with each bundle's model card; the file is the content, the row the index.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import BigInteger, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from lensflow.cloud.storage.bundles_s3 import S3BundleStore, sweep_uploads
from lensflow.cloud.storage.crops_base import LocalFile, NotStoredError, ObjectStream, Redirect
from lensflow.cloud.storage.errors import StorageError
from lensflow.cloud.storage.models import Base, JsonDoc, UtcDateTime, utcnow
from lensflow.cloud.storage.s3_client import S3Location
from lensflow.shared.config.cloud import FolderCropStoreConfig, S3CropStoreConfig

logger = logging.getLogger(__name__)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
FOLDER = "models"
"""The bundles' folder under the crop store's root (and their key prefix in a bucket)."""

ServedBundle = LocalFile | Redirect | ObjectStream
"""How a bundle reaches an API client."""


class ModelBundleRow(Base):
    """A model bundle the registry holds, with its card (as uploaded)."""

    __tablename__ = "model_bundles"
    __table_args__ = (Index("ix_model_bundles_created_at", "created_at"),)

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    size: Mapped[int] = mapped_column(BigInteger)
    card: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(128))


class BundleStorage(Protocol):
    """Model bundle files, content-addressed by sha256, written only once complete and valid."""

    def temp_file(self) -> Path:
        """A new local path to receive an upload into (validated there before :meth:`commit`)."""
        ...

    def commit(self, temp: Path, sha256: str) -> None:
        """Make a complete, validated upload available under its sha256."""
        ...

    def serve(self, sha256: str, *, byte_range: str | None = None) -> ServedBundle:
        """How the API hands the bundle out (:class:`NotStoredError` if it is not stored)."""
        ...

    def sweep(self) -> int:
        """Remove what uploads that never finished left behind; how many."""
        ...


class BundleStore:
    """Bundle files in ``<root>/models``, content-addressed by sha256 (a :class:`BundleStorage`)."""

    def __init__(self, root: Path | str) -> None:
        """Keep bundles under ``root`` (the crop store's folder); created on the first upload."""
        self.folder = Path(root) / FOLDER

    def path(self, sha256: str) -> Path:
        """Where the bundle with this sha256 is (or would be).

        Raises:
            StorageError: ``sha256`` is not 64 lowercase hex digits.

        """
        if not _SHA256.fullmatch(sha256):
            raise StorageError(f"expected a sha256 of 64 lowercase hex digits, got {sha256!r}")
        return self.folder / f"{sha256}.tar"

    def temp_file(self) -> Path:
        """A new temporary upload path in the bundles' folder (same file system as the target)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder / f".upload-{uuid.uuid4().hex}.tmp"

    def commit(self, temp: Path, sha256: str) -> None:
        """Make a complete, validated upload visible under its sha256 (fsync, then rename)."""
        with temp.open("rb") as stream:
            os.fsync(stream.fileno())
        os.replace(temp, self.path(sha256))

    def serve(self, sha256: str, *, byte_range: str | None = None) -> LocalFile:
        """The bundle's file (the API answers ``Range`` requests from it itself).

        Raises:
            NotStoredError: No such bundle file.
            StorageError: ``sha256`` is malformed, or the folder cannot be read.

        """
        target = self.path(sha256)
        try:
            return LocalFile(path=target, stat=target.stat())
        except FileNotFoundError:
            raise NotStoredError(f"expected a bundle file at {target}, got none") from None
        except OSError as err:
            raise StorageError(f"could not read bundle {sha256} at {target}: {err}") from err

    def sweep(self) -> int:
        """Remove the temporary files of uploads that never finished; how many."""
        return sweep_uploads(self.folder)


def open_bundle_store(config: FolderCropStoreConfig | S3CropStoreConfig) -> BundleStorage:
    """The bundle store beside the crops a config names (``crop_store:`` of the cloud config).

    Raises:
        StorageError: The S3 client cannot be built from the config.

    """
    if config.type == "folder":
        return BundleStore(config.path)
    return S3BundleStore(S3Location.from_config(config, connections=4), serve=config.serve)
