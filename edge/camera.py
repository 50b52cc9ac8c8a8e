"""One camera's loop: frames -> detections -> filters -> tracks -> best crops -> the sink.

Each camera runs in a thread of its own; the agent's cameras share one detector service
(:mod:`lensflow.edge.detector_service`), which runs their frames together on the engine. A
camera keeps up to ``pipeline_depth`` frames in the service (its ``per_camera`` bound by
default): its thread reads, decodes and sends frame k+1 while the engine works on frame k,
and a second thread takes the answers strictly in frame order as soon as each comes, so the
filters, the tracker, the crop selector and the sink see the frames in order (as with one
frame at a time) and a source that stalls holds back no frame already detected. With
motion gating on, a camera keeps one frame in flight: the gate decides on the tracker's
state after the frame before. Nothing a frame can do (a corrupt image, a detector failure
on one frame, a stream that drops) ends the loop: it is counted, logged and the next frame
is taken. A source that cannot be had (a missing file, a dead stream) is retried by the
source itself; its failures reach the ``lensflow_edge_source_failures_total`` counter by
camera and reason.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from lensflow.edge.best_crop import BestCropSelector, CropCandidate
from lensflow.edge.crops import ByteBudget, sharpness, usefulness
from lensflow.edge.detector_service import CameraDetector, PendingBatch
from lensflow.edge.filters import DetectionFilter
from lensflow.edge.metrics import EdgeMetrics
from lensflow.edge.motion_gate import GateDecision, MotionGate
from lensflow.edge.sources import Frame, FrameSource, SourceStats, open_source
from lensflow.edge.tracking import ObjectTracker
from lensflow.shared.classifiers.base import Image
from lensflow.shared.config.edge import CameraConfig, CropConfig
from lensflow.shared.crops import cut_crop, encode_jpeg
from lensflow.shared.detectors.base import Detection, DetectionBatch, DetectorBackend
from lensflow.shared.errors import LensflowError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReadyCrop:
    """A crop chosen, cut and encoded, ready for an envelope."""

    camera: str
    jpeg: bytes
    detection: Detection
    crop_box: tuple[int, int, int, int]
    frame_size: tuple[int, int]  # width, height
    captured_at: datetime
    track_id: int | None
    zone: str | None
    reason: str


CropSink = Callable[[ReadyCrop], None]
DetectorRef = Callable[[], DetectorBackend]  # the agent may swap the detector at run time


@dataclass(slots=True)
class _InFlight:
    """A frame on its way: submitted to the detector, or let by with the gate's decision."""

    frame: Frame
    gate: GateDecision
    pending: PendingBatch | None = None  # its answer from the detector service
    batch: DetectionBatch | None = None  # its answer from a detector called directly
    error: LensflowError | None = None  # why it could not be detected


