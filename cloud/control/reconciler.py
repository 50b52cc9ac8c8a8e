"""The control plane: edge statuses and config acks in, desired configs out, over MQTT.

:class:`Reconciler` subscribes to every agent's retained ``status`` and ``config/ack``
topics, records them (:meth:`ResultStore.upsert_edge_status`,
:meth:`ConfigService.record_ack`), and publishes each edge's desired config, retained, on its
``config`` topic: once when assigned, and again when the edge's heartbeat reports another
applied hash (an edge restarted on its local file, a lost retained message). The database is
the source of truth, so any number of API processes may run one; they publish the same bytes.
A bad message is logged and dropped; nothing here ends the process.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from lensflow.cloud.control.configs import ConfigService, Push
from lensflow.cloud.control.rollouts import RolloutService
from lensflow.cloud.storage import ResultStore, StorageError
from lensflow.cloud.storage.models import utcnow
from lensflow.shared.config.cloud import ControlConfig
from lensflow.shared.errors import ProtocolError
from lensflow.shared.mqtt import make_client
from lensflow.shared.protocol import (
    ALL_CONFIG_ACKS,
    ALL_STATUS,
    TopicKind,
    config_topic,
    decode_config_ack,
    decode_status,
    parse_topic,
)

logger = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 10.0
"""How long a sweep waits for the broker to take one config before it tries the next."""


class Reconciler:
    """Keeps every edge's applied config equal to its desired one.

    Args:
        config: The ``control`` section of the cloud config.
        configs: Desired configs and acks in the database.
        results: Where edge statuses are recorded.
        rollouts: Where heartbeats and acks move canary rollouts, if given.

    Attributes:
        subscribed: Set once the status and ack subscriptions are granted.

    """

    def __init__(
        self,
        config: ControlConfig,
        *,
        configs: ConfigService,
        results: ResultStore,
        rollouts: RolloutService | None = None,
    ) -> None:
        self.config = config
        self.configs = configs
        self.results = results
        self.rollouts = rollouts
        self.subscribed = threading.Event()
        self._connected = threading.Event()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._client = make_client(config.mqtt, client_id=config.client_id, persistent=False)
        self._client.on_connect, self._client.on_disconnect = self._on_connect, self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.message_callback_add(ALL_STATUS, self._on_status)
        self._client.message_callback_add(ALL_CONFIG_ACKS, self._on_ack)
        self._sweeper = threading.Thread(target=self._sweep_loop, name="config-sweep", daemon=True)

    def start(self) -> None:
        """Connect in the background (retrying with backoff) and start sweeping."""
        cfg = self.config.mqtt
        properties = None
        if cfg.protocol == "v5":
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = 0
        self._client.connect_async(
            cfg.host, cfg.port, keepalive=cfg.keepalive_s, properties=properties
        )
        self._client.loop_start()
        self._sweeper.start()
        logger.info("control plane start broker=%s:%s", cfg.host, cfg.port)

    def stop(self) -> None:
        """Stop sweeping and disconnect."""
        self._stopping.set()
        self._wake.set()
        if self._sweeper.is_alive():
            self._sweeper.join(timeout=PUBLISH_TIMEOUT_S + 5)
        self._client.disconnect()
        self._client.loop_stop()

    def wake(self) -> None:
        """Sweep now (after an assignment) instead of at the next interval."""
        self._wake.set()

    def sweep(self) -> int:
        """Publish every config that is due; return how many the broker took.

        Raises:
            StorageError: If the database cannot be read.

        """
        sent = 0
        for push in self.configs.due(now=utcnow(), resend_after_s=self.config.resend_after_s):
            if self._stopping.is_set() or not self._connected.is_set():
                break
            if self._publish(push):
                self.configs.mark_sent(push, at=utcnow())
                sent += 1
        return sent

    def _publish(self, push: Push) -> bool:
        """Publish one config, retained, QoS 1; say whether the broker acknowledged it."""
        topic = config_topic(site=push.site, camera=push.agent_id)
        info = self._client.publish(topic, push.text.encode("utf-8"), qos=1, retain=True)
        try:
            info.wait_for_publish(timeout=PUBLISH_TIMEOUT_S)
        except (RuntimeError, ValueError) as err:  # not queued: disconnected meanwhile
            logger.warning("config for %s/%s not sent: %s", push.site, push.agent_id, err)
            return False
        if not info.is_published():
            logger.warning("config for %s/%s not acknowledged in time", push.site, push.agent_id)
            return False
        logger.info("config %s sent to %s/%s", push.desired_hash, push.site, push.agent_id)
        return True

    def _sweep_loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.config.sweep_interval_s)
            self._wake.clear()
            if self._stopping.is_set() or not self._connected.is_set():
                continue
            try:
                self.sweep()
            except StorageError as err:
                logger.warning("config sweep failed (retrying next interval): %s", err)
            except Exception:
                logger.exception("config sweep failed")

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        if reason.is_failure:
            logger.error("broker refused the control plane: %s", reason)
            return
        self._connected.set()
        client.subscribe([(ALL_STATUS, 1), (ALL_CONFIG_ACKS, 1)])
        self._wake.set()

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        self._connected.clear()
        log = logger.info if self._stopping.is_set() else logger.warning
        log("control plane disconnected (%s)", reason)

    def _on_subscribe(self, *_args: Any) -> None:
        self.subscribed.set()

    def _on_status(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        """Record an edge's status; sweep if its applied config may differ from the desired."""
        try:
            parts = parse_topic(message.topic)
            if parts.kind is not TopicKind.STATUS:
                return
            status = decode_status(bytes(message.payload))
            self.results.upsert_edge_status(site=parts.site, agent_id=parts.camera, status=status)
            if self.rollouts is not None:
                self.rollouts.record_heartbeat(
                    site=parts.site, agent_id=parts.camera, status=status
                )
            self._wake.set()
        except (ProtocolError, StorageError) as err:
            logger.warning("status on %s dropped: %s", message.topic, err)
        except Exception:
            logger.exception("status on %s failed", message.topic)

    def _on_ack(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        """Record an edge's answer to a pushed config."""
        try:
            parts = parse_topic(message.topic)
            ack = decode_config_ack(bytes(message.payload))
            recorded = self.configs.record_ack(site=parts.site, agent_id=parts.camera, ack=ack)
            if self.rollouts is not None:
                self.rollouts.record_ack(site=parts.site, agent_id=parts.camera, ack=ack)
            logger.info(
                "config ack %s %s from %s/%s%s",
                ack.status,
                ack.hash,
                parts.site,
                parts.camera,
                "" if recorded else " (not the desired config: ignored)",
            )
        except (ProtocolError, StorageError) as err:
            logger.warning("config ack on %s dropped: %s", message.topic, err)
        except Exception:
            logger.exception("config ack on %s failed", message.topic)
