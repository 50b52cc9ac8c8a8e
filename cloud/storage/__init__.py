"""Storage of the cloud tier: the results database (SQLAlchemy + Alembic) and the crop store.

Public API:

- :func:`~lensflow.cloud.storage.db.create_engine_for`, :func:`~lensflow.cloud.storage.db.migrate`,
  :func:`~lensflow.cloud.storage.db.session_factory` — engines, schema migrations, ORM sessions.
- :class:`~lensflow.cloud.storage.repository.ResultStore` — idempotent writes of crop results,
  dead letters and edge status, plus the reads tests need.
- :class:`~lensflow.cloud.storage.crops.CropStore` — crop JPEGs keyed by sha256: the interface;
  :class:`~lensflow.cloud.storage.crops_folder.FolderCropStore` (a folder) and
  :class:`~lensflow.cloud.storage.crops_s3.S3CropStore` (an S3 bucket) implement it, and
  :func:`~lensflow.cloud.storage.crops.open_crop_store` opens the one a config names.
- :class:`~lensflow.cloud.storage.errors.StorageError` — the one exception of this package.
"""

from lensflow.cloud.storage import (
    bundles,  # noqa: F401 - registers the model_bundles table
    models_loop,  # noqa: F401 - registers the loop's tables
    rollouts,  # noqa: F401 - registers the rollout and heartbeat tables
)
from lensflow.cloud.storage.crops import CropStore, NotStoredError, open_crop_store
from lensflow.cloud.storage.crops_folder import FolderCropStore
from lensflow.cloud.storage.db import create_engine_for, migrate, session_factory
from lensflow.cloud.storage.errors import StorageError
from lensflow.cloud.storage.repository import ResultStore

__all__ = [
    "CropStore",
    "FolderCropStore",
    "NotStoredError",
    "ResultStore",
    "StorageError",
    "create_engine_for",
    "migrate",
    "open_crop_store",
    "session_factory",
]
