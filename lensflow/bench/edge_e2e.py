"""``lensflow bench edge --end-to-end``: source to acknowledged crop, in one run.

A real agent plays a sample video on N cameras at once (N = 1, 2, 4 by default) against a
private mosquitto: every camera's frames go through the agent's one detector service, as
they do in production. Each N runs once per crop mode asked (``best_per_track``, the
product's default, cuts one crop per track; ``every_detection`` one per detection) and per
``in_flight`` asked (frames a camera keeps in the detector service; 1 is the synchronous
loop, ``None`` the agent's default). Beside each run, on the same artifact and decoded frames: the
detector alone (one ``detect`` call after another) and the engine's own throughput limit
(OpenVINO: THROUGHPUT hint and an ``AsyncInferQueue``; LiteRT: the best of 1, one per core
and 4 interpreters invoked from as many threads; both without pre- or post-processing). The
ratio aggregate frames/s over that limit is what the detector service is measured by.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np

from lensflow.edge.agent import EdgeAgent, default_loader
from lensflow.edge.detector_service import DetectorService
from lensflow.edge.sample_video import make_sample_video
from lensflow.models.export.artifacts import Backend
from lensflow.services.mosquitto import MosquittoBroker
from lensflow.shared.classifiers.base import Image
from lensflow.shared.config.edge import CropConfig, EdgeConfig
from lensflow.shared.detectors.factory import load_detector

CropMode = Literal["best_per_track", "every_detection"]
DEFAULT_CROP_MODE: CropMode = CropConfig().mode
"""The product's default crop mode (what an agent runs with no ``crops:`` in its config)."""


@dataclass(frozen=True)
class EndToEnd:
    """One end-to-end run on ``cameras`` cameras and its baselines.

    ``engine_limit_fps`` is the mean of the limit measured right before and right after it.
    """

    cameras: int
    frames: int
    crops: int
    seconds: float
    detector_only_fps: float
    engine_limit_fps: float
    service_only_fps: float = 0.0
    crop_mode: CropMode = "best_per_track"
    in_flight: int = 1  # frames each camera kept in the detector service at most
    cpu_ms_per_frame: float = 0.0  # this process's CPU (every thread) over the run, per frame
    engine_cpu_ms_per_frame: float = 0.0  # the same for the engine limit's runs

    @property
    def cores(self) -> float:
        """CPU cores the agent kept busy on average (CPU time over wall time)."""
        return self.cpu_ms_per_frame * self.frames / 1e3 / self.seconds

    @property
    def cpu_ratio(self) -> float:
        """Engine CPU per frame over the agent's: the limit ratio it reaches when CPU-bound.

        What the rest of the agent (decoding, pre/post-processing, tracking, crops,
        publishing) costs beside inference, whatever share of the cores it got.
        """
        return self.engine_cpu_ms_per_frame / self.cpu_ms_per_frame

    @property
    def fps(self) -> float:
        """Aggregate frames per second over every camera, source to acknowledged crop."""
        return self.frames / self.seconds

    @property
    def ratio(self) -> float:
        """End-to-end fps over detector-only fps (1.0 = the pipeline adds nothing)."""
        return self.fps / self.detector_only_fps

    @property
    def service_ratio(self) -> float:
        """The detector service alone (N threads, decoded frames) over the engine limit."""
        return self.service_only_fps / self.engine_limit_fps

    @property
    def limit_ratio(self) -> float:
        """Aggregate fps over the engine's throughput limit (target >= 0.9)."""
        return self.fps / self.engine_limit_fps


