"""The agent with sources that fail, on a real broker: ``--once`` ends, heartbeats count them.

The detector is an in-memory one that finds nothing: no crop is made, so stopping has nothing
to drain and the test is about the sources alone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import pytest

from lensflow.edge.agent import EdgeAgent
from lensflow.services.mosquitto import MosquittoBroker
from lensflow.services.process import free_port
from lensflow.shared.classifiers.base import Image
from lensflow.shared.config.edge import DetectorConfig, EdgeConfig
from lensflow.shared.detectors.base import DetectionBatch, DetectorBackend, ModelInfo

pytestmark = pytest.mark.integration


class NothingDetector(DetectorBackend):
    """Finds nothing, at once."""

    info = ModelInfo(path="in-memory", names={0: "person"}, input_size=(640, 640))

    def detect(self, images: Sequence[Image]) -> DetectionBatch:
        return DetectionBatch([[] for _ in images])


def load_nothing(_config: DetectorConfig, *, parallel: int = 1) -> tuple[DetectorBackend, str]:
    return NothingDetector(), "0" * 64


def test_once_ends_when_the_remaining_sources_are_dead_past_their_open_timeout(
    mosquitto: MosquittoBroker,
    tmp_path: Path,
    sample_images: dict[str, Image],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given a folder that ends, a stream nobody answers and a video that is not there
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "bus.jpg"), sample_images["bus"])
    dead_stream = f"rtsp://127.0.0.1:{free_port()}/never"
    config = EdgeConfig.model_validate(
        {
            "site": "site1",
            "agent_id": "edge-1",
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
            "detector": {"backend": "onnxruntime", "model": "in-memory"},
            "cameras": [
                {"name": "lobby", "source": {"type": "folder", "path": str(photos)}},
                {
                    "name": "gate",
                    "source": {"type": "stream", "url": dead_stream, "open_timeout_s": 0.5},
                },
                {
                    "name": "street",
                    "source": {
                        "type": "video",
                        "path": str(tmp_path / "no.mp4"),
                        "open_timeout_s": 0.5,
                    },
                },
            ],
            "spool": {"path": str(tmp_path / "spool.sqlite3")},
            "heartbeat_s": 0.2,
            "metrics_port": None,
        }
    )
    agent = EdgeAgent(config, load=load_nothing, realtime=False)

    # when it runs as `lensflow edge --once` does
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        thread = threading.Thread(target=agent.run, kwargs={"until_sources_end": True})
        thread.start()
        thread.join(30)
    ended = not thread.is_alive()
    if not ended:
        agent.request_stop()
        thread.join(30)

    # then it ended soon after the dead sources' open timeout, saying which and why
    assert ended, "--once kept waiting for dead sources"
    assert time.monotonic() - started < 20
    messages = [r.getMessage() for r in caplog.records]
    assert any("camera gate: source dead (unreachable)" in m for m in messages)
    assert any("camera street: source dead (missing)" in m for m in messages)
    failures = agent.metrics.source_failures
    assert failures.labels("gate", "unreachable")._value.get() >= 1
    assert failures.labels("street", "missing")._value.get() >= 1
    assert agent.counters()["source_failures"] >= 2
    assert agent.counters()["frames"] == 1  # the folder's photo
