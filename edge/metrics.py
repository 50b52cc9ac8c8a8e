"""Prometheus metrics of the edge agent, in a registry of its own (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

CAMERA = ("camera",)


class EdgeMetrics:
    """The agent's counters and gauges; ``serve(port)`` exposes them over HTTP."""

    def __init__(self) -> None:
        """Create every metric in a fresh registry."""
        self.registry = CollectorRegistry()
        r = self.registry
        self.frames = Counter("lensflow_edge_frames_total", "Frames analysed.", CAMERA, registry=r)
        self.frames_skipped = Counter(
            "lensflow_edge_frames_skipped_total",
            "Frames skipped: images that do not decode or declare too many pixels.",
            CAMERA,
            registry=r,
        )
        self.source_failures = Counter(
            "lensflow_edge_source_failures_total",
            "Source failures by reason: missing, unreadable, empty, undecodable, too_large, "
            "unreachable, lost, error.",
            (*CAMERA, "reason"),
            registry=r,
        )
        self.fps = Gauge(
            "lensflow_edge_fps", "Frames analysed per second (recent).", CAMERA, registry=r
        )
        self.inference_ms = Histogram(
            "lensflow_edge_inference_ms",
            "Detector time per frame (pre+infer+post), ms.",
            buckets=(5, 10, 20, 40, 80, 160, 320, 640, 1280),
            registry=r,
        )
        self.frames_detected = Counter(
            "lensflow_edge_frames_detected_total",
            "Frames the detector ran on, by why: always (no motion gate), startup, motion, "
            "tracks (moving or unsettled tracks), periodic (the full-frame check).",
            (*CAMERA, "reason"),
            registry=r,
        )
        self.frames_motion_skipped = Counter(
            "lensflow_edge_frames_motion_skipped_total",
            "Frames the motion gate kept from the detector (the tracker carried its objects).",
            CAMERA,
            registry=r,
        )
        self.detections = Counter(
            "lensflow_edge_detections_total", "Detections before filtering.", CAMERA, registry=r
        )
        self.filtered = Counter(
            "lensflow_edge_detections_filtered_total",
            "Detections dropped by a filter.",
            (*CAMERA, "reason"),
            registry=r,
        )
        self.crops_sent = Counter(
            "lensflow_edge_crops_sent_total",
            "Crops handed to the spool for publishing.",
            CAMERA,
            registry=r,
        )
        self.crops_dropped = Counter(
            "lensflow_edge_crops_dropped_total",
            "Crops dropped (byte budget or full spool).",
            (*CAMERA, "reason"),
            registry=r,
        )
        self.spooled = Gauge("lensflow_edge_spooled", "Messages waiting in the spool.", registry=r)
        self.published = Gauge(
            "lensflow_edge_published_total", "Messages acknowledged by the broker.", registry=r
        )
        self.spool_dropped = Gauge(
            "lensflow_edge_spool_dropped_total",
            "Oldest messages dropped because the spool was full.",
            registry=r,
        )
        self.reconnects = Gauge("lensflow_edge_reconnects_total", "Broker reconnects.", registry=r)
        self.source_reconnects = Counter(
            "lensflow_edge_source_reconnects_total", "Camera stream reconnects.", CAMERA, registry=r
        )
        self.config_rejected = Counter(
            "lensflow_edge_config_rejected_total", "Pushed configs rejected.", registry=r
        )

    def serve(self, port: int, *, host: str = "127.0.0.1") -> None:
        """Serve ``/metrics`` on ``host:port`` in a daemon thread."""
        start_http_server(port, addr=host, registry=self.registry)
