"""Before the DAG: which deliveries of a batch are new, re-deliveries, conflicts or dead letters.

A re-delivery storm must cost little: the envelopes are parsed and their crop ids looked up in
one query before any JPEG is decoded or any classifier runs. A ``crop_id`` already stored with
the same JPEG is a duplicate (acknowledged, confirmed, nothing else); with another JPEG it is
a conflict (a dead letter naming both hashes: writes are idempotent on ``crop_id``, so the
second image would otherwise vanish silently). A crop id seen twice in one batch is processed
once; the later copies follow the first one's outcome. So do the crop ids of the previous
batch, whose commit may still be under way when this one is sorted out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from lensflow.cloud.worker.intake import Delivery
from lensflow.shared.errors import ProtocolError
from lensflow.shared.protocol import CropMessage, decode_crop
from lensflow.shared.protocol.envelope import peek_crop_id

DeadLetterKind = Literal["protocol", "oversized", "image", "pipeline", "storage", "conflict"]


@dataclass(frozen=True)
class Letter:
    """A delivery to dead-letter: why, what kind, and its crop id when the header told it."""

    delivery: Delivery
    reason: str
    kind: DeadLetterKind
    crop_id: str | None = None


@dataclass
class Triage:
    """A batch sorted out.

    Attributes:
        fresh: New crops, to decode and run (first occurrence of each crop id).
        duplicates: Crops already stored with the same JPEG.
        copies: Later occurrences of a fresh crop id in this batch, or of one of the previous
            batch (same JPEG): they follow the first one's outcome.
        letters: Dead letters, in arrival order.

    """

    fresh: list[tuple[Delivery, CropMessage]] = field(default_factory=list)
    duplicates: list[tuple[Delivery, CropMessage]] = field(default_factory=list)
    copies: list[tuple[Delivery, CropMessage]] = field(default_factory=list)
    letters: list[Letter] = field(default_factory=list)


def triage(
    batch: Sequence[Delivery],
    *,
    max_bytes: int,
    known: Callable[[list[str]], dict[str, str]],
    in_flight: Mapping[str, str] | None = None,
) -> Triage:
    """Sort a batch out (see the module docstring).

    Args:
        batch: The deliveries, in arrival order.
        max_bytes: The largest crop message accepted.
        known: ``crop_id -> jpeg_sha256`` of the given crop ids already stored.
        in_flight: ``crop_id -> jpeg_sha256`` of the previous batch's crops, which may not
            be committed yet: one of them again is a copy (it follows that crop's outcome),
            or a conflict if its JPEG differs.

    Raises:
        StorageError: If the lookup fails (the caller retries; nothing is acknowledged).

    """
    sorted_out = Triage()
    parsed: list[tuple[Delivery, CropMessage]] = []
    for delivery in batch:
        message = _parse(delivery, max_bytes=max_bytes)
        if isinstance(message, Letter):
            sorted_out.letters.append(message)
        else:
            parsed.append((delivery, message))
    stored = known([message.header.crop_id for _, message in parsed])
    first = dict(in_flight or {})  # crop id -> JPEG sha256 of its first occurrence
    for delivery, message in parsed:
        header = message.header
        before = stored.get(header.crop_id, first.get(header.crop_id))
        if before is None:
            first[header.crop_id] = header.jpeg_sha256
            sorted_out.fresh.append((delivery, message))
        elif before != header.jpeg_sha256:
            reason = (
                f"crop_id {header.crop_id!r} is taken by a JPEG of sha256 {before}, but this "
                f"message carries {header.jpeg_sha256}: a conflict, not a re-delivery"
            )
            sorted_out.letters.append(Letter(delivery, reason, "conflict", header.crop_id))
        elif header.crop_id in stored:
            sorted_out.duplicates.append((delivery, message))
        else:
            sorted_out.copies.append((delivery, message))
    arrival = {id(delivery): index for index, delivery in enumerate(batch)}
    sorted_out.letters.sort(key=lambda letter: arrival[id(letter.delivery)])
    return sorted_out


def _parse(delivery: Delivery, *, max_bytes: int) -> CropMessage | Letter:
    """A delivery's envelope, or its dead letter (too large, invalid)."""
    size = len(delivery.payload)
    if size > max_bytes:
        reason = f"message must be at most max_message_bytes={max_bytes} bytes, but is {size}"
        return Letter(delivery, reason, "oversized", peek_crop_id(delivery.payload))
    try:
        return decode_crop(delivery.payload, max_bytes=max_bytes, topic=delivery.topic)
    except ProtocolError as err:
        reason = f"invalid crop message: {err}"
        return Letter(delivery, reason, "protocol", peek_crop_id(delivery.payload))