class CameraWorker:
    """Runs one camera until stopped; replaced as a whole when its config changes."""

    def __init__(
        self,
        config: CameraConfig,
        *,
        crops: CropConfig,
        detector: DetectorRef,
        sink: CropSink,
        metrics: EdgeMetrics,
        realtime: bool = True,
        pipeline_depth: int | None = None,
    ) -> None:
        """Prepare the camera (nothing runs until :meth:`start`).

        ``pipeline_depth``: most frames kept in the detector at once (at most the detector
        service's ``per_camera``, which is the default); 1 waits for each frame before
        reading the next. A detector that is not the service's is called one frame at a time.
        """
        if pipeline_depth is not None and pipeline_depth < 1:
            raise ValueError(f"pipeline_depth must be >= 1, got {pipeline_depth}")
        self.config = config
        self.pipeline_depth = pipeline_depth
        self._queue: queue.SimpleQueue[_InFlight | None] = queue.SimpleQueue()  # to complete
        self._slots = threading.Condition()  # the frames sent and not yet completed
        self._outstanding = 0
        self.crops = crops
        self._detector = detector
        self._sink = sink
        self._metrics = metrics
        self._realtime = realtime
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"camera-{config.name}", daemon=True)
        self._filter = DetectionFilter(config.filters)
        # A track must not outlive the selector's notion of it, or its id gets a second crop.
        self._tracker = ObjectTracker(
            frame_rate=config.fps,
            lost_track_s=min(1.0, crops.track_lost_after_s),
            stationary_after_s=config.motion.stationary_after_s,
        )
        self._gate = MotionGate(config.motion)
        self._selector = BestCropSelector(crops, quality=self._quality)
        self._budget: ByteBudget[ReadyCrop] = ByteBudget(
            crops.budget_bytes_per_s, crops.budget_burst_bytes, camera=config.name
        )
        self.frames = 0
        self._started = time.monotonic()  # restarted when the thread opens the source
        self.detections = 0  # before filtering: a rollout's detections per frame
        self.detect_errors = 0  # frames the detector failed on
        self.frames_detected = 0  # frames the detector ran on (the motion gate let through)
        self.source: FrameSource | None = None  # set when the thread opens it
        self.source_stats: SourceStats | None = None  # the live source's counters
        self._synced = SourceStats()  # what has been added to the metrics so far
        self._synced_budget_drops = 0
        self._sync_lock = threading.Lock()  # the camera thread and the heartbeat both sync
        self.finished = threading.Event()  # set when the source is exhausted or stopped

    def start(self) -> None:
        """Start the camera thread."""
        self._thread.start()

    def stop(self, *, timeout_s: float = 10.0) -> None:
        """Stop reading frames, send what the tracker still holds, and wait for the thread."""
        self._stop.set()
        self._thread.join(timeout_s)

    @property
    def alive(self) -> bool:
        """Whether the camera thread is running."""
        return self._thread.is_alive()

    @property
    def dead(self) -> bool:
        """Whether its source failed and gave no frame for its ``open_timeout_s``."""
        source = self.source
        return source is not None and source.dead

    @property
    def source_failures(self) -> int:
        """Failures of its source so far, every reason together."""
        stats = self.source_stats
        return sum(dict(stats.failures).values()) if stats is not None else 0

    def _run(self) -> None:
        name = self.config.name
        source = open_source(
            self.config.source,
            camera=name,
            fps=self.config.fps,
            stop=self._stop,
            realtime=self._realtime,
        )
        self.source, self.source_stats = source, source.stats
        self._started = time.monotonic()
        done = threading.Thread(target=self._completer, name=f"camera-{name}-done", daemon=True)
        done.start()
        try:
            for frame in source:
                if self._stop.is_set():
                    break
                self._admit(frame)
        except LensflowError as err:  # expected failures are one line, not a traceback
            logger.warning(
                "camera %s: source %s: error: %s; camera stopped", name, source.target, err
            )
            self._metrics.source_failures.labels(name, "error").inc()
        except Exception:  # a camera must never take the agent down
            logger.exception("camera %s: frame loop failed; camera stopped", name)
        finally:  # answer what was sent, in order, before the last crops go
            self._queue.put(None)
            done.join()
            self._emit_all(self._selector.flush())
            self._send(self._budget.poll())
            source.close()
            self.sync_metrics()
            self.finished.set()
            logger.info("camera %s: stopped after %d frames", name, self.frames)

    def sync_metrics(self) -> None:
        """Add new source skips/reconnects and budget drops to the Prometheus counters."""
        with self._sync_lock:
            self._sync_source_metrics()
            drops = self._budget.dropped - self._synced_budget_drops
            if drops:
                self._metrics.crops_dropped.labels(self.config.name, "budget").inc(drops)
                self._synced_budget_drops += drops

    def _sync_source_metrics(self) -> None:
        stats, synced, name = self.source_stats, self._synced, self.config.name
        if stats is None:
            return
        undecodable = stats.frames_skipped_undecodable - synced.frames_skipped_undecodable
        too_large = stats.frames_skipped_too_large - synced.frames_skipped_too_large
        reconnects = stats.reconnects - synced.reconnects
        if undecodable + too_large:
            self._metrics.frames_skipped.labels(name).inc(undecodable + too_large)
        if reconnects:
            self._metrics.source_reconnects.labels(name).inc(reconnects)
        synced.frames_skipped_undecodable += undecodable
        synced.frames_skipped_too_large += too_large
        synced.reconnects += reconnects
        for reason, count in dict(stats.failures).items():  # a copy: the reader thread adds
            new = count - synced.failures.get(reason, 0)
            if new:
                self._metrics.source_failures.labels(name, reason).inc(new)
                synced.failures[reason] = count

    def _admit(self, frame: Frame) -> None:
        """Send ``frame`` on its way once fewer than the camera's depth are out.

        Its answer is taken by the completer thread, in frame order, as soon as it comes:
        a source that stalls holds back no frame already detected.
        """
        detector = self._detector()
        depth = 1  # with gating: the gate needs the tracks after the frame before
        if isinstance(detector, CameraDetector) and not self.config.motion.enabled:
            depth = min(self.pipeline_depth or detector.per_camera, detector.per_camera)
        with self._slots:
            while self._outstanding >= depth:
                self._slots.wait()
            self._outstanding += 1
        try:
            item = self._begin(frame, detector)
        except BaseException:
            self._free_slot()
            raise
        self._queue.put(item)

    def _completer(self) -> None:
        """Complete the frames sent, in their order, until the camera loop ends."""
        while (item := self._queue.get()) is not None:
            try:
                self._complete(item)
            except Exception:  # one frame's failure is logged; the next is completed
                logger.exception(
                    "camera %s: frame %d failed after detection", self.config.name, item.frame.index
                )
            finally:
                self._free_slot()

    def _free_slot(self) -> None:
        """One frame sent is done with (completed, or never sent): the next may go."""
        with self._slots:
            self._outstanding -= 1
            self._slots.notify_all()

    def _begin(self, frame: Frame, detector: DetectorBackend) -> _InFlight:
        """Gate ``frame`` and submit it to the detector (or detect it here, for a plain one)."""
        name = self.config.name
        self._metrics.frames.labels(name).inc()
        if self.config.motion.enabled:
            gate = self._gate.decide(
                frame.image,
                captured_at=frame.captured_at,
                tracks_active=self._tracker.needs_detection,
                tracks_pending=self._tracker.pending,
                still_boxes=self._tracker.stationary_boxes,
                tracked_boxes=self._tracker.followed_boxes,
            )
        else:  # no gating: the tracker's state is not wanted (and is a frame behind here)
            gate = self._gate.decide(frame.image, captured_at=frame.captured_at, tracks_active=True)
        if not gate.detect:
            return _InFlight(frame, gate)
        self._metrics.frames_detected.labels(name, gate.reason).inc()
        self.frames_detected += 1
        try:
            if isinstance(detector, CameraDetector):
                return _InFlight(frame, gate, pending=detector.submit([frame.image]))
            return _InFlight(frame, gate, batch=detector.detect([frame.image]))
        except LensflowError as err:  # skipped in its turn
            return _InFlight(frame, gate, error=err)

    def _complete(self, item: _InFlight) -> None:
        """Take one frame's answer (waiting for it) and track, crop and send; in frame order."""
        frame, gate, batch = item.frame, item.gate, item.batch
        if item.pending is not None:
            try:
                batch = item.pending.result()
            except LensflowError as err:
                item.error = err
        if not gate.detect:  # nothing new moves: the tracker carries its objects
            self._metrics.frames_motion_skipped.labels(self.config.name).inc()
            # rate-limited (followed objects moving): their motion over the gap is predicted
            held = self._tracker.coast(captured_at=frame.captured_at, keep_time=gate.limited)
            self._emit_all(self._selector.hold(frame.captured_at, held))
            self._send(self._budget.poll())
        elif item.error is not None or batch is None:
            logger.warning(
                "camera %s: detector failed on frame %d: %s",
                self.config.name,
                frame.index,
                item.error,
            )
            self._metrics.frames_skipped.labels(self.config.name).inc()
            self.detect_errors += 1
        else:
            self._detected(frame, gate, batch)
        self.frames += 1
        self.sync_metrics()
        elapsed = time.monotonic() - self._started
        if elapsed > 0:
            self._metrics.fps.labels(self.config.name).set(self.frames / elapsed)

    def _detected(self, frame: Frame, gate: GateDecision, batch: DetectionBatch) -> None:
        """Filter, track, crop and send one detected frame."""
        name = self.config.name
        self._metrics.inference_ms.observe(batch.times.total_ms)
        detections = batch.detections[0]
        self._metrics.detections.labels(name).inc(len(detections))
        self.detections += len(detections)
        kept = self._filter.apply(detections)
        self._gate.absorb_empty(gate, [det.box for det in kept])
        for reason, count in self._filter.last_dropped.items():
            if count:
                self._metrics.filtered.labels(name, reason).inc(count)
        tracked = self._tracker.update(kept, captured_at=frame.captured_at)
        if self.crops.mode == "every_detection":
            # every kept detection goes, with its track id once the tracker confirmed one
            ids = {id(t.detection): t.track_id for t in tracked}
            for det in kept:
                crop = self._prepare(
                    frame.image,
                    det,
                    track_id=ids.get(id(det)),
                    captured_at=frame.captured_at,
                    reason="every_detection",
                )
                # the rank only orders crops waiting for a byte budget: none, nothing waits
                quality = 0.0
                if self._budget.rate is not None:
                    quality = self._quality(frame.image, det.box, det.score)
                self._send(self._budget.offer(crop, size=len(crop.jpeg), usefulness=quality))
        else:
            self._emit_all(
                self._selector.update(frame.index, frame.captured_at, frame.image, tracked)
            )
        self._send(self._budget.poll())

    def _emit_all(self, candidates: list[CropCandidate]) -> None:
        for candidate in candidates:
            crop = self._prepare(
                candidate.image,
                candidate.detection,
                track_id=candidate.track_id,
                captured_at=candidate.captured_at,
                reason=candidate.reason,
            )
            self._send(self._budget.offer(crop, size=len(crop.jpeg), usefulness=candidate.quality))

    def _prepare(
        self,
        image: Image,
        det: Detection,
        *,
        track_id: int | None,
        captured_at: datetime,
        reason: str,
    ) -> ReadyCrop:
        pixels, box = cut_crop(
            image, det.box, padding=self.crops.padding, max_side=self.crops.max_side
        )
        return ReadyCrop(
            camera=self.config.name,
            jpeg=encode_jpeg(pixels, quality=self.crops.jpeg_quality),
            detection=det,
            crop_box=box,
            frame_size=(image.shape[1], image.shape[0]),
            captured_at=captured_at,
            track_id=track_id,
            zone=self._filter.zone_of(det),
            reason=reason,
        )

    def _send(self, crops: list[ReadyCrop]) -> None:
        for crop in crops:
            self._sink(crop)
            self._metrics.crops_sent.labels(self.config.name).inc()

    @staticmethod
    def _quality(image: object, box: tuple[float, float, float, float], score: float) -> float:
        """How good a crop this detection makes: score, size and sharpness together."""
        x1, y1, x2, y2 = (int(v) for v in box)
        area = max(0, x2 - x1) * max(0, y2 - y1)
        region = image[max(0, y1) : y2, max(0, x1) : x2]  # type: ignore[index]
        return float(usefulness(score, area, sharpness(region) if region.size else 0.0))
