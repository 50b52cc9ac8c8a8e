"""A private RabbitMQ node (with the MQTT plugin) for the whole test session.

Import the fixture into a test module (``from tests.support.rabbit import rabbit_node``). A
cold start takes about 10 s, so there is one node per session, not per test: tests that use
it declare their own queues, purge what they consume, and leave the node running. Nothing is
skipped: without rabbitmq-server the fixture fails with the install command (CI installs it).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lensflow.services.rabbitmq import RabbitNode, RabbitNodeError


@pytest.fixture(scope="session")
def rabbit_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitNode]:
    """A running RabbitMQ node on free loopback ports; stopped (with its epmd) at session end."""
    node = RabbitNode(tmp_path_factory.mktemp("rabbit"))
    try:
        node.start()
    except RabbitNodeError as err:
        pytest.fail(f"could not start the test RabbitMQ node: {err}", pytrace=False)
    try:
        yield node
    finally:
        node.stop()
