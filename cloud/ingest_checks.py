"""The checks and errors of HTTP ingest: an upload's type and size, and every refusal.

Every refusal is an :class:`IngestError`, which the API translates once into its HTTP status.
"""

from __future__ import annotations

from lensflow.shared.errors import LensflowError
from lensflow.shared.images import describe_content, sniff_image_type

ACCEPTED_TYPES = ("image/jpeg", "image/png", "image/webp")
"""What an upload may be, by its magic bytes (its declared Content-Type is not trusted)."""


class IngestError(LensflowError):
    """Base of the errors of HTTP ingest."""


class IngestNotConfiguredError(IngestError):
    """The cloud config has no ``ingest`` section."""


class IngestUnavailableError(IngestError):
    """The detector or the pipeline could not be loaded (retried on the next upload)."""

    def __init__(self, part: str, cause: Exception) -> None:
        """Say which part could not be loaded, and why.

        Args:
            part: ``detector`` or ``pipeline``.
            cause: Why (it may name server paths: for the log).

        """
        super().__init__(f"ingest cannot load its {part}: {cause}")
        self.part = part


class UnsupportedImageError(IngestError):
    """The upload is not a JPEG, PNG or WebP image by its magic bytes."""


class ImageTooLargeError(IngestError):
    """The upload is larger than ``ingest.max_image_bytes``."""


class UndecodableImageError(IngestError):
    """The upload looks like an image but does not decode; it is kept as a dead letter."""

    def __init__(self, message: str, *, dead_letter_id: int) -> None:
        """Say why, and which dead letter keeps the upload.

        Args:
            message: Why the image does not decode.
            dead_letter_id: The dead letter that holds it.

        """
        super().__init__(message)
        self.dead_letter_id = dead_letter_id


def check_image_type(head: bytes, *, declared: str | None) -> str:
    """The media type of an upload by its leading bytes.

    Args:
        head: The upload's first bytes (16 are enough).
        declared: The Content-Type the client declared, only to report it.

    Returns:
        One of :data:`ACCEPTED_TYPES`.

    Raises:
        UnsupportedImageError: If the bytes are not those of a JPEG, PNG or WebP image.

    """
    media_type = sniff_image_type(head)
    if media_type is None:
        raise UnsupportedImageError(
            f"expected a JPEG, PNG or WebP image (judged by its content, not its name or "
            f"declared type), got {describe_content(head)} declared as {declared or 'nothing'}"
        )
    return media_type


def check_image_size(size: int, *, limit: int) -> None:
    """Refuse an upload of more than ``limit`` bytes.

    Raises:
        ImageTooLargeError: If ``size`` is over the limit.

    """
    if size > limit:
        raise ImageTooLargeError(
            f"expected an image of at most ingest.max_image_bytes={limit} bytes, got {size} bytes"
        )
