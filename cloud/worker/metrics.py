"""Prometheus metrics of a cloud worker, in a registry of its own (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class WorkerMetrics:
    """The worker's counters, gauges and histograms; ``serve(port)`` exposes them over HTTP.

    Attributes:
        messages: Deliveries handled, by outcome: ``stored`` (new crop), ``duplicate`` (crop
            already stored: a re-delivery), ``dead_letter``, ``dropped`` (not even its dead
            letter could be stored).
        dead_letters: Dead letters written, by reason kind: ``protocol``, ``oversized``,
            ``image``, ``storage``.
        redelivered: Deliveries the broker flagged as possibly delivered before.
        batch_size: Deliveries per processed batch.
        batch_seconds: Time to decode, run the DAG on, store and ack one batch.
        latency_seconds: From the edge's ``sent_at`` to the commit of the crop's results.
        broker_dropped: The broker's own count of dropped messages
            (mosquitto ``$SYS/broker/publish/messages/dropped``).
        intake_connects: Successful intake (re)connections.
        storage_retries: Failed storage attempts that were retried.
        service_retries: DAG runs of a batch retried because an inference service was down.
        service_outages: Outages of an inference service (a first failure after a success).

    """

    def __init__(self) -> None:
        """Create every metric in a fresh registry."""
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages = Counter(
            "lensflow_worker_messages_total", "Deliveries handled.", ("outcome",), registry=r
        )
        self.dead_letters = Counter(
            "lensflow_worker_dead_letters_total", "Dead letters written.", ("reason",), registry=r
        )
        self.redelivered = Counter(
            "lensflow_worker_redelivered_total", "Deliveries flagged as redelivered.", registry=r
        )
        self.batch_size = Histogram(
            "lensflow_worker_batch_size",
            "Deliveries per batch.",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "lensflow_worker_batch_seconds",
            "Decode + DAG + store + ack time per batch.",
            buckets=_SECONDS_BUCKETS,
            registry=r,
        )
        self.latency_seconds = Histogram(
            "lensflow_worker_latency_seconds",
            "Edge send time to committed results, per crop.",
            buckets=_SECONDS_BUCKETS,
            registry=r,
        )
        self.broker_dropped = Gauge(
            "lensflow_broker_dropped_messages",
            "Messages the broker dropped ($SYS/broker/publish/messages/dropped).",
            registry=r,
        )
        self.intake_connects = Counter(
            "lensflow_worker_intake_connects_total", "Intake (re)connections.", registry=r
        )
        self.storage_retries = Counter(
            "lensflow_worker_storage_retries_total", "Storage failures retried.", registry=r
        )
        self.service_retries = Counter(
            "lensflow_worker_service_retries_total",
            "DAG runs retried because an inference service was unavailable.",
            registry=r,
        )
        self.service_outages = Counter(
            "lensflow_worker_service_outages_total",
            "Inference service outages seen (batches held until the service is back).",
            registry=r,
        )
        self.receipts = Counter(
            "lensflow_worker_receipts_total",
            "Crops confirmed to their edge (receipts published after commit).",
            registry=r,
        )
        self.version_swaps = Counter(
            "lensflow_worker_version_swaps_total",
            "Pipeline versions swapped in between batches (the active version changed).",
            registry=r,
        )

    def serve(self, port: int, *, host: str = "127.0.0.1") -> None:
        """Serve ``/metrics`` on ``host:port`` in a daemon thread."""
        start_http_server(port, addr=host, registry=self.registry)
