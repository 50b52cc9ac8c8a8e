"""``lensflow bench edge --end-to-end``: source to acknowledged crop, in one run.

Frames per second from a video file to crops acknowledged by a real (private) mosquitto,
beside the detector alone on the same decoded frames.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lensflow.edge.agent import EdgeAgent, default_loader
from lensflow.edge.sample_video import make_sample_video
from lensflow.models.export.artifacts import Backend
from lensflow.services.mosquitto import MosquittoBroker
from lensflow.shared.classifiers.base import Image
from lensflow.shared.config.edge import EdgeConfig
from lensflow.shared.detectors.factory import load_detector


@dataclass(frozen=True)
class EndToEnd:
    """One end-to-end run and its detector-only baseline."""

    frames: int
    crops: int
    seconds: float
    detector_only_fps: float

    @property
    def fps(self) -> float:
        """Frames per second, source to acknowledged crop."""
        return self.frames / self.seconds

    @property
    def ratio(self) -> float:
        """End-to-end fps over detector-only fps (1.0 = the pipeline adds nothing)."""
        return self.fps / self.detector_only_fps


def run_end_to_end(artifact: Path, *, backend: Backend, frames: int = 40) -> EndToEnd:
    """Run a real agent on a sample video against a private mosquitto; time it."""
    with tempfile.TemporaryDirectory(prefix="lensflow-bench-") as scratch:
        folder = Path(scratch)
        video = make_sample_video(folder / "clip.avi", frames=frames)
        detector_fps = _detector_only(artifact, backend, video)
        with MosquittoBroker(folder / "broker") as broker:
            config = EdgeConfig.model_validate(
                {
                    "site": "bench",
                    "agent_id": "edge-bench",
                    "mqtt": {"host": broker.host, "port": broker.port},
                    "detector": {"backend": backend, "model": str(artifact)},
                    "cameras": [
                        {
                            "name": "clip",
                            "source": {"type": "video", "path": str(video)},
                            "fps": 120,
                        }
                    ],
                    "crops": {"mode": "every_detection"},
                    # no cloud worker here: a crop is done when the broker acknowledges it
                    "spool": {"path": str(folder / "spool.sqlite3"), "receipts": False},
                    "heartbeat_s": 0.2,
                    "metrics_port": None,
                }
            )
            agent = EdgeAgent(config, load=default_loader, realtime=False)
            start = time.perf_counter()
            agent.run(until_sources_end=True)  # returns once the spool is drained
            seconds = time.perf_counter() - start
            stats = agent.publisher.stats()
            return EndToEnd(
                frames=agent.counters()["frames"],
                crops=stats["acked"],
                seconds=seconds,
                detector_only_fps=detector_fps,
            )


def _detector_only(artifact: Path, backend: Backend, video: Path) -> float:
    import cv2

    capture = cv2.VideoCapture(str(video))
    decoded: list[Image] = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        decoded.append(frame.astype(np.uint8, copy=False))  # BGR uint8 already: no copy
    capture.release()
    with load_detector(artifact, backend=backend) as detector:
        detector.detect([decoded[0]])
        start = time.perf_counter()
        for frame in decoded:
            detector.detect([frame])
        return len(decoded) / (time.perf_counter() - start)
