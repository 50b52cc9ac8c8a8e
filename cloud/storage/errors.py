"""The storage layer's exception: every database or crop-store failure is a StorageError."""

from __future__ import annotations

from lensflow.shared.errors import LensflowError


class StorageError(LensflowError):
    """The results database or the crop store failed, or was given something it cannot keep."""


class RangeNotSatisfiableError(StorageError):
    """A byte range starts at or past the object's end (HTTP 416: a resumed download is whole).

    Attributes:
        size: The object's size in bytes (``Content-Range: bytes */size``).

    """

    def __init__(self, message: str, *, size: int) -> None:
        """Keep the object's size with the message."""
        super().__init__(message)
        self.size = size
