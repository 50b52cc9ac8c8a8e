"""Fleet model delivery on real parts: mosquitto, the API served over HTTP, a running agent.

The real COCO SSD (Coral's uint8 TFLite) is pushed to the registry as a bundle and assigned;
the agent downloads, verifies, warms up and swaps it without a restart, and its crops carry
the bundle's sha256. A bundle corrupted in storage and a model whose outputs are not what
its card declares are each rejected while the old model keeps sending crops; re-assigning
the previous config version restores the previous sha256. An interrupted download resumes
with a Range request once the API is back.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from typer.testing import CliRunner

from lensflow.cli import app as cli
from lensflow.cloud.storage.bundles import BundleStore
from lensflow.edge.model_fetch import BundleFetcher
from lensflow.models.export.published import published_artifact
from lensflow.services.mosquitto import MosquittoBroker
from lensflow.services.process import free_port
from lensflow.shared.config.edge import EdgeConfig, RegistryConfig
from lensflow.shared.model_bundle import sha256_file
from lensflow.shared.protocol import crops_topic, decode_crop, status_topic
from tests.cloud.test_control_edge import RunningAgent, api, assign, edge, photos  # noqa: F401
from tests.support.api import ApiHarness
from tests.support.brokers import mosquitto, wait_for  # noqa: F401
from tests.support.mqtt_probe import Probe

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SITE, AGENT = "site1", "edge-1"


@contextlib.contextmanager
def served(app: FastAPI, port: int | None = None) -> Iterator[str]:
    """``app`` on uvicorn in a thread (its lifespan already run by the harness); base URL."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert wait_for(lambda: server.started, timeout_s=10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def desired(model: str, photos: Path) -> str:  # noqa: F811
    return (
        f"detector: {{backend: litert, model: '{model}', conf_threshold: 0.3}}\n"
        "cameras:\n"
        "  - name: lobby\n"
        f"    source: {{type: folder, path: '{photos}', loop: true}}\n"
        "    fps: 5\n"
        "crops: {mode: every_detection}\n"
        "heartbeat_s: 0.3\n"
    )


def artifact(tmp_path: Path, model_cache: Path, name: str, **card: Any) -> Path:
    """The COCO SSD as an artifact folder; ``card`` overrides fields of its model card."""
    folder = tmp_path / name
    source = tmp_path / "coco"
    if not source.is_dir():
        published_artifact(
            "ssd-mobilenet-v2-coco",
            manifest=ROOT / "configs" / "models.yaml",
            cache_dir=model_cache,
            out_dir=source,
        )
    shutil.copytree(source, folder)
    doc = json.loads((folder / "model_card.json").read_text()) | {"name": name} | card
    (folder / "model_card.json").write_text(json.dumps(doc))
    return folder


def push(folder: Path, base: str, token: str) -> str:
    result = CliRunner().invoke(cli, ["models", "push", str(folder), "--api", base, "--key", token])
    assert result.exit_code == 0, result.output
    return result.stdout.strip().splitlines()[-1].removeprefix("sha256:")


