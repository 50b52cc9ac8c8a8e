"""Deploy step: declare the crops quorum queue and its binding before any edge publishes.

RabbitMQ acknowledges (PUBACK) an MQTT publish that matches no binding and then drops it, so
the queue must exist before the first edge connects. Workers declare it too when they start;
this one-shot step (compose service ``queue-setup``, the worker's init container on
Kubernetes) closes the window before the first worker is up. Idempotent.

Usage: ``python declare_queue.py --config /etc/lensflow/cloud.yaml [--timeout-s 120]``; the
AMQP URL comes from the config or ``LENSFLOW_CLOUD__INTAKE__URL``.
"""

from __future__ import annotations

import argparse
import sys
import time

from lensflow.cloud.worker.amqp_queue import RabbitError, declare_crops_queue
from lensflow.shared.config import load_cloud_config
from lensflow.shared.config.cloud import AmqpIntake
from lensflow.shared.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    """Declare the queue named by the config's ``intake`` section; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="Cloud config YAML (intake.type amqp).")
    parser.add_argument("--timeout-s", type=float, default=120.0, help="Retry for this long.")
    args = parser.parse_args(argv)
    try:
        config = load_cloud_config(args.config)
    except ConfigError as err:
        for issue in err.issues:
            print(issue, file=sys.stderr)
        return 1
    intake = config.intake
    if not isinstance(intake, AmqpIntake):
        print(f"expected intake.type amqp in {args.config}, got {intake.type}", file=sys.stderr)
        return 1
    deadline = time.monotonic() + args.timeout_s
    while True:
        try:
            declare_crops_queue(
                intake.url.get_secret_value(), queue=intake.queue, binding_key=intake.binding_key
            )
        except RabbitError as err:
            if time.monotonic() >= deadline:
                print(f"could not declare the crops queue: {err}", file=sys.stderr)
                return 1
            time.sleep(2.0)
            continue
        print(f"declared quorum queue {intake.queue} bound to amq.topic/{intake.binding_key}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