def run_end_to_end(
    artifact: Path,
    *,
    backend: Backend,
    frames: int = 40,
    cameras: Sequence[int] = (1,),
    crop_modes: Sequence[CropMode] = (DEFAULT_CROP_MODE,),
    in_flight: Sequence[int | None] = (None,),
) -> list[EndToEnd]:
    """Run a real agent on a sample video, per camera count, crop mode and in-flight depth.

    The engine limit is measured right before and after each agent run (the machine's load
    drifts); the detector service alone once per camera count, before its agent runs.
    """
    results = []
    with tempfile.TemporaryDirectory(prefix="lensflow-bench-") as scratch:
        folder = Path(scratch)
        video = make_sample_video(folder / "clip.avi", frames=frames)
        decoded = _decode(video)
        detector_fps = _detector_only(artifact, backend, decoded)
        calls = max(40, 2 * len(decoded))
        with MosquittoBroker(folder / "broker") as broker:
            for count in cameras:
                service_fps = service_only_fps(artifact, backend, decoded, cameras=count)
                for mode in crop_modes:
                    for depth in in_flight:
                        run = folder / f"run{count}-{mode}-{depth}"
                        config = _config(broker, run, artifact, backend, video, count, mode)
                        agent = EdgeAgent(config, load=default_loader, realtime=False)
                        if depth is not None:  # cameras keep as many as the service allows
                            agent.service.per_camera = depth
                        before = engine_limit(artifact, backend, decoded, count=calls)
                        start, cpu = time.perf_counter(), time.process_time()
                        _play(agent)
                        seconds = time.perf_counter() - start
                        cpu = time.process_time() - cpu
                        after = engine_limit(artifact, backend, decoded, count=calls)
                        frames_done = agent.counters()["frames"]
                        results.append(
                            EndToEnd(
                                cameras=count,
                                frames=frames_done,
                                crops=agent.publisher.stats()["acked"],
                                seconds=seconds,
                                detector_only_fps=detector_fps,
                                engine_limit_fps=(before.fps + after.fps) / 2,
                                service_only_fps=service_fps,
                                crop_mode=mode,
                                in_flight=agent.service.per_camera,
                                cpu_ms_per_frame=cpu * 1e3 / max(1, frames_done),
                                engine_cpu_ms_per_frame=(before.cpu_ms + after.cpu_ms) / 2,
                            )
                        )
    return results


def _config(
    broker: MosquittoBroker,
    folder: Path,
    artifact: Path,
    backend: str,
    video: Path,
    count: int,
    mode: CropMode,
) -> EdgeConfig:
    folder.mkdir()
    return EdgeConfig.model_validate(
        {
            "site": "bench",
            "agent_id": "edge-bench",
            "mqtt": {"host": broker.host, "port": broker.port},
            "detector": {"backend": backend, "model": str(artifact)},
            "cameras": [
                {"name": f"clip{i}", "source": {"type": "video", "path": str(video)}, "fps": 120}
                for i in range(count)
            ],
            "crops": {"mode": mode},
            # no cloud worker here: a crop is done when the broker acknowledges it
            "spool": {"path": str(folder / "spool.sqlite3"), "receipts": False},
            "metrics_port": None,
        }
    )


def _play(agent: EdgeAgent) -> None:
    """Run ``agent`` until every camera's source has ended, then stop it (spool drained).

    What ``run(until_sources_end=True)`` does, without polling for the end at each
    heartbeat: the agent keeps its own heartbeat period (the product's default), and the
    run ends when the last camera does, not up to a heartbeat later.
    """
    agent.start()
    try:
        for worker in list(agent.cameras.values()):
            worker.finished.wait()
    finally:
        agent.stop()  # stops the cameras, drains the spool: every crop acknowledged


def _decode(video: Path) -> list[Image]:
    import cv2

    capture = cv2.VideoCapture(str(video))
    decoded: list[Image] = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        decoded.append(frame.astype(np.uint8, copy=False))  # BGR uint8 already: no copy
    capture.release()
    return decoded


def _detector_only(artifact: Path, backend: Backend, decoded: list[Image]) -> float:
    with load_detector(artifact, backend=backend) as detector:
        detector.detect([decoded[0]])
        start = time.perf_counter()
        for frame in decoded:
            detector.detect([frame])
        return len(decoded) / (time.perf_counter() - start)


