"""The storage layer's exception: every database or crop-store failure is a StorageError."""

from __future__ import annotations

from lensflow.shared.errors import LensflowError


class StorageError(LensflowError):
    """The results database or the crop store failed, or was given something it cannot keep."""
