"""The edge agent end to end on a real broker, a real detector and real photos."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from lensflow.edge.agent import EdgeAgent, default_loader
from lensflow.services.mosquitto import MosquittoBroker
from lensflow.services.process import free_port
from lensflow.shared.config.edge import EdgeConfig
from lensflow.shared.images import sample_image_paths
from lensflow.shared.protocol import (
    ALL_CROPS,
    config_ack_topic,
    config_topic,
    decode_config_ack,
    decode_crop,
    decode_status,
    status_topic,
)
from tests.support.brokers import Collector, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def photo_folder(tmp_path: Path) -> Path:
    """The two real photos, a flipped copy of each, and one corrupt file among them."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in sample_image_paths():
        shutil.copy(path, folder / path.name)
        cv2.imwrite(str(folder / f"{path.stem}_flipped.jpg"), cv2.flip(cv2.imread(str(path)), 1))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 this is not a JPEG")
    return folder


def agent_config(
    broker: MosquittoBroker, tmp_path: Path, model: Path, cameras: list[dict], **crops: object
) -> EdgeConfig:
    return EdgeConfig.model_validate(
        {
            "site": "site1",
            "agent_id": "edge-1",
            "mqtt": {
                "host": broker.host,
                "port": broker.port,
                "reconnect_min_s": 0.1,
                "reconnect_max_s": 0.5,
            },
            "detector": {"backend": "onnxruntime", "model": str(model), "conf_threshold": 0.3},
            "cameras": cameras,
            "crops": {"mode": "every_detection", **crops},
            "spool": {"path": str(tmp_path / "spool.sqlite3"), "receipts": False},  # no cloud here
            "heartbeat_s": 0.3,
            "metrics_port": None,
        }
    )


def run_in_thread(agent: EdgeAgent, *, until_sources_end: bool) -> threading.Thread:
    thread = threading.Thread(
        target=agent.run, kwargs={"until_sources_end": until_sources_end}, daemon=True
    )
    thread.start()
    return thread


