"""Storage of the cloud tier: the results database (SQLAlchemy + Alembic) and the crop store.

Public API:

- :func:`~cloud.storage.db.create_engine_for`, :func:`~cloud.storage.db.migrate`,
  :func:`~cloud.storage.db.session_factory` — engines, schema migrations, ORM sessions.
- :class:`~cloud.storage.repository.ResultStore` — idempotent writes of crop results,
  dead letters and edge status, plus the reads tests need.
- :class:`~cloud.storage.crops.CropStore` — crop JPEGs in a folder, keyed by sha256.
- :class:`~cloud.storage.errors.StorageError` — the one exception of this package.
"""

from cloud.storage.crops import CropStore
from cloud.storage.db import create_engine_for, migrate, session_factory
from cloud.storage.errors import StorageError
from cloud.storage.repository import ResultStore

__all__ = [
    "CropStore",
    "ResultStore",
    "StorageError",
    "create_engine_for",
    "migrate",
    "session_factory",
]
