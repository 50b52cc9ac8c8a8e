"""The edge side of receipts: crops leave the spool when the cloud confirms them.

See :mod:`lensflow.shared.protocol.receipts` for why a broker's PUBACK is not enough. The
publisher hands receipt messages to :meth:`ReceiptKeeper.on_receipts`, asks it how long a
published crop may wait for its receipt before it is sent again, and lets it give up on
crops sent too often (:meth:`ReceiptKeeper.expire`).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from lensflow.edge.spool import Spool
from lensflow.shared.errors import ProtocolError
from lensflow.shared.protocol.receipts import decode_receipts

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReceiptPolicy:
    """Keep crops until the cloud confirms them.

    Attributes:
        timeout_s: A published crop without a receipt after this long is sent again.
        max_sends: A crop sent this many times without a receipt is given up on (counted as
            expired): the cloud could not read it well enough to confirm it.

    """

    timeout_s: float = 30.0
    max_sends: int = 20


class ReceiptKeeper:
    """Applies receipts to the spool and gives up on crops that never get one; thread-safe."""

    def __init__(self, spool: Spool, policy: ReceiptPolicy) -> None:
        """Keep ``spool``'s crops by ``policy``."""
        self.spool, self.policy = spool, policy
        self._lock = threading.Lock()
        self.confirmed = 0

    def on_receipts(self, payload: bytes) -> int:
        """A receipt message from the cloud: its crops are committed, out of the spool they go.

        A malformed receipt is logged and ignored (its crops stay, and are sent again).

        Returns:
            How many spooled crops it confirmed.

        """
        try:
            message = decode_receipts(payload)
        except ProtocolError as err:
            logger.warning("ignored a receipt message: %s", err)
            return 0
        confirmed = self.spool.confirm(receipt.crop_id for receipt in message.receipts)
        with self._lock:
            self.confirmed += confirmed
        logger.debug(
            "receipts worker=%s crops=%d confirmed=%d",
            message.worker,
            len(message.receipts),
            confirmed,
        )
        return confirmed

    def expire(self) -> None:
        """Give up on crops sent too often without a receipt (logged, counted by the spool)."""
        given_up = self.spool.expire(self.policy.max_sends)
        if given_up:
            logger.warning(
                "gave up on %d crop(s) sent %d times without a receipt: %s",
                len(given_up),
                self.policy.max_sends,
                ", ".join(given_up[:5]) + (" ..." if len(given_up) > 5 else ""),
            )
