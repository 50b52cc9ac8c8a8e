"""The crop store: crop JPEGs keyed by the sha256 of their bytes, in a folder or a bucket.

:class:`CropStore` is the interface the worker, the API, replays and the bench use; two
implementations keep the same content-addressed layout (``ab/cd/<sha>.jpg``):

- :class:`~lensflow.cloud.storage.crops_folder.FolderCropStore`: a local or mounted folder,
  written atomically (temporary file, fsync, rename);
- :class:`~lensflow.cloud.storage.crops_s3.S3CropStore`: an S3-compatible bucket, written with
  a conditional put (``If-None-Match: *``), so a second writer of the same bytes is a no-op.

:func:`open_crop_store` builds the one a config names (``crop_store:`` in the cloud config).
Failures are :class:`~lensflow.cloud.storage.errors.StorageError`; one that may pass by itself
(the store unreachable, a 5xx, throttling) has an ``OSError`` as its ``__cause__``, which is
how the worker's retry tells it from refused data (a wrong sha256), which has none.
"""

from __future__ import annotations

from lensflow.cloud.storage.crops_base import (
    Content,
    CropStore,
    LocalFile,
    NotStoredError,
    ObjectStream,
    Redirect,
    Served,
    checked_sha256,
    crop_key,
)
from lensflow.cloud.storage.crops_folder import FolderCropStore
from lensflow.cloud.storage.crops_s3 import S3CropStore
from lensflow.cloud.storage.s3_client import S3Location
from lensflow.shared.config.cloud import FolderCropStoreConfig, S3CropStoreConfig

__all__ = [
    "Content",
    "CropStore",
    "FolderCropStore",
    "LocalFile",
    "NotStoredError",
    "ObjectStream",
    "Redirect",
    "S3CropStore",
    "Served",
    "checked_sha256",
    "crop_key",
    "open_crop_store",
]


def open_crop_store(config: FolderCropStoreConfig | S3CropStoreConfig) -> CropStore:
    """The crop store a config names (``crop_store:`` of the cloud config).

    Args:
        config: ``type: folder`` (a path) or ``type: s3`` (a bucket; credentials from the
            environment, boto3's usual chain).

    Returns:
        A :class:`FolderCropStore` or an :class:`S3CropStore`; nothing is contacted yet.

    Raises:
        StorageError: The S3 client cannot be built from the config.

    """
    if config.type == "folder":
        return FolderCropStore(config.path)
    return S3CropStore(S3Location.from_config(config), serve=config.serve)
