"""The crops work queue on RabbitMQ: its name, its binding and the step that declares it.

Edges publish crops over MQTT 3.1.1 to RabbitMQ's MQTT plugin, which routes each publish into
the ``amq.topic`` exchange with ``/`` turned into ``.``; a durable quorum queue bound to
``lensflow.v1.*.*.crops`` holds them for the workers (:mod:`lensflow.cloud.worker.intake_amqp`).
:func:`declare_crops_queue` is the deploy step (``deploy/docker/declare_queue.py``), and every
worker runs it too, idempotently, when it connects.
"""

from __future__ import annotations

import logging

import pika
import pika.exceptions

from lensflow.shared.errors import LensflowError

logger = logging.getLogger(__name__)

CROPS_QUEUE = "lensflow.crops"
"""The work queue that holds crops published by edges."""

CROPS_BINDING_KEY = "lensflow.v1.*.*.crops"
"""``lensflow/v1/<site>/<camera>/crops`` as the MQTT plugin routes it into ``amq.topic``."""


class RabbitError(LensflowError):
    """The broker could not be reached, refused a declare, or cancelled a consumer."""


def declare_crops_queue(
    amqp_url: str, *, queue: str = CROPS_QUEUE, binding_key: str = CROPS_BINDING_KEY
) -> None:
    """Declare the durable quorum queue of crops and bind it to ``amq.topic``; idempotent.

    This is the deploy-time step the product ships: run it before any edge publishes. The
    MQTT plugin PUBACKs a publish whose topic matches no binding and then drops it, so crops
    sent before this step are lost without an error at the edge.

    Args:
        amqp_url: pika URL of the broker, e.g. ``amqp://user:pass@host:5672/%2F``.
        queue: Queue name.
        binding_key: ``amq.topic`` binding; MQTT topic levels become ``.``-separated words.

    Raises:
        RabbitError: If the broker cannot be reached, or a queue of that name exists with
            other arguments (a classic queue, say).

    """
    params = pika.URLParameters(amqp_url)
    try:
        connection = pika.BlockingConnection(params)
    except pika.exceptions.AMQPError as err:
        raise RabbitError(
            f"expected a broker at {params.host}:{params.port}, but could not connect: {err!r}"
        ) from err
    try:
        channel = connection.channel()
        channel.queue_declare(queue=queue, durable=True, arguments={"x-queue-type": "quorum"})
        channel.queue_bind(queue=queue, exchange="amq.topic", routing_key=binding_key)
    except pika.exceptions.ChannelClosedByBroker as err:
        raise RabbitError(
            f"expected queue {queue!r} to be a durable quorum queue (or absent), but the broker "
            f"refused the declare: {err.reply_code} {err.reply_text}"
        ) from err
    except pika.exceptions.AMQPError as err:
        raise RabbitError(f"could not declare queue {queue!r}: {err!r}") from err
    finally:
        if connection.is_open:
            connection.close()
    logger.info("declared quorum queue=%s binding=amq.topic/%s", queue, binding_key)
