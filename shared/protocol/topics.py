"""The MQTT topic layout of the lensflow wire protocol.

Every topic is ``lensflow/v1/{site}/{camera}/{kind}`` where ``kind`` is one of ``crops``,
``receipts``, ``status``, ``config`` or ``config/ack``. ``v1`` versions the *topic layout*;
the messages carry their own schema version (see :mod:`lensflow.shared.protocol.envelope`).
The layout is described for humans in ``docs/protocol.md``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from lensflow.shared.errors import ProtocolError

TOPIC_ROOT = "lensflow"
"""First segment of every lensflow topic."""

TOPIC_VERSION = "v1"
"""Version of the topic layout; changes only when the layout itself changes."""

TOPIC_PREFIX = f"{TOPIC_ROOT}/{TOPIC_VERSION}"
"""``lensflow/v1``: what every topic of this layout starts with."""

MAX_SEGMENT_LENGTH = 64
"""Longest site or camera id, in characters."""

SEGMENT_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""A site or camera id: ASCII letters, digits, ``_ . -``; starts with a letter or digit."""

_SEGMENT_RULE = (
    "1-64 characters of A-Z a-z 0-9 _ . - starting with a letter or digit "
    "(no '/', '+', '#', NUL or spaces)"
)
_MAX_SHOWN = 80


class TopicKind(StrEnum):
    """What a topic carries; the value is the topic suffix after ``{site}/{camera}/``."""

    CROPS = "crops"
    RECEIPTS = "receipts"
    STATUS = "status"
    CONFIG = "config"
    CONFIG_ACK = "config/ack"


@dataclass(frozen=True)
class TopicParts:
    """A parsed lensflow topic.

    Attributes:
        site: The site id (one topic segment).
        camera: The camera id (one topic segment).
        kind: What the topic carries.

    """

    site: str
    camera: str
    kind: TopicKind

    @property
    def topic(self) -> str:
        """The topic string these parts stand for."""
        return build_topic(self.kind, site=self.site, camera=self.camera)


def validate_segment(value: str, *, name: str) -> str:
    """Check that ``value`` can be a site or camera segment of a topic.

    Args:
        value: The candidate id.
        name: What the id is (``"site"`` or ``"camera"``), used in the error message.

    Returns:
        ``value`` unchanged.

    Raises:
        ProtocolError: If ``value`` is not a string matching :data:`SEGMENT_PATTERN`.

    """
    if not isinstance(value, str):
        raise ProtocolError(f"{name} must be a string of {_SEGMENT_RULE}, but got {value!r}")
    if SEGMENT_PATTERN.fullmatch(value) is None:
        shown = repr(value[:_MAX_SHOWN]) + ("..." if len(value) > _MAX_SHOWN else "")
        raise ProtocolError(
            f"{name} must be {_SEGMENT_RULE}, but got {shown} ({len(value)} characters)"
        )
    return value


def build_topic(kind: TopicKind | str, *, site: str, camera: str) -> str:
    """Build the topic of one camera for one kind of message.

    Args:
        kind: What the topic carries (a :class:`TopicKind` or its string value).
        site: The site id.
        camera: The camera id.

    Returns:
        ``lensflow/v1/{site}/{camera}/{kind}``.

    Raises:
        ProtocolError: If ``kind`` is unknown or ``site``/``camera`` is not a valid segment.

    """
    topic_kind = _as_kind(kind)
    validate_segment(site, name="site")
    validate_segment(camera, name="camera")
    return f"{TOPIC_PREFIX}/{site}/{camera}/{topic_kind.value}"


def crops_topic(*, site: str, camera: str) -> str:
    """Topic the edge agent publishes crop envelopes to (QoS 1)."""
    return build_topic(TopicKind.CROPS, site=site, camera=camera)


def receipts_topic(*, site: str, camera: str) -> str:
    """``lensflow/v1/{site}/{camera}/receipts``: the cloud confirms that crops are committed."""
    return build_topic(TopicKind.RECEIPTS, site=site, camera=camera)


def status_topic(*, site: str, camera: str) -> str:
    """Topic of the agent's retained status message and its last will (QoS 1)."""
    return build_topic(TopicKind.STATUS, site=site, camera=camera)


def config_topic(*, site: str, camera: str) -> str:
    """Topic the cloud publishes the camera's retained edge config to (QoS 1)."""
    return build_topic(TopicKind.CONFIG, site=site, camera=camera)


