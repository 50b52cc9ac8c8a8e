"""Spec of the small JSON messages: the agent status and the config acknowledgement."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lensflow.shared.protocol import (
    ConfigAck,
    ProtocolError,
    StatusMessage,
    decode_config_ack,
    decode_status,
    encode_config_ack,
    encode_status,
)
from tests.support.hypothesis_profiles import examples

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def status_json(**overrides: Any) -> bytes:
    doc = {"state": "online", "agent_version": "0.1.0", "timestamp": "2024-05-01T12:00:00Z"}
    return json.dumps(doc | overrides).encode()


def test_status_round_trips() -> None:
    status = StatusMessage(
        state="online",
        agent_version="0.1.0",
        applied_config_hash="sha256:0f3a",
        counters={"crops_sent": 12, "spooled": 0},
        timestamp=NOW,
    )
    assert decode_status(encode_status(status)) == status


def test_status_defaults_to_schema_1_no_config_and_no_counters() -> None:
    status = decode_status(status_json())
    assert (status.schema_version, status.applied_config_hash, status.counters) == (1, None, {})


@pytest.mark.parametrize(
    "ack",
    [
        ConfigAck(hash="cfg-2", status="applied"),  # applied: no error
        ConfigAck(hash="cfg-2", status="rejected", error="zones.0: unknown key 'colour'"),
        ConfigAck(hash="cfg-2", status="downloading"),  # fetching its model bundle: no error
    ],
)
def test_config_ack_round_trips(ack: ConfigAck) -> None:
    assert decode_config_ack(encode_config_ack(ack)) == ack


def test_config_ack_wire_form_is_hash_status_error() -> None:
    ack = decode_config_ack(b'{"hash": "cfg-2", "status": "applied", "error": null}')
    assert (ack.hash, ack.status, ack.error) == ("cfg-2", "applied", None)


ACK_CASES = [
    # rejected without a reason
    (b'{"hash": "h", "status": "rejected"}', "error must be a non-empty reason when status is"),
    # applied, yet with an error
    (b'{"hash": "h", "status": "applied", "error": "x"}', "but got status 'applied' with error"),
    # an unknown status
    (
        b'{"hash": "h", "status": "maybe"}',
        "status: Input should be 'applied', 'rejected' or 'downloading'",
    ),
    # a hash with a space
    (b'{"hash": "a b", "status": "applied"}', "hash: String should match pattern"),
    # a schema version from the future
    (
        b'{"schema_version": 2, "hash": "h", "status": "applied"}',
        "expected schema_version 1, got 2",
    ),
    # an unknown field
    (b'{"hash": "h", "status": "applied", "by": "me"}', "by: Extra inputs are not permitted"),
    # not JSON
    (b"applied", "config ack is not valid UTF-8 JSON"),
]


@pytest.mark.parametrize(("data", "expected"), ACK_CASES)
def test_invalid_config_ack_is_rejected(data: bytes, expected: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_config_ack(data)
    assert expected in str(caught.value)


STATUS_CASES = [
    # a JSON string, not an object
    (b'"online"', "status message must be a JSON object, but got str"),
    # a state other than online/offline
    (status_json(state="asleep"), "state: Input should be 'online' or 'offline'"),
    # a negative counter
    (status_json(counters={"sent": -1}), "counters.sent: Input should be greater than or equal"),
    # a naive timestamp
    (status_json(timestamp="2024-05-01T12:00:00"), "timestamp: expected an RFC 3339 timestamp"),
    # an epoch string
    (status_json(timestamp="1712345678"), "timestamp: expected an RFC 3339 timestamp"),
    # a timestamp with no UTC equivalent
    (status_json(timestamp="0001-01-01T00:00:00+05:00"), "must be expressible in UTC"),
    # over the size limit
    (b" " * 70_000, "status message is 70000 bytes, over the limit of 65536 bytes"),
]


@pytest.mark.parametrize(("data", "expected"), STATUS_CASES)
def test_invalid_status_is_rejected(data: bytes, expected: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_status(data)
    assert expected in str(caught.value)


def test_encode_refuses_a_message_made_invalid_behind_validation() -> None:
    ack = ConfigAck(hash="h", status="applied").model_copy(update={"status": "rejected"})
    with pytest.raises(ProtocolError, match="invalid config ack: error must be"):
        encode_config_ack(ack)


DECODERS: list[Callable[[bytes], object]] = [decode_status, decode_config_ack]


@pytest.mark.parametrize("decode", DECODERS)
@settings(max_examples=examples(100), deadline=None)
@given(data=st.binary(max_size=512) | st.builds(str.encode, st.text(max_size=200)))
def test_decode_of_arbitrary_bytes_returns_or_raises_protocol_error(
    decode: Callable[[bytes], object], data: bytes
) -> None:
    with contextlib.suppress(ProtocolError):
        decode(data)