class Crops:
    """The agent's crops as they reach the broker: (arrival time, model sha256)."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.probe = Probe(broker, user=None)
        self.topic = crops_topic(site=SITE, camera="lobby")
        self.probe.subscribe(self.topic)
        self.probe.subscribe(status_topic(site=SITE, camera=AGENT))

    def models(self, since: int = 0) -> list[str]:
        got = self.probe.received(self.topic)[since:]
        return [decode_crop(p).header.provenance.model_sha256 for p in got]

    def frame_gaps(self, since: int) -> list[float]:
        """Seconds between consecutive frames that gave crops, from crop ``since`` on."""
        got = self.probe.received(self.topic)[since:]
        times = sorted({decode_crop(p).header.captured_at.timestamp() for p in got})
        return [b - a for a, b in itertools.pairwise(times)]

    def capture_times(self, until: datetime | None = None) -> set[datetime]:
        """The capture times of the frames whose crops arrived (captured up to ``until``)."""
        got = (decode_crop(p).header.captured_at for p in self.probe.received(self.topic))
        return {at for at in got if until is None or at <= until}

    def count(self) -> int:
        return len(self.probe.received(self.topic))

    def status_model(self) -> str | None:
        got = self.probe.received(status_topic(site=SITE, camera=AGENT))
        return json.loads(got[-1]).get("model_sha256") if got else None


def test_a_pushed_model_is_applied_live_and_bad_ones_are_rejected(
    api: ApiHarness,  # noqa: F811
    mosquitto: MosquittoBroker,  # noqa: F811
    photos: Path,  # noqa: F811
    ssd_coco_tflite: Path,
    model_cache: Path,
    tmp_path: Path,
) -> None:
    with served(api.app) as base:
        local = EdgeConfig.model_validate(
            {
                "site": SITE,
                "agent_id": AGENT,
                "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "reconnect_max_s": 0.5},
                "detector": {"backend": "litert", "model": str(ssd_coco_tflite)},
                "cameras": [{"name": "lobby", "source": {"type": "folder", "path": str(photos)}}],
                "spool": {"path": str(tmp_path / "spool.sqlite3"), "receipts": False},
                "registry": {
                    "url": base,
                    "key": api.tokens["viewer"],
                    "cache": str(tmp_path / "bundles"),
                    "retry_for_s": 2,
                },
                "heartbeat_s": 0.3,
                "metrics_port": None,
            }
        )
        crops = Crops(mosquitto)
        running = RunningAgent(local)
        try:
            file_sha = sha256_file(ssd_coco_tflite)
            before = assign(api, desired(str(ssd_coco_tflite), photos))
            assert wait_for(lambda: edge(api).get("in_sync") is True, timeout_s=20), edge(api)
            assert wait_for(lambda: crops.count() >= 3, timeout_s=20)
            assert set(crops.models()) == {file_sha}

            # a pushed bundle, assigned: applied without a restart, crops carry its sha256
            good = push(
                artifact(tmp_path, model_cache, "coco-bundle"), base, api.tokens["operator"]
            )
            worker = running.agent.cameras["lobby"]
            read_before, had_crops = worker.frames, crops.capture_times()
            started, seen = time.monotonic(), crops.count()
            version = assign(api, desired(f"sha256:{good}", photos))
            acked = version["config_hash"]
            assert wait_for(lambda: edge(api)["desired"]["acked_hash"] == acked, timeout_s=30)
            applied_s = time.monotonic() - started
            assert edge(api)["desired"]["ack_status"] == "applied"
            assert wait_for(lambda: good in crops.models(seen), timeout_s=10)
            assert running.thread.is_alive() and running.agent.model_sha256 == good
            assert wait_for(lambda: crops.status_model() == good, timeout_s=5)
            assert wait_for(lambda: crops.count() >= seen + 10, timeout_s=10)
            swapped = crops.models(seen)
            assert swapped == sorted(swapped, key=lambda m: m == good)  # old, then new: no mix
            # every frame the camera read through the swap (each has people) gave crops: the
            # frames read since before the assignment against the frames whose crops arrived
            assert running.agent.cameras["lobby"] is worker  # swapped, camera not restarted
            read, until = worker.frames - read_before, datetime.now(UTC)
            wait_for(lambda: len(crops.capture_times(until) - had_crops) >= read, timeout_s=30)
            dropped = read - len(crops.capture_times(until) - had_crops)  # -1: one in flight
            assert dropped <= 0, (read, worker.detect_errors, worker.detections, worker.frames)
            dropped = max(dropped, 0)
            print(f"assign->applied {applied_s:.2f} s; frames dropped during the swap: {dropped}")

            # a bundle corrupted in storage: the download does not hash as named
            corrupt = push(
                artifact(tmp_path, model_cache, "coco-corrupt"), base, api.tokens["operator"]
            )
            stored = BundleStore(tmp_path / "crops").path(corrupt)
            data = bytearray(stored.read_bytes())
            data[len(data) // 2] ^= 0xFF
            stored.write_bytes(bytes(data))
            _rejected(api, crops, desired(f"sha256:{corrupt}", photos), good, "downloaded")

            # a model whose outputs are not its card's: two classes declared, eighty given
            wrong = push(
                artifact(tmp_path, model_cache, "wrong-outputs", class_names={"0": "a", "1": "b"}),
                base,
                api.tokens["operator"],
            )
            _rejected(api, crops, desired(f"sha256:{wrong}", photos), good, "classes its card")

            # rollback: the previous version again, the previous sha256 again
            edges = {"edges": [{"site": SITE, "agent_id": AGENT}]}
            assert api.post(f"/v1/configs/{before['id']}/assign", json=edges).status_code == 200
            assert wait_for(lambda: edge(api)["in_sync"] is True, timeout_s=20), edge(api)
            seen = crops.count()
            assert wait_for(lambda: file_sha in crops.models(seen), timeout_s=10)
        finally:
            running.stop()


def _rejected(api: ApiHarness, crops: Crops, text: str, running_sha: str, says: str) -> None:  # noqa: F811
    assign(api, text)
    assert wait_for(lambda: edge(api)["desired"]["ack_status"] == "rejected", timeout_s=30), edge(
        api
    )
    assert says in edge(api)["desired"]["error"]
    seen = crops.count()
    assert wait_for(lambda: crops.count() >= seen + 3, timeout_s=10)  # the old model goes on
    assert set(crops.models(seen)) == {running_sha}


def test_an_interrupted_download_resumes_after_an_api_restart(
    api: ApiHarness,  # noqa: F811
    ssd_coco_tflite: Path,
    model_cache: Path,
    tmp_path: Path,
) -> None:
    port = free_port()
    with served(api.app, port) as base:
        sha = push(artifact(tmp_path, model_cache, "coco-bundle"), base, api.tokens["operator"])
    whole = BundleStore(tmp_path / "crops").path(sha).read_bytes()
    cache = tmp_path / "edge-bundles"
    cache.mkdir()
    (cache / f"{sha}.part").write_bytes(whole[: len(whole) // 2])  # cut half way
    registry = RegistryConfig(url=base, key=api.tokens["viewer"], retry_for_s=30)  # type: ignore[arg-type]
    fetcher = BundleFetcher(registry, cache=cache)
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(fetcher.fetch(sha)), daemon=True)
    thread.start()  # the API is down: the fetcher retries
    time.sleep(1.0)
    assert not result
    with served(api.app, port):
        restarted = time.monotonic()
        thread.join(30)
        resumed_s = time.monotonic() - restarted
    assert result and result[0].card.name == "coco-bundle"
    assert fetcher.resumed == 1  # a Range request for the second half, not a new download
    print(f"resumed {len(whole) - len(whole) // 2} bytes {resumed_s:.2f} s after the restart")
