"""One way to build a paho MQTT client from a :class:`~lensflow.shared.config.common.MqttConfig`.

The edge publisher, the cloud worker's MQTT intake and the control plane all connect the same
way: protocol version, credentials, TLS (MQTTS) and reconnect backoff come from the config;
callbacks and session flags are theirs.
"""

from __future__ import annotations

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from lensflow.shared.config.common import MqttConfig


def make_client(
    config: MqttConfig, *, client_id: str, persistent: bool, manual_ack: bool = False
) -> mqtt.Client:
    """Create a paho client (callback API v2) configured from ``config``.

    Args:
        config: Broker connection settings.
        client_id: The MQTT client id.
        persistent: Keep the session across connections. On MQTT 3.1.1 this is the
            ``clean_session`` flag; on MQTT 5 the caller passes ``clean_start`` and a
            ``SessionExpiryInterval`` to ``connect``.
        manual_ack: Hold each PUBACK until ``client.ack`` is called.

    Returns:
        The client, not yet connected, with exceptions in callbacks suppressed.

    """
    v5 = config.protocol == "v5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
        clean_session=None if v5 else not persistent,
        manual_ack=manual_ack,
    )
    if config.username is not None:
        password = None if config.password is None else config.password.get_secret_value()
        client.username_pw_set(config.username, password)
    if (tls := config.tls) is not None:
        client.tls_set(ca_certs=tls.ca_file, certfile=tls.cert_file, keyfile=tls.key_file)
        client.tls_insecure_set(tls.insecure)
    # paho annotates int, but its backoff only multiplies and sleeps: floats are fine
    client.reconnect_delay_set(config.reconnect_min_s, config.reconnect_max_s)  # type: ignore[arg-type]
    client.suppress_exceptions = True
    return client
