"""API specs through the command line: ``keys create`` prints a key once, and ``api`` serves
the app with uvicorn in a real process on a free port.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from lensflow.cli import app
from lensflow.cloud.api.keys import ApiKey, hash_token
from lensflow.cloud.storage import FolderCropStore, ResultStore, create_engine_for, migrate
from lensflow.services.process import free_port
from lensflow.shared.images import sample_image_paths
from tests.support.bombs import BOMBS
from tests.support.protocol_samples import make_header, real_jpeg

ROOT = Path(__file__).resolve().parents[2]
CLI = "from lensflow.cli import main\nmain()\n"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "cloud.yaml"
    doc = {
        "database": {"url": f"sqlite:///{tmp_path / 'db.sqlite3'}"},
        "crop_store": str(tmp_path / "crops"),
        "api": {"host": "127.0.0.1", "port": free_port()},
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def create_key(config: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["cloud", "keys", "create", "--config", str(config), *args])
    return result.exit_code, result.stdout, result.stderr


def test_keys_create_prints_the_key_once_and_stores_its_hash(config: Path, tmp_path: Path) -> None:
    code, out, err = create_key(config, "--role", "operator", "--name", "ops")

    assert code == 0, err
    token = out.strip()
    assert token.startswith("lfk_")
    assert "not shown again" in err
    engine = create_engine_for(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    with Session(engine) as session:
        [key] = session.scalars(select(ApiKey)).all()
    engine.dispose()
    assert (key.name, key.role, key.token_sha256) == ("ops", "operator", hash_token(token))


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["--role", "root", "--name", "x"], 2, "root"),  # not a role: a usage error
        (["--role", "admin", "--name", "twice"], 1, "expected a new key name"),
    ],
)
def test_keys_create_refuses_bad_input(config: Path, args: list[str], code: int, says: str) -> None:
    create_key(config, "--role", "viewer", "--name", "twice")

    got, _out, err = create_key(config, *args)

    assert got == code
    assert says in err


@pytest.fixture
def served(config: Path, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A real uvicorn process serving the API, a stored crop, and an operator key."""
    engine = create_engine_for(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    migrate(engine)
    FolderCropStore(tmp_path / "crops").put(real_jpeg())
    ResultStore(engine).save_crop_results(
        make_header(crop_id="served"), jpeg_size=len(real_jpeg()), results={}, pipeline="p"
    )
    engine.dispose()
    _, out, _ = create_key(config, "--role", "operator", "--name", "ops")
    with api_process(config) as (base, _process):
        yield base, out.strip()


@contextlib.contextmanager
def api_process(
    config: Path, *, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``lensflow cloud api --config`` in a child process, live; its base URL and process.

    Its output goes to ``api.log`` beside the config (a pipe nobody reads could fill up).
    """
    port = yaml.safe_load(config.read_text())["api"]["port"]
    log = config.parent / "api.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-c", CLI, "cloud", "api", "--config", str(config)],
            cwd=ROOT,
            env=os.environ | {"PYTHONPATH": str(ROOT)} | (env or {}),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_live(base, process, log=log)
        yield base, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=15)


def _wait_until_live(base: str, process: subprocess.Popen[bytes], *, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"api exited {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"api at {base} not live within 60 s:\n{log.read_text()}")


def test_api_serves_over_real_http(served: tuple[str, str]) -> None:
    base, token = served
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, timeout=10) as client:
        ready = client.get("/readyz")
        page = client.get("/v1/results", headers=auth)
        jpeg = client.get("/v1/crops/served.jpg", headers=auth)
        relabel = client.post(
            "/v1/labels", headers=auth, json={"crop_ids": ["served"], "label": "car"}
        )
        anonymous = client.get("/v1/results")
        metrics = client.get("/metrics")

    assert ready.json() == {"status": "ok", "checks": {"database": "ok"}}
    assert [item["crop_id"] for item in page.json()["items"]] == ["served"]
    assert jpeg.content == real_jpeg()
    assert relabel.status_code == 200
    assert relabel.json()["actor"] == "ops"
    assert anonymous.status_code == 401
    assert "lensflow_api_requests_total" in metrics.text


BOMB_PIPELINE = {
    "version": 1,
    "name": "bombs",
    "pipeline": [
        {"name": "object_detection", "class": "edge_detection"},
        {"name": "embedding", "class": "embeddings", "depends_on": "object_detection"},
    ],
}
# (bomb, width, height): let through, each decodes to 1.2-2.7 GB of BGR, 1.6-5.2 GB at the
# decoder's peak (tests.support.bombs)
SERVED_BOMBS = [
    ("jpeg", 30000, 30000),
    ("png", 20000, 20000),
    ("webp-lossless", 16383, 16383),
    ("webp-extended", 16383, 16383),
]
PEAK_RSS_LIMIT = 1 << 30


@pytest.fixture
def bomb_target(tmp_path: Path, ssd_coco_tflite: Path) -> Path:
    """A config with image search and HTTP ingest on real models, and an operator key."""
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(yaml.safe_dump(BOMB_PIPELINE, sort_keys=False), encoding="utf-8")
    path = tmp_path / "cloud.yaml"
    doc = {
        "pipeline": str(pipeline),
        "database": {"url": f"sqlite:///{tmp_path / 'db.sqlite3'}"},
        "crop_store": str(tmp_path / "crops"),
        "api": {"host": "127.0.0.1", "port": free_port()},
        "search": {"node": "embedding", "index": {"type": "exact", "dim": 1280}},
        "ingest": {"detector": {"backend": "litert", "model": str(ssd_coco_tflite)}},
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def _error_code(response: httpx.Response) -> str | None:
    """The ``error.code`` of an answer; None for one that is not an error."""
    body = response.json()
    return body["error"]["code"] if isinstance(body, dict) and "error" in body else None


def _peak_rss(pid: int) -> int:
    """The process's peak resident set size in bytes (``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


@pytest.mark.integration
@pytest.mark.slow
def test_serving_image_bombs_keeps_the_api_under_1_gb(
    bomb_target: Path, model_cache: Path, record_property: Callable[[str, object], None]
) -> None:
    # given the real API, its search embedder and ingest detector loaded by a real photo
    _, out, _ = create_key(bomb_target, "--role", "operator", "--name", "ops")
    auth = {"Authorization": f"Bearer {out.strip()}"}
    bus = next(p for p in sample_image_paths() if p.stem == "bus").read_bytes()
    form = {"site": "site1", "camera": "cam1"}
    env = {"LENSFLOW_MODEL_CACHE": str(model_cache)}
    with (
        api_process(bomb_target, env=env) as (base, process),
        httpx.Client(base_url=base, headers=auth, timeout=60) as client,
    ):
        search = client.post("/v1/search/image", files={"file": ("bus.jpg", bus)})
        ingest = client.post("/v1/ingest", files={"file": ("bus.jpg", bus)}, data=form)
        warm = _peak_rss(process.pid)

        # when every bomb is sent to both routes that decode uploads
        answers = {}
        for name, width, height in SERVED_BOMBS:
            build, media_type = BOMBS[name]
            upload = {"file": (name, build(width, height), media_type)}
            answers["search", name] = client.post("/v1/search/image", files=upload)
            answers["ingest", name] = client.post("/v1/ingest", files=upload, data=form)
        peak = _peak_rss(process.pid)

    # then each is refused from its header, and the process never grew towards a decode
    record_property("peak_rss_mib", (warm >> 20, peak >> 20))
    assert (search.status_code, ingest.status_code) == (200, 201), (search.text, ingest.text)
    refused = {key: (r.status_code, _error_code(r)) for key, r in answers.items()}
    assert set(refused.values()) == {(400, "undecodable_image")}, refused
    assert peak < PEAK_RSS_LIMIT, f"peak RSS {peak >> 20} MiB (after warm-up {warm >> 20} MiB)"