def service_only_fps(
    artifact: Path, backend: Backend, decoded: list[Image], *, cameras: int
) -> float:
    """Frames/s of the agent's detector service fed by ``cameras`` threads, nothing else.

    Loaded as the agent loads it for that many cameras; each thread detects every decoded
    frame in turn, as a camera would, without video decoding, crops or publishing.
    """
    service = DetectorService(load_detector(artifact, backend=backend, parallel=cameras))
    clients = [service.client(f"cam{i}") for i in range(cameras)]
    for client in clients:
        client.detect([decoded[0]])

    def run(index: int) -> None:
        for frame in decoded:
            clients[index].detect([frame])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(cameras)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    service.close()
    return cameras * len(decoded) / seconds


class Limit(NamedTuple):
    """The engine's throughput limit and the CPU it took per frame (every thread)."""

    fps: float
    cpu_ms: float


def engine_limit_fps(
    artifact: Path, backend: Backend, decoded: list[Image], *, count: int
) -> float:
    """The engine's throughput on one prepared input, with no pre- or post-processing."""
    return engine_limit(artifact, backend, decoded, count=count).fps


def engine_limit(artifact: Path, backend: Backend, decoded: list[Image], *, count: int) -> Limit:
    """The engine's throughput and CPU per frame on one prepared input, no pre/post.

    OpenVINO: the THROUGHPUT hint and its optimal number of requests in an
    ``AsyncInferQueue`` (as ``lensflow bench edge`` measures it); LiteRT: see
    :func:`_litert_limit`; ONNX Runtime: one ``detect`` after another.
    """
    if backend == "openvino" and artifact.suffix != ".tflite":
        from lensflow.shared.detectors.preprocess import preprocess

        with load_detector(artifact, backend=backend) as detector:
            size = detector.info.input_size
        return _openvino_limit(artifact, preprocess([decoded[0]], input_size=size).tensor, count)
    if backend == "litert":
        return _litert_limit(artifact, decoded[0], count=count)
    with load_detector(artifact, backend=backend) as detector:  # no async engine API here
        detector.detect([decoded[0]])
        return _timed(lambda: [detector.detect([decoded[0]]) for _ in range(count)], count)


def _timed(run: Callable[[], object], count: int) -> Limit:
    """Frames/s and CPU ms per frame of ``run``, which handles ``count`` frames."""
    start, cpu = time.perf_counter(), time.process_time()
    run()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return Limit(count / seconds, cpu * 1e3 / count)


def _openvino_limit(artifact: Path, tensor: np.ndarray, count: int) -> Limit:
    """OpenVINO's THROUGHPUT hint with its optimal number of async requests, one input."""
    from lensflow.bench.edge import run_queue, throughput_queue
    from lensflow.shared.detectors.openvino_model import resolve_model_file

    queue = throughput_queue(resolve_model_file(artifact), tensor)
    return _timed(lambda: run_queue(queue, tensor, count), count)


def _litert_limit(artifact: Path, frame: Image, *, count: int) -> Limit:
    """The best of 1, one per core and 4 interpreters, each invoked from a thread of its own."""
    counts = sorted({1, max(1, os.cpu_count() or 1), 4})
    return max(_litert_fps(artifact, frame, count=count, parallel=p) for p in counts)


def _litert_fps(artifact: Path, frame: Image, *, count: int, parallel: int) -> Limit:
    """``parallel`` interpreters invoked from as many threads on a prepared input."""
    from lensflow.shared.detectors.litert import LiteRtDetector, resize_rgb

    detector = LiteRtDetector(artifact, interpreters=parallel)
    tensor = resize_rgb(frame, detector.info.input_size, source=str(artifact))[None]
    for _ in range(2 * parallel):
        detector.invoke(tensor)
    share = [count // parallel + (1 if i < count % parallel else 0) for i in range(parallel)]

    def run_one(calls: int) -> None:
        for _ in range(calls):
            detector.invoke(tensor)

    def run() -> None:
        threads = [threading.Thread(target=run_one, args=(calls,)) for calls in share]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    return _timed(run, count)
