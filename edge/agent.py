"""The edge agent: cameras, the detector, the spool-backed publisher, heartbeats and configs.

``EdgeAgent(config).run()`` runs until stopped (or, with ``until_sources_end``, until every
camera's source is exhausted — folders and video files — or dead: failing without a frame
for longer than its ``open_timeout_s``, such as a stream that never answers). Configs pushed
on the agent's config topic are validated and applied atomically: changed cameras are
restarted, unchanged ones are not disturbed, a new detector is loaded before it replaces the
old one; a rejected config leaves the running one in force. Every outcome is acknowledged
on ``config/ack``.

Pushed configs are applied in order on a thread of their own, never on the MQTT network
thread: a detector named ``sha256:<hex>`` (a model registry bundle) is downloaded, verified,
loaded, checked against its card and warmed up there while the cameras keep detecting with
the old one, then swapped in between two frames (:mod:`lensflow.edge.model_swap`).

Every camera detects through one :class:`~lensflow.edge.detector_service.DetectorService`:
the engine's async path shared by all cameras, each camera waiting only for its own frames.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import partial
from importlib.metadata import PackageNotFoundError, version

from lensflow.edge.camera import CameraWorker, ReadyCrop
from lensflow.edge.detector_loading import DetectorLoader, detector_parallelism
from lensflow.edge.detector_service import DetectorService
from lensflow.edge.metrics import EdgeMetrics
from lensflow.edge.model_fetch import BundleFetcher, default_fetcher
from lensflow.edge.model_swap import load_bundle_detector
from lensflow.edge.native_stderr import native_stderr
from lensflow.edge.publisher import MqttPublisher
from lensflow.edge.receipts import ReceiptPolicy
from lensflow.edge.remote_config import parse_pushed_config
from lensflow.edge.spool import Spool
from lensflow.shared.config.edge import (
    CameraConfig,
    EdgeConfig,
    config_hash,
    payload_hash,
)
from lensflow.shared.crops import wire_detection
from lensflow.shared.detectors.base import DetectorBackend
from lensflow.shared.detectors.factory import load_configured_detector
from lensflow.shared.errors import ConfigError, LensflowError
from lensflow.shared.model_bundle import parse_model_ref
from lensflow.shared.protocol import (
    ConfigAck,
    Provenance,
    StatusMessage,
    config_ack_topic,
    config_topic,
    crops_topic,
    encode_config_ack,
    encode_crop,
    encode_status,
    new_crop_header,
    receipts_topic,
    status_topic,
)

logger = logging.getLogger(__name__)

RETIRE_WAIT_S = 10.0
"""Longest a replaced detector is kept for the batches still in it (up to two frames per
camera); it is closed as soon as they are done."""


HEALTH_COUNTERS = ("frames", "detections", "detect_errors", "source_failures")
"""Heartbeat counters that are running totals over every camera the agent ran."""


@functools.cache
def agent_version() -> str:
    """The installed lensflow version (read once: every crop carries it)."""
    try:
        return version("lensflow")
    except PackageNotFoundError:
        return "0+unknown"


class EdgeAgent:
    """Runs the cameras of one edge config and keeps the cloud informed."""

    def __init__(
        self,
        config: EdgeConfig,
        *,
        load: DetectorLoader,
        realtime: bool = True,
        metrics: EdgeMetrics | None = None,
        fetcher: BundleFetcher | None = None,
    ) -> None:
        """Open the spool, connect the publisher and load the detector (no camera runs yet).

        A detector named ``sha256:<hex>`` comes from ``fetcher`` (default: the local config's
        ``registry``, bundles cached in the model cache's ``bundles`` folder).

        With ``capture_native_stderr``, what C libraries (the detector's runtime, OpenCV,
        FFmpeg) write to stderr is logged from here until :meth:`stop`.
        """
        self.config = config
        self.applied_hash = config_hash(config)
        self.metrics = metrics or EdgeMetrics()
        self._load = load
        self._realtime = realtime
        self.fetcher = fetcher or default_fetcher(config)
        self._configs: queue.Queue[bytes | None] = queue.Queue()
        self._applier: threading.Thread | None = None
        self._lock = threading.RLock()  # guards config, detector and cameras during an apply
        self._stopped = threading.Event()
        self._native_held = False  # whether this agent holds the native stderr capture
        if config.capture_native_stderr:  # before the detector: its runtime prints as it loads
            native_stderr.acquire()
            self._native_held = True
        try:
            detector, self.model_sha256 = self._prepare(config)
        except BaseException:
            self._release_native_stderr()
            raise
        self.service = DetectorService(detector)  # every camera's frames go through it
        self.spool = Spool(config.spool.path, max_bytes=config.spool.max_bytes)
        site, agent = config.site, config.agent_id
        spool = config.spool
        receipts = (
            ReceiptPolicy(timeout_s=spool.receipt_timeout_s, max_sends=spool.max_sends)
            if spool.receipts
            else None
        )
        self.publisher = MqttPublisher(
            config.mqtt,
            client_id=config.mqtt.client_id or f"lensflow-edge-{site}-{agent}",
            spool=self.spool,
            inflight=config.spool.inflight,
            receipts=receipts,
            will_topic=status_topic(site=site, camera=agent),
            will_payload=self._status_payload(online=False),
        )
        self.cameras: dict[str, CameraWorker] = {}
        self._retired: dict[str, int] = dict.fromkeys(HEALTH_COUNTERS, 0)  # of stopped cameras

    def run(self, *, until_sources_end: bool = False) -> None:
        """Start everything and block until :meth:`stop` (or until every source ended)."""
        self.start()
        try:
            while not self._stopped.wait(self.config.heartbeat_s):
                self.heartbeat()
                if until_sources_end and self.sources_done():
                    self._log_dead_sources()
                    break
        finally:
            self.stop()

    def start(self) -> None:
        """Connect, subscribe to the config topic and start the cameras."""
        self._applier = threading.Thread(
            target=self._apply_configs, name=f"config-{self.config.agent_id}", daemon=True
        )
        self._applier.start()
        self.publisher.start()
        topic = config_topic(site=self.config.site, camera=self.config.agent_id)
        self.publisher.subscribe(topic, self._on_config)
        with self._lock:
            for camera in self.config.cameras:
                self._start_camera(camera)
        self.heartbeat()

    def request_stop(self) -> None:
        """Ask :meth:`run` to return (safe from a signal handler or another thread)."""
        self._stopped.set()

    def sources_done(self) -> bool:
        """Whether every camera's source is exhausted or dead (failing past its open timeout)."""
        with self._lock:
            return all(w.finished.is_set() or w.dead for w in self.cameras.values())

    def _log_dead_sources(self) -> None:
        with self._lock:
            for name, worker in self.cameras.items():
                stats = worker.source_stats
                if not worker.finished.is_set() and stats is not None:
                    logger.warning(
                        "camera %s: source dead (%s) past its open timeout; not waiting for it",
                        *(name, stats.last_failure or "no frame"),
                    )

    def stop(self, *, drain_timeout_s: float = 30.0) -> None:
        """Stop the cameras (flushing their tracks), drain the spool, say offline."""
        self._stopped.set()
        self._configs.put(None)
        if self._applier is not None:
            self._applier.join(timeout=drain_timeout_s)
        with self._lock:
            for worker in self.cameras.values():
                worker.stop()
        self.publisher.stop(
            drain_timeout_s=drain_timeout_s, offline_status=self._status_payload(online=False)
        )
        self.service.close()
        self._release_native_stderr()

    def _release_native_stderr(self) -> None:
        """Give back this agent's hold on the capture of OpenCV's/FFmpeg's stderr (once)."""
        if self._native_held:
            self._native_held = False
            native_stderr.release()

    def heartbeat(self) -> None:
        """Publish the retained online status with counters and the applied config hash."""
        stats = self.publisher.stats()
        with self._lock:
            for worker in self.cameras.values():
                worker.sync_metrics()  # a dead stream's reconnects show even without frames
        self.metrics.spooled.set(stats["spool_depth"])
        self.metrics.published.set(stats["acked"])
        self.metrics.reconnects.set(stats["reconnects"])
        self.metrics.spool_dropped.set(stats["spool_dropped"])
        self.publisher.publish_status(self._status_payload(online=True))

    def counters(self) -> dict[str, int]:
        """Counters carried by every heartbeat.

        ``frames``, ``detections`` (before filtering), ``detect_errors`` and
        ``source_failures`` are running totals since the agent started, cameras replaced by
        a pushed config included: the cloud compares a rollout's figures from them.
        """
        stats = self.publisher.stats()
        with self._lock:
            totals = self._camera_totals(self.cameras.values())
            totals = {key: totals[key] + self._retired[key] for key in HEALTH_COUNTERS}
        return {**totals, **{k: int(v) for k, v in stats.items()}}

    @staticmethod
    def _camera_totals(workers: Iterable[CameraWorker]) -> dict[str, int]:
        """The health counters summed over ``workers``."""
        totals = dict.fromkeys(HEALTH_COUNTERS, 0)
        for worker in workers:
            totals["frames"] += worker.frames
            totals["detections"] += worker.detections
            totals["detect_errors"] += worker.detect_errors
            totals["source_failures"] += worker.source_failures
        return totals

    @property
    def detector(self) -> DetectorBackend:
        """The backend the cameras' next frames go to."""
        return self.service.backend

    def _status_payload(self, *, online: bool) -> bytes:
        counters = self.counters() if online and hasattr(self, "cameras") else {}
        return encode_status(
            StatusMessage(
                state="online" if online else "offline",
                agent_version=agent_version(),
                applied_config_hash=self.applied_hash,
                counters=counters,
                model_sha256=self.model_sha256 if online else None,
                timestamp=datetime.now(UTC),
            )
        )

    def _start_camera(self, camera: CameraConfig) -> None:
        worker = CameraWorker(
            camera,
            crops=self.config.crops,
            detector=partial(self.service.client, camera.name),
            sink=self._publish_crop,
            metrics=self.metrics,
            realtime=self._realtime,
        )
        self.cameras[worker.config.name] = worker
        if self.config.spool.receipts:  # renewed on every reconnect by the publisher
            topic = receipts_topic(site=self.config.site, camera=camera.name)
            self.publisher.subscribe(topic, self.publisher.on_receipts)
        worker.start()

    def _publish_crop(self, crop: ReadyCrop) -> None:
        det = crop.detection
        header = new_crop_header(
            jpeg=crop.jpeg,
            site=self.config.site,
            camera=crop.camera,
            captured_at=crop.captured_at,
            track_id=crop.track_id,
            crop_box=crop.crop_box,
            detection=wire_detection(
                det, frame_width=crop.frame_size[0], frame_height=crop.frame_size[1]
            ),
            provenance=Provenance(
                model_sha256=self.model_sha256,
                config_hash=self.applied_hash,
                agent_version=agent_version(),
            ),
            attributes={"reason": crop.reason, **({"zone": crop.zone} if crop.zone else {})},
        )
        self.publisher.enqueue(
            crops_topic(site=self.config.site, camera=crop.camera),
            encode_crop(header, crop.jpeg),
            key=header.crop_id,
        )

    def _on_config(self, payload: bytes) -> None:
        """Queue a pushed config for the config thread (the MQTT thread must not wait)."""
        self._configs.put(payload)

    def _apply_configs(self) -> None:
        """The config thread: apply pushed configs in order until the agent stops."""
        while not self._stopped.is_set():
            payload = self._configs.get()
            if payload is None:
                return
            self._handle_config(payload)

    def _handle_config(self, payload: bytes) -> None:
        """Validate and apply a pushed config; acknowledge either way. Never raises."""
        try:
            new = parse_pushed_config(payload, running=self.config)
            new_hash = config_hash(new)
            if new_hash != self.applied_hash:
                self._say_downloading(new, new_hash)
                self._apply(new)
            ack = ConfigAck(hash=new_hash, status="applied", error=None)
        except (ConfigError, LensflowError) as err:
            self.metrics.config_rejected.inc()
            logger.warning("agent %s: pushed config rejected: %s", self.config.agent_id, err)
            ack = ConfigAck(hash=payload_hash(payload), status="rejected", error=str(err)[:2000])
        except Exception as err:  # a bad config must never take the agent down
            logger.exception("agent %s: applying a pushed config failed", self.config.agent_id)
            ack = ConfigAck(hash=payload_hash(payload), status="rejected", error=repr(err)[:2000])
        topic = config_ack_topic(site=self.config.site, camera=self.config.agent_id)
        self.publisher.publish_status(encode_config_ack(ack), topic=topic)
        self.heartbeat()

    def _say_downloading(self, new: EdgeConfig, new_hash: str) -> None:
        """Ack ``downloading`` when ``new`` names a registry bundle that is not cached yet."""
        digest = parse_model_ref(new.detector.model)
        if digest is None or new.detector == self.config.detector or self.fetcher.cached(digest):
            return
        ack = ConfigAck(hash=new_hash, status="downloading", error=None)
        topic = config_ack_topic(site=self.config.site, camera=self.config.agent_id)
        self.publisher.publish_status(encode_config_ack(ack), topic=topic)

    def _apply(self, new: EdgeConfig) -> None:
        """Swap in ``new``: detector first (may fail: nothing changed yet), then cameras."""
        detector, sha, old_detector = self.detector, self.model_sha256, self.detector
        # so does a new number of frames in flight: the engine is compiled for that many
        parallel = detector_parallelism(new)
        if new.detector != self.config.detector or parallel != detector_parallelism(self.config):
            detector, sha = self._prepare(new)  # the cameras keep running on the old one
        with self._lock:
            if detector is not old_detector:  # atomic: the next batch of any camera goes to it
                old_detector = self.service.replace(detector)
            self.model_sha256 = sha
            old = {c.name: c for c in self.config.cameras}
            wanted = {c.name: c for c in new.cameras}
            crops_changed = new.crops != self.config.crops
            for name, worker in list(self.cameras.items()):
                if name not in wanted or wanted[name] != old.get(name) or crops_changed:
                    worker.stop()
                    del self.cameras[name]
                    for key, count in self._camera_totals([worker]).items():
                        self._retired[key] += count
            self.config = new
            self.applied_hash = config_hash(new)
            for name, camera in wanted.items():
                if name not in self.cameras:
                    self._start_camera(camera)
        if old_detector is not detector:  # closed once the batches still in it are done
            self.service.retire(old_detector, timeout_s=RETIRE_WAIT_S)
        logger.info("agent %s: applied config %s", new.agent_id, self.applied_hash)

    def _prepare(self, config: EdgeConfig) -> tuple[DetectorBackend, str]:
        """The detector ``config`` names, with the sha256 its crops will carry.

        A registry bundle is fetched, checked and warmed up; an artifact goes to the loader.
        """
        load = partial(self._load, parallel=detector_parallelism(config))
        digest = parse_model_ref(config.detector.model)
        if digest is None:
            return load(config.detector)
        return load_bundle_detector(self.fetcher.fetch(digest), config, load=load)


default_loader = load_configured_detector
"""Loads ``config.model`` (an artifact path) with its backend, with the model's sha256."""
