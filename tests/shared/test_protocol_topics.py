"""Spec of the MQTT topic layout: lensflow/v1/{site}/{camera}/crops|status|config|config/ack."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lensflow.shared.protocol import (
    ALL_CROPS,
    ProtocolError,
    TopicKind,
    TopicParts,
    build_topic,
    config_ack_topic,
    config_topic,
    crops_topic,
    parse_topic,
    status_topic,
    subscription_filter,
    topic_matches,
    validate_segment,
)

BUILT_TOPICS = [
    (crops_topic, "lensflow/v1/plant-a/cam_01.east/crops"),  # crop envelopes, edge -> cloud
    (status_topic, "lensflow/v1/plant-a/cam_01.east/status"),  # retained status and LWT
    (config_topic, "lensflow/v1/plant-a/cam_01.east/config"),  # retained config, cloud -> edge
    (config_ack_topic, "lensflow/v1/plant-a/cam_01.east/config/ack"),  # applied | rejected
]


@pytest.mark.parametrize(("build", "expected"), BUILT_TOPICS)
def test_topic_builders_follow_the_layout(build: Callable[..., str], expected: str) -> None:
    assert build(site="plant-a", camera="cam_01.east") == expected


@pytest.mark.parametrize("kind", list(TopicKind))
def test_built_topics_parse_back_to_their_parts(kind: TopicKind) -> None:
    parts = TopicParts(site="plant-a", camera="cam01", kind=kind)
    assert parse_topic(build_topic(kind, site="plant-a", camera="cam01")) == parts
    assert parse_topic(parts.topic) == parts


def test_parse_topic_splits_site_camera_and_two_level_kind() -> None:
    parts = parse_topic("lensflow/v1/s1/c1/config/ack")
    assert (parts.site, parts.camera, parts.kind) == ("s1", "c1", TopicKind.CONFIG_ACK)


BAD_TOPICS = [
    ("lensflow/v2/s/c/crops", "topic must look like 'lensflow/v1/{site}/{camera}/crops|"),  # v2
    ("other/v1/s/c/crops", "topic must look like"),  # another application
    ("lensflow/v1/s/c", "topic must look like"),  # no kind
    ("lensflow/v1/s/c/images", "topic kind must be one of ['crops', "),  # unknown kind
    ("lensflow/v1/s/c/crops/", "but got 'crops/'"),  # trailing slash
    ("lensflow/v1//c/crops", "site must be 1-64 characters"),  # empty site
    ("lensflow/v1/s/+/crops", "camera must be 1-64 characters"),  # a wildcard is no topic
    ("lensflow/v1/s/c\0/crops", "but got 'c\\x00'"),  # NUL
    ("lensflow/v1/" + "s" * 65 + "/c/crops", "(65 characters)"),  # too long
]


@pytest.mark.parametrize(("topic", "expected"), BAD_TOPICS)
def test_parse_topic_rejects_other_shapes(topic: str, expected: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_topic(topic)
    assert expected in str(caught.value)


BAD_SEGMENTS = [
    "",  # empty
    "a/b",  # a topic level separator
    "a+b",  # single-level wildcard
    "a#",  # multi-level wildcard
    "a\0",  # NUL, forbidden in MQTT strings
    "a b",  # space
    ".hidden",  # leading dot: ids may become file names
    "-x",  # leading dash: ids may become command-line arguments
    "ü",  # non-ASCII
    "x" * 65,  # longer than 64
]


@pytest.mark.parametrize("segment", BAD_SEGMENTS)
def test_bad_segment_is_rejected_saying_expected_and_got(segment: str) -> None:
    with pytest.raises(
        ProtocolError, match="site must be 1-64 characters of .*, but got"
    ) as caught:
        validate_segment(segment, name="site")
    assert repr(segment[:80]) in str(caught.value)


@pytest.mark.parametrize("segment", BAD_SEGMENTS)
def test_builders_refuse_bad_segments(segment: str) -> None:
    with pytest.raises(ProtocolError, match="camera must be"):
        crops_topic(site="plant-a", camera=segment)


def test_builders_refuse_unknown_kind() -> None:
    with pytest.raises(ProtocolError, match="topic kind must be one of .*, but got 'images'"):
        build_topic("images", site="s", camera="c")


SUBSCRIPTIONS = [
    ("crops", None, None, "lensflow/v1/+/+/crops"),  # every crop of every site
    ("status", "plant-a", None, "lensflow/v1/plant-a/+/status"),  # one site's cameras
    ("config/ack", None, "cam01", "lensflow/v1/+/cam01/config/ack"),  # one camera id, all sites
    ("config", "s", "c", "lensflow/v1/s/c/config"),  # one camera: no wildcard left
]


@pytest.mark.parametrize(("kind", "site", "camera", "expected"), SUBSCRIPTIONS)
def test_subscription_filters_use_plus_wildcards(
    kind: str, site: str | None, camera: str | None, expected: str
) -> None:
    assert subscription_filter(kind, site=site, camera=camera) == expected


def test_all_crops_filter_is_every_crop_of_every_site() -> None:
    assert ALL_CROPS == "lensflow/v1/+/+/crops"


MATCHES = [
    (ALL_CROPS, "lensflow/v1/s/c/crops", True),  # the all-crops filter
    (ALL_CROPS, "lensflow/v1/s/c/status", False),  # another kind
    ("lensflow/v1/+/+/config", "lensflow/v1/s/c/config/ack", False),  # + is one level
    ("lensflow/v1/s/#", "lensflow/v1/s/c/config/ack", True),  # # is any depth
    ("lensflow/v1/#", "lensflow/v1", True),  # # also matches its parent level
    ("lensflow/v1/+/+/crops", "lensflow/v1/s/crops", False),  # too few levels
]


@pytest.mark.parametrize(("topic_filter", "topic", "matches"), MATCHES)
def test_topic_matches_follows_mqtt_wildcards(topic_filter: str, topic: str, matches: bool) -> None:
    assert topic_matches(topic_filter, topic) is matches
