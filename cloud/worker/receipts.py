"""Receipts the worker owes the edges: which crops of a batch are committed, per camera.

Collected while a batch is stored and published once it is (after the commit, never
before), one message per camera topic (``lensflow/v1/{site}/{camera}/receipts``), through the
intake's broker. A receipt that is lost only makes the edge send the crop again.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from lensflow.shared.errors import ProtocolError
from lensflow.shared.protocol import parse_topic, receipts_topic
from lensflow.shared.protocol.receipts import (
    CropReceipt,
    Outcome,
    encode_receipts,
    receipt_messages,
)

logger = logging.getLogger(__name__)

_REASON_MAX = 512


class ReceiptBook:
    """Receipts of one batch, by receipts topic."""

    def __init__(self, worker: str) -> None:
        """Collect receipts signed by ``worker`` (its name, made fit for the message)."""
        self.worker = re.sub(r"[^A-Za-z0-9_.:@-]", "_", worker)[:128].lstrip("_.:@-") or "worker"
        self._by_topic: dict[str, list[CropReceipt]] = {}

    def add(
        self, crops_topic: str, crop_id: str | None, outcome: Outcome, reason: str = ""
    ) -> None:
        """Owe a receipt for the crop that came on ``crops_topic`` (nothing without a crop id)."""
        if crop_id is None:
            return
        try:
            parts = parse_topic(crops_topic)
        except ProtocolError:
            return  # not a lensflow crops topic: there is no camera to tell
        topic = receipts_topic(site=parts.site, camera=parts.camera)
        receipt = CropReceipt(
            crop_id=crop_id,
            outcome=outcome,
            reason=reason[:_REASON_MAX] if outcome == "dead_letter" else None,
        )
        self._by_topic.setdefault(topic, []).append(receipt)

    def flush(self, publish: Callable[[str, bytes], None]) -> int:
        """Publish what is owed and forget it; returns how many crops were confirmed."""
        sent = 0
        for topic, receipts in self._by_topic.items():
            for message in receipt_messages(receipts, worker=self.worker):
                try:
                    publish(topic, encode_receipts(message))
                except ProtocolError as err:  # a bug: the receipt is built here
                    logger.error("receipt for %s not encoded: %s", topic, err)
                    continue
                sent += len(message.receipts)
        self._by_topic.clear()
        return sent
