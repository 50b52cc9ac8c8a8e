"""Publish crops to MQTT at least once, through the on-disk spool, until the cloud confirms them.

:meth:`MqttPublisher.enqueue` only writes to the :class:`~lensflow.edge.spool.Spool` and
wakes the drain thread, which publishes the oldest rows with QoS 1, at most ``inflight``
unacknowledged. With a :class:`ReceiptPolicy` (the default) the PUBACK (``on_publish``) only
marks the row published: the cloud's receipt (:meth:`MqttPublisher.on_receipts`, subscribed on
the cameras' ``receipts`` topics) deletes it, and a published row without a receipt is sent
again after the policy's timeout, oldest first, within the same window — so a broker that
acknowledged a crop and then lost it (a crash before it saved its queue) loses nothing.
Without a policy the PUBACK deletes the row. paho's in-memory queue is never trusted: nothing
is published while disconnected, and on every (re)connect paho's leftovers are dropped and
the unacknowledged rows are published again from the spool, so receivers de-duplicate by
crop id.

paho calls ``on_publish`` holding its own out-message lock, so no thread here holds the
publisher's lock while calling into paho. Every callback catches and logs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from lensflow.edge.receipts import ReceiptKeeper, ReceiptPolicy
from lensflow.edge.spool import Spool, SpooledMessage, SpoolError
from lensflow.shared.config.common import MqttConfig
from lensflow.shared.mqtt import make_client

logger = logging.getLogger(__name__)

MessageHandler = Callable[[bytes], None]
"""Called with the payload of each message on a subscribed topic."""

_POLL_S = 0.2  # drain thread wake-up without a signal: settles missed acks, parked retries
_ERROR_BACKOFF_S = 1.0  # pause after a spool error so a full disk does not spin the thread
_REJECT_RETRY_S = 30.0  # a PUBACK with a failure reason parks the row this long
_STATUS_SLOTS = 4  # paho in-flight room for status messages beside the crop window
_STATUS_ACK_TIMEOUT_S = 2.0
_MAX_PAYLOAD = 268_435_455  # MQTT remaining-length limit


class MqttPublisher:
    """At-least-once MQTT publisher of spooled crops, with a retained status and last will.

    Args:
        config: Broker connection (host, port, protocol, credentials, TLS, backoff).
        spool: The on-disk queue crops go through.
        will_topic: The agent's status topic: its retained last will and final status.
        will_payload: The ``offline`` status: the last will, and what stop() publishes.
        client_id: MQTT client id; ``config.client_id`` when not given.
        inflight: Most crops sent and not yet acknowledged.
        receipts: Keep crops until the cloud's receipt; None: until the broker's PUBACK.

    Raises:
        ValueError: If no client id is given or ``inflight`` is not positive.

    """

    def __init__(
        self,
        config: MqttConfig,
        *,
        spool: Spool,
        will_topic: str,
        will_payload: bytes,
        client_id: str | None = None,
        inflight: int = 20,
        receipts: ReceiptPolicy | None = None,
    ) -> None:
        self.client_id = client_id or config.client_id or ""
        if not self.client_id or inflight < 1:
            raise ValueError(
                f"expected a client id and inflight >= 1, but got client_id="
                f"{self.client_id!r}, inflight={inflight}"
            )
        self._config, self._spool, self._window = config, spool, inflight
        self._keeper = ReceiptKeeper(spool, receipts) if receipts is not None else None
        self._will_topic, self._will_payload = will_topic, will_payload
        self._lock = threading.Lock()
        self._wake, self._stopping = threading.Event(), threading.Event()
        self._drain_thread: threading.Thread | None = None
        # the connection state below is guarded by self._lock
        self._generation = 0  # bumped on connect/disconnect: a publish across it is void
        self._ready = self._ever_connected = False
        self._inflight: dict[int, tuple[int, mqtt.MQTTMessageInfo]] = {}  # mid -> (row, info)
        self._failed_mids: set[int] = set()  # failure PUBACKs that beat their mid's mapping
        self._parked: dict[int, float] = {}  # row id -> monotonic time of the next try
        self._topics: set[str] = set()  # subscriptions, renewed on every connect
        self._retained: dict[str, bytes] = {}  # topic -> latest status, resent on connect
        self._counts = dict.fromkeys(("published", "acked", "rejected", "reconnects", "resent"), 0)
        self._client = self._build_client()

    def _build_client(self) -> mqtt.Client:
        """Create the paho client: protocol, credentials, TLS, will, backoff, callbacks."""
        client = make_client(self._config, client_id=self.client_id, persistent=False)
        client.will_set(self._will_topic, self._will_payload, qos=1, retain=True)
        client.max_inflight_messages_set(self._window + _STATUS_SLOTS)
        client.on_connect, client.on_disconnect = self._on_connect, self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_publish = self._on_publish
        return client

    def start(self) -> None:
        """Connect in the background (retrying with backoff) and start the drain thread."""
        if self._drain_thread is not None:
            raise RuntimeError("expected start() once per publisher, but it was called again")
        cfg = self._config  # clean start: the session state that matters lives in the spool
        self._client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive_s, clean_start=True)
        self._client.loop_start()
        name = f"mqtt-drain-{self.client_id}"
        self._drain_thread = threading.Thread(target=self._drain_loop, name=name, daemon=True)
        self._drain_thread.start()
        logger.info("publisher start client_id=%s broker=%s:%s", self.client_id, cfg.host, cfg.port)

    def enqueue(self, topic: str, payload: bytes, *, key: str) -> None:
        """Spool a message for publishing; it is on disk when this returns.

        Args:
            topic: Concrete MQTT topic (no wildcards).
            payload: Message bytes.
            key: De-duplication key (the crop id), for logs and receivers.

        Raises:
            ValueError: If the topic is empty or a filter, or the payload is over 256 MiB.
            SpoolError: If the spool cannot take it (larger than the spool, disk error).

        """
        if not topic or "+" in topic or "#" in topic or len(payload) > _MAX_PAYLOAD:
            what = f"topic {topic!r} and {len(payload)} bytes (key={key})"
            raise ValueError(f"expected a concrete topic and a payload under 256 MiB, got {what}")
        self._spool.put(topic, payload, key=key)
        self._wake.set()

    def publish_status(self, payload: bytes, *, topic: str | None = None) -> None:
        """Publish a retained QoS 1 message, kept in memory and resent on every reconnect.

        Args:
            payload: Encoded status (or config acknowledgement).
            topic: Where to publish; the will topic (the agent's status) when not given.

        """
        target = self._will_topic if topic is None else topic
        with self._lock:
            self._retained[target] = payload
            ready = self._ready
        if ready:
            self._publish_retained(target, payload)

    def subscribe(self, topic: str, handler: MessageHandler) -> None:
        """Subscribe (QoS 1, renewed on every reconnect); handler exceptions are only logged.

        Args:
            topic: Topic filter (``+`` and ``#`` allowed).
            handler: Called with each payload, in paho's network thread: return quickly.

        """
        with self._lock:
            self._topics.add(topic)
            ready = self._ready
        self._client.message_callback_add(topic, lambda _c, _u, m: self._dispatch(handler, m))
        if ready:
            self._client.subscribe(topic, qos=1)

    def on_receipts(self, payload: bytes) -> None:
        """A receipt message from the cloud (a subscription handler): confirm its crops."""
        if self._keeper is not None and self._keeper.on_receipts(payload):
            self._wake.set()

    def wait_drained(self, timeout_s: float) -> bool:
        """Wait until the spool is empty (everything confirmed); return whether it is."""
        deadline = time.monotonic() + timeout_s
        while len(self._spool) and time.monotonic() < deadline:
            time.sleep(0.02)
        return len(self._spool) == 0

    def stop(self, *, drain_timeout_s: float = 10.0, offline_status: bytes | None = None) -> bool:
        """Drain (up to a timeout), publish the final offline status, disconnect cleanly.

        Messages not acknowledged by then stay in the spool for the next start.

        Args:
            drain_timeout_s: Longest wait for the spool to empty.
            offline_status: Final status payload; the will payload when not given.

        Returns:
            Whether the spool was empty when the publisher stopped.

        """
        drained = self._drain_thread is not None and self.wait_drained(drain_timeout_s)
        self._stopping.set()
        self._wake.set()
        if self._drain_thread is not None:
            self._drain_thread.join()
        if self._client.is_connected():
            final = self._will_payload if offline_status is None else offline_status
            self._publish_retained(self._will_topic, final, wait=True)
        self._client.disconnect()
        self._client.loop_stop()
        logger.info("publisher stopped drained=%s %s", drained, self.stats())
        return drained

    def stats(self) -> dict[str, int]:
        """Return the counters for metrics and the status message.

        Keys: connected (0/1), published (re-sends too), acked (PUBACKs), rejected,
        reconnects, confirmed (receipts), resent (after a receipt timeout), inflight,
        spool_depth, spool_awaiting_receipt, spool_bytes, spool_dropped, spool_expired.
        """
        with self._lock:
            counters = {**self._counts, "inflight": len(self._inflight)}
        counters["confirmed"] = self._keeper.confirmed if self._keeper else 0
        spool = self._spool
        _, awaiting = spool.counts()
        return counters | {
            "connected": int(self.connected),
            "spool_depth": len(spool),
            "spool_awaiting_receipt": awaiting,
            "spool_bytes": spool.size_bytes,
            "spool_dropped": spool.dropped,
            "spool_expired": spool.expired,
        }

    @property
    def connected(self) -> bool:
        """Whether the session is up and set up (resubscribed, status resent)."""
        return self._ready and self._client.is_connected()

    def _drain_loop(self) -> None:
        """Publish spooled rows until stopped; survive every error."""
        while not self._stopping.is_set():
            self._wake.wait(_POLL_S)
            self._wake.clear()
            try:
                self._settle_published()
                if self._keeper is not None:
                    self._keeper.expire()
                self._fill_window()
            except Exception as err:  # a spool error (disk full) gets one line, a bug a trace
                trace = not isinstance(err, SpoolError)
                logger.error("drain pass failed, retrying in 1 s: %s", err, exc_info=trace)
                self._stopping.wait(_ERROR_BACKOFF_S)

    def _fill_window(self) -> None:
        """Publish the oldest rows not in flight until the window is full or the spool empty."""
        while not self._stopping.is_set():
            with self._lock:
                room = self._window - len(self._inflight)
                if not self._ready or room <= 0:
                    return
                now = time.monotonic()
                self._parked = {row: at for row, at in self._parked.items() if at > now}
                exclude = {row for row, _ in self._inflight.values()} | self._parked.keys()
                generation = self._generation
            resend = self._keeper.policy.timeout_s if self._keeper else None
            batch = self._spool.peek(room, exclude=exclude, resend_after_s=resend)
            sent = []
            for message in batch:
                if not self._publish_one(message, generation):
                    break
                sent.append(message.id)
            self._spool.mark_attempted(sent)
            resent = sum(1 for m in batch[: len(sent)] if m.published_at is not None)
            if resent:
                with self._lock:
                    self._counts["resent"] += resent
                logger.info("resent %d crop(s) whose receipt is overdue", resent)
            if not batch or len(sent) < len(batch):
                return

    def _publish_one(self, message: SpooledMessage, generation: int) -> bool:
        """Hand one row to paho; map its mid. False: not sent now (it stays spooled)."""
        if not self._client.is_connected():
            return False
        try:
            info = self._client.publish(message.topic, message.payload, qos=1)
        except ValueError as err:  # a row that can never be sent (bad topic, too large)
            logger.error("unpublishable id=%d key=%s removed: %s", message.id, message.key, err)
            self._spool.remove(message.id)
            with self._lock:
                self._counts["rejected"] += 1
            return True
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            logger.info("publish id=%d not sent (rc=%s): stays spooled", message.id, info.rc)
            return False
        with self._lock:
            if generation != self._generation:
                return False  # the connection changed meanwhile: the row is resent later
            self._inflight[info.mid] = (message.id, info)
            self._counts["published"] += 1
        return True

    def _settle_published(self) -> None:
        """Settle rows whose PUBACK arrived before their mid was mapped (a thread race)."""
        with self._lock:
            done = [
                (mid, row, mid in self._failed_mids)
                for mid, (row, info) in self._inflight.items()
                if info.is_published()
            ]
        for mid, row, failed in done:
            self._settle(mid, row, failed=failed)

    def _settle(self, mid: int, row: int, *, failed: bool) -> None:
        """Remove an acknowledged row (or park a rejected one), then free its window slot."""
        if failed:
            with self._lock:
                self._parked[row] = time.monotonic() + _REJECT_RETRY_S
                self._inflight.pop(mid, None)
                self._counts["rejected"] += 1
            logger.warning("broker rejected id=%d; retrying in %.0f s", row, _REJECT_RETRY_S)
        elif self._keeper is not None:
            # published: it stays until its receipt; marked before the slot is freed, so
            # it can't be peeked again before its receipt timeout
            self._spool.mark_published(row)
            with self._lock:
                if self._inflight.pop(mid, None) is not None:
                    self._counts["acked"] += 1
        else:
            # remove from the spool before freeing the slot, so the row can't be peeked again
            self._spool.remove(row)
            with self._lock:
                if self._inflight.pop(mid, None) is not None:
                    self._counts["acked"] += 1
        self._wake.set()

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, flags: Any, reason: Any, _props: Any
    ) -> None:
        """Reset the connection state, drop paho's leftovers, resubscribe, resend status."""
        try:
            if reason.is_failure:
                logger.error("broker refused client_id=%s: %s", self.client_id, reason)
                return
            with self._lock:
                self._generation += 1
                self._inflight.clear()
                self._failed_mids.clear()
            leftovers = client.drop_out_messages()  # the spool resends; paho's copy would dup
            with self._lock:
                self._ready = True
                self._counts["reconnects"] += int(self._ever_connected)
                self._ever_connected, n = True, self._counts["reconnects"]
                retained, topics = dict(self._retained), list(self._topics)
            for topic in topics:
                client.subscribe(topic, qos=1)
            for topic, payload in retained.items():
                self._publish_retained(topic, payload)
            logger.info(
                "mqtt up id=%s reconnects=%d paho_dropped=%d", self.client_id, n, len(leftovers)
            )
            self._wake.set()
        except Exception:
            logger.exception("on_connect failed client_id=%s", self.client_id)

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        """Log a failed connection attempt (paho retries with backoff)."""
        logger.warning("mqtt connect to %s:%s failed", self._config.host, self._config.port)

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        """Void the in-flight map: those rows are resent from the spool after reconnect."""
        try:
            with self._lock:
                self._generation += 1
                unacked = len(self._inflight)
                self._inflight.clear()
                self._ready = False
            log = logger.info if self._stopping.is_set() else logger.warning
            log("mqtt down (%s) id=%s unacked=%d to resend", reason, self.client_id, unacked)
        except Exception:
            logger.exception("on_disconnect failed client_id=%s", self.client_id)

    def _on_publish(
        self, _client: mqtt.Client, _userdata: Any, mid: int, reason: Any, _props: Any
    ) -> None:
        """PUBACK: remove the row from the spool (or park it when the broker refused it)."""
        try:
            failed = bool(reason.is_failure)
            with self._lock:
                entry = self._inflight.get(mid)
                if entry is None and failed:
                    self._failed_mids.add(mid)
            if entry is None:  # a status message, or the ack beat _publish_one's mapping
                self._wake.set()
                return
            self._settle(mid, entry[0], failed=failed)
        except Exception:
            logger.exception("on_publish failed client_id=%s mid=%s", self.client_id, mid)

    def _dispatch(self, handler: MessageHandler, message: mqtt.MQTTMessage) -> None:
        """Run a subscription handler on a received message; log its exceptions."""
        try:
            handler(bytes(message.payload))
        except Exception:
            logger.exception("handler %r failed on topic=%s", handler, message.topic)

    def _publish_retained(self, topic: str, payload: bytes, *, wait: bool = False) -> None:
        """Publish a retained QoS 1 message; optionally wait for its PUBACK."""
        info = self._client.publish(topic, payload, qos=1, retain=True)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            logger.info("%s not sent (rc=%s); resent on reconnect", topic, info.rc)
            return
        if wait:
            try:
                info.wait_for_publish(timeout=_STATUS_ACK_TIMEOUT_S)
            except (RuntimeError, ValueError) as err:
                logger.warning("final status on %s not acknowledged: %s", topic, err)
