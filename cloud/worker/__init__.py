"""Cloud workers: intake → dynamic batcher → pipeline DAG → results database, ack after commit.

Public API:

- :class:`~lensflow.cloud.worker.worker.Worker` — the worker loop (``lensflow cloud worker``).
- :class:`~lensflow.cloud.worker.intake.Intake` and :class:`~lensflow.cloud.worker.intake.Delivery`
  — the
  intake interface; :class:`~lensflow.cloud.worker.intake_mqtt.MqttIntake` and
  :class:`~lensflow.cloud.worker.intake_amqp.AmqpIntake` implement it (imported from their modules,
  so that one's client library is not needed for the other).
- :class:`~lensflow.cloud.worker.batcher.Batcher` — dynamic batching with a bounded queue.
- :class:`~lensflow.cloud.worker.metrics.WorkerMetrics` — the worker's Prometheus metrics.
"""

from lensflow.cloud.worker.batcher import Batcher
from lensflow.cloud.worker.intake import Delivery, Intake
from lensflow.cloud.worker.metrics import WorkerMetrics
from lensflow.cloud.worker.startup import build_intake
from lensflow.cloud.worker.worker import Worker

__all__ = ["Batcher", "Delivery", "Intake", "Worker", "WorkerMetrics", "build_intake"]