def config_ack_topic(*, site: str, camera: str) -> str:
    """Topic the edge agent answers a config on: applied or rejected (QoS 1)."""
    return build_topic(TopicKind.CONFIG_ACK, site=site, camera=camera)


def parse_topic(topic: str) -> TopicParts:
    """Split a lensflow topic into site, camera and kind.

    Args:
        topic: A concrete topic (no wildcards), e.g. ``lensflow/v1/plant-a/cam01/crops``.

    Returns:
        The parsed parts.

    Raises:
        ProtocolError: If the topic is not in the ``lensflow/v1/{site}/{camera}/{kind}`` layout.

    """
    expected = f"{TOPIC_PREFIX}/{{site}}/{{camera}}/" + "|".join(k.value for k in TopicKind)
    if not isinstance(topic, str):
        raise ProtocolError(f"topic must be a string like {expected!r}, but got {topic!r}")
    shown = repr(topic[:200]) + ("..." if len(topic) > 200 else "")
    segments = topic.split("/")
    if len(segments) < 5 or "/".join(segments[:2]) != TOPIC_PREFIX:
        raise ProtocolError(f"topic must look like {expected!r}, but got {shown}")
    site, camera, suffix = segments[2], segments[3], "/".join(segments[4:])
    try:
        kind = TopicKind(suffix)
    except ValueError as err:
        raise ProtocolError(
            f"topic kind must be one of {[k.value for k in TopicKind]}, "
            f"but got {suffix[:_MAX_SHOWN]!r} in topic {shown}"
        ) from err
    validate_segment(site, name="site")
    validate_segment(camera, name="camera")
    return TopicParts(site=site, camera=camera, kind=kind)


def subscription_filter(
    kind: TopicKind | str, *, site: str | None = None, camera: str | None = None
) -> str:
    """Build an MQTT subscription filter; a ``None`` site or camera becomes the ``+`` wildcard.

    ``subscription_filter("crops")`` is ``lensflow/v1/+/+/crops`` (every crop of every site);
    ``subscription_filter("status", site="plant-a")`` is ``lensflow/v1/plant-a/+/status``.

    Args:
        kind: What the subscribed topics carry.
        site: One site id, or ``None`` for all sites.
        camera: One camera id, or ``None`` for all cameras.

    Returns:
        The topic filter.

    Raises:
        ProtocolError: If ``kind`` is unknown or a given site/camera is not a valid segment.

    """
    topic_kind = _as_kind(kind)
    site_part = "+" if site is None else validate_segment(site, name="site")
    camera_part = "+" if camera is None else validate_segment(camera, name="camera")
    return f"{TOPIC_PREFIX}/{site_part}/{camera_part}/{topic_kind.value}"


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Tell whether a concrete topic matches an MQTT filter (``+`` and ``#`` wildcards).

    Follows MQTT 3.1.1 section 4.7 (without the ``$`` topic rule, which lensflow never uses).

    Args:
        topic_filter: A subscription filter such as ``lensflow/v1/+/+/crops``.
        topic: A concrete topic.

    Returns:
        ``True`` if a subscription to ``topic_filter`` receives messages sent to ``topic``.

    """
    wanted, actual = topic_filter.split("/"), topic.split("/")
    for index, level in enumerate(wanted):
        if level == "#":
            return index == len(wanted) - 1
        if index >= len(actual) or (level != "+" and level != actual[index]):
            return False
    return len(wanted) == len(actual)


def _as_kind(kind: TopicKind | str) -> TopicKind:
    """Turn a kind value into a :class:`TopicKind`, or raise ProtocolError."""
    try:
        return TopicKind(kind)
    except ValueError as err:
        raise ProtocolError(
            f"topic kind must be one of {[k.value for k in TopicKind]}, but got {kind!r}"
        ) from err


ALL_CROPS = subscription_filter(TopicKind.CROPS)
"""``lensflow/v1/+/+/crops``: every crop of every camera of every site."""

ALL_STATUS = subscription_filter(TopicKind.STATUS)
"""``lensflow/v1/+/+/status``: every camera's status."""

ALL_CONFIG_ACKS = subscription_filter(TopicKind.CONFIG_ACK)
"""``lensflow/v1/+/+/config/ack``: every camera's answer to a config."""