def test_folder_of_real_photos_publishes_decodable_crops(
    mosquitto: MosquittoBroker, tmp_path: Path, person_onnx: Path, photo_folder: Path
) -> None:
    config = agent_config(
        mosquitto,
        tmp_path,
        person_onnx,
        [{"name": "lobby", "source": {"type": "folder", "path": str(photo_folder)}, "fps": 5}],
    )
    with Collector(mosquitto, ALL_CROPS, key_of=lambda p: decode_crop(p).header.crop_id) as sub:
        agent = EdgeAgent(config, load=default_loader, realtime=False)
        run_in_thread(agent, until_sources_end=True).join(120)
        assert agent.spool.__len__() == 0  # everything acknowledged
        assert wait_for(lambda: len(sub.keys()) >= 8, timeout_s=10)
        messages = [decode_crop(p) for p in sub.payloads()]
    assert {m.header.camera for m in messages} == {"lobby"}
    for message in messages:
        det = message.header.detection
        assert det.class_name in {"Normal", "Fall"}  # the model's own class names
        assert (det.frame_width, det.frame_height) in {(810, 1080), (1280, 720)}
        crop = cv2.imdecode(np.frombuffer(message.jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert crop is not None and min(crop.shape[:2]) > 10
        assert message.header.provenance.config_hash == agent.applied_hash
    # the corrupt file was skipped and counted; the agent went on with the others
    assert agent.metrics.frames_skipped.labels("lobby")._value.get() == 1
    assert agent.counters()["frames"] == 4
    # the Prometheus endpoint serves the counters
    port = free_port()
    agent.metrics.serve(port)
    import urllib.request

    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'lensflow_edge_frames_total{camera="lobby"} 4.0' in body
    assert "lensflow_edge_crops_sent_total" in body


def test_video_made_from_real_photos_sends_one_best_crop_per_track(
    mosquitto: MosquittoBroker, tmp_path: Path, person_onnx: Path
) -> None:
    from lensflow.edge.sample_video import make_sample_video

    video = make_sample_video(tmp_path / "street.avi", frames=24)
    config = agent_config(
        mosquitto,
        tmp_path,
        person_onnx,
        [{"name": "street", "source": {"type": "video", "path": str(video)}, "fps": 10}],
        mode="best_per_track",
    )
    with Collector(mosquitto, ALL_CROPS, key_of=lambda p: decode_crop(p).header.crop_id) as sub:
        agent = EdgeAgent(config, load=default_loader, realtime=False)
        run_in_thread(agent, until_sources_end=True).join(180)
        assert wait_for(lambda: len(sub.keys()) >= 1, timeout_s=10)
        headers = [decode_crop(p).header for p in sub.payloads()]
    tracks = [h.track_id for h in headers]
    assert all(t is not None for t in tracks)
    assert len(tracks) == len(set(tracks))  # one crop per track
    assert agent.counters()["frames"] >= 20


def test_bad_inputs_leave_the_agent_running(
    mosquitto: MosquittoBroker, tmp_path: Path, person_onnx: Path, photo_folder: Path
) -> None:
    silent = f"rtsp://127.0.0.1:{free_port()}/never"
    config = agent_config(
        mosquitto,
        tmp_path,
        person_onnx,
        [
            {
                "name": "lobby",
                "source": {"type": "folder", "path": str(photo_folder), "loop": True},
                "fps": 2,
            },
            {"name": "gate", "source": {"type": "stream", "url": silent, "open_timeout_s": 0.5}},
        ],
    )
    acks = Collector(
        mosquitto,
        config_ack_topic(site="site1", camera="edge-1"),
        client_id="acks",
        key_of=lambda p: decode_config_ack(p).status,
    ).start()
    agent = EdgeAgent(config, load=default_loader, realtime=True)
    thread = run_in_thread(agent, until_sources_end=False)
    try:
        assert wait_for(lambda: agent.publisher.connected, timeout_s=10)
        pusher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="pusher")
        pusher.connect(mosquitto.host, mosquitto.port)
        pusher.loop_start()
        topic = config_topic(site="site1", camera="edge-1")
        # an invalid config: rejected, the running one stays
        pusher.publish(topic, b"cameras: [{name: 'bad name!', source: {type: usb}}]", qos=1)
        assert wait_for(lambda: "rejected" in acks.keys(), timeout_s=10)
        assert agent.metrics.config_rejected._value.get() == 1
        # the stream that never answers is retried and counted, without a frame
        gate = agent.metrics.source_reconnects.labels("gate")
        assert wait_for(lambda: gate._value.get() >= 1, timeout_s=15)
        # a valid config that drops the dead stream: applied, the lobby camera not disturbed,
        # the model kept as loaded (one camera pipelines two frames: as many as two did)
        lobby, sha, detector = agent.cameras["lobby"], agent.model_sha256, agent.detector
        assert agent.detector.parallelism == 2
        valid = config.model_dump(mode="json", exclude={"mqtt", "spool"})
        valid["cameras"] = valid["cameras"][:1]
        valid["heartbeat_s"] = 0.25
        import json

        pusher.publish(topic, json.dumps(valid).encode(), qos=1)
        assert wait_for(lambda: "applied" in acks.keys(), timeout_s=15)
        assert set(agent.cameras) == {"lobby"} and agent.cameras["lobby"] is lobby
        assert agent.detector is detector and agent.model_sha256 == sha
        assert thread.is_alive()
        frames = lobby.frames
        assert wait_for(lambda: lobby.frames > frames, timeout_s=10)  # still working
        pusher.loop_stop()
    finally:
        agent.request_stop()
        thread.join(60)
        acks.stop()
    status = Collector(
        mosquitto,
        status_topic(site="site1", camera="edge-1"),
        client_id="st",
        key_of=lambda p: decode_status(p).state,
    ).start()
    assert wait_for(lambda: "offline" in status.keys(), timeout_s=5)  # retained final status
    status.stop()


def test_agent_killed_with_spooled_crops_loses_nothing(
    tmp_path: Path, person_onnx: Path, photo_folder: Path
) -> None:
    import signal
    import sqlite3
    import subprocess
    import sys

    import yaml

    broker = MosquittoBroker(tmp_path / "broker")  # not started yet: the agent must spool
    config = agent_config(
        broker,
        tmp_path,
        person_onnx,
        [
            {
                "name": "lobby",
                "source": {"type": "folder", "path": str(photo_folder), "loop": True},
                "fps": 5,
            }
        ],
    )
    config_file = tmp_path / "edge.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    spool_file = tmp_path / "spool.sqlite3"
    command = [sys.executable, "-m", "lensflow", "edge", "--config", str(config_file)]

    def spooled_keys() -> set[str]:
        if not spool_file.exists():
            return set()
        with sqlite3.connect(f"file:{spool_file}?mode=ro", uri=True) as db:
            try:
                return {row[0] for row in db.execute("SELECT key FROM messages")}
            except sqlite3.OperationalError:  # not created yet
                return set()

    agent = subprocess.Popen(
        command, cwd=Path(__file__).parents[2], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        assert wait_for(lambda: len(spooled_keys()) >= 4, timeout_s=90)
    finally:
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
    lost_if_not_spooled = spooled_keys()
    broker.start()
    try:
        with Collector(broker, ALL_CROPS, key_of=lambda p: decode_crop(p).header.crop_id) as sub:
            again = subprocess.Popen(
                command,
                cwd=Path(__file__).parents[2],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                assert wait_for(lambda: lost_if_not_spooled <= sub.keys(), timeout_s=90)
            finally:
                again.send_signal(signal.SIGTERM)
                again.wait(60)
    finally:
        broker.stop()
