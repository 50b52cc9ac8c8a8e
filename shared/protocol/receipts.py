"""Receipts: the cloud tells an edge which of its crops are committed (end-to-end delivery).

A broker's PUBACK only says the broker has a crop; a broker that crashes before it saves its
queue loses it. So an edge keeps every crop in its spool until a worker, *after* committing
it (results stored, or a dead letter written), publishes a receipt on the camera's
``receipts`` topic; crops without one are sent again after a timeout, and the results'
idempotency on ``crop_id`` absorbs the duplicates. See ``docs/protocol.md`` (Receipts).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import Field

from lensflow.shared.protocol.codec import parse_json, revalidated_json, sized_bytes
from lensflow.shared.protocol.messages import SCHEMA_VERSION, SchemaVersion, UtcDatetime, WireModel

MAX_RECEIPTS = 1000
"""Most crops one receipt message confirms."""
MAX_RECEIPT_BYTES = 256 * 1024
"""Largest receipt message accepted, in bytes."""

Outcome = Literal["stored", "duplicate", "dead_letter"]
"""What the cloud did with a crop: stored its results, already had it, or dead-lettered it."""


class CropReceipt(WireModel):
    """One crop's fate."""

    crop_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="The crop's id.")
    outcome: Outcome = Field(description="stored, duplicate or dead_letter.")
    reason: Annotated[str, Field(max_length=512)] | None = Field(
        default=None, description="Why a dead letter is one; null otherwise."
    )


class ReceiptMessage(WireModel):
    """The crops of one camera that a worker committed in one batch."""

    schema_version: SchemaVersion = Field(default=SCHEMA_VERSION, description="Must be 1.")
    worker: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$", description="The worker that committed."
    )
    committed_at: UtcDatetime = Field(description="When the batch was committed (aware, UTC).")
    receipts: list[CropReceipt] = Field(
        min_length=1, max_length=MAX_RECEIPTS, description="The committed crops."
    )


def receipt_messages(
    receipts: list[CropReceipt], *, worker: str, committed_at: datetime | None = None
) -> list[ReceiptMessage]:
    """The receipts of one camera, cut into messages of at most :data:`MAX_RECEIPTS`."""
    when = committed_at or datetime.now(UTC)
    return [
        ReceiptMessage(worker=worker, committed_at=when, receipts=receipts[at : at + MAX_RECEIPTS])
        for at in range(0, len(receipts), MAX_RECEIPTS)
    ]


def encode_receipts(message: ReceiptMessage) -> bytes:
    """Serialize a receipt message to UTF-8 JSON (re-validating it).

    Raises:
        ProtocolError: If the message is invalid.

    """
    return revalidated_json(message, what="receipt message")


def decode_receipts(data: bytes, *, max_bytes: int = MAX_RECEIPT_BYTES) -> ReceiptMessage:
    """Parse a receipt message.

    Raises:
        ProtocolError: If the bytes are not a valid receipt message; never another exception.

    """
    raw = sized_bytes(data, max_bytes=max_bytes, what="receipt message")
    return parse_json(ReceiptMessage, raw, what="receipt message")
