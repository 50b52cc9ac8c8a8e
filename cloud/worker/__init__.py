"""Cloud workers: intake → dynamic batcher → pipeline DAG → results database, ack after commit.

Public API:

- :class:`~cloud.worker.worker.Worker` — the worker loop (``lensflow cloud worker``).
- :class:`~cloud.worker.intake.Intake` and :class:`~cloud.worker.intake.Delivery` — the
  intake interface; :class:`~cloud.worker.intake_mqtt.MqttIntake` and
  :class:`~cloud.worker.intake_amqp.AmqpIntake` implement it (imported from their modules,
  so that one's client library is not needed for the other).
- :class:`~cloud.worker.batcher.Batcher` — dynamic batching with a bounded queue.
- :class:`~cloud.worker.metrics.WorkerMetrics` — the worker's Prometheus metrics.
"""

from cloud.worker.batcher import Batcher
from cloud.worker.intake import Delivery, Intake
from cloud.worker.metrics import WorkerMetrics
from cloud.worker.worker import Worker, build_intake

__all__ = ["Batcher", "Delivery", "Intake", "Worker", "WorkerMetrics", "build_intake"]
