"""API specs through the command line: ``keys create`` prints a key once, and ``api`` serves
the app with uvicorn in a real process on a free port.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from lensflow.cli import app
from lensflow.cloud.api.keys import ApiKey, hash_token
from lensflow.cloud.storage import CropStore, ResultStore, create_engine_for, migrate
from lensflow.services.process import free_port
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
    CropStore(tmp_path / "crops").put(real_jpeg())
    ResultStore(engine).save_crop_results(
        make_header(crop_id="served"), jpeg_size=len(real_jpeg()), results={}, pipeline="p"
    )
    engine.dispose()
    _, out, _ = create_key(config, "--role", "operator", "--name", "ops")
    port = yaml.safe_load(config.read_text())["api"]["port"]
    process = subprocess.Popen(
        [sys.executable, "-c", CLI, "cloud", "api", "--config", str(config)],
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_live(base, process)
        yield base, out.strip()
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=15)


def _wait_until_live(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read().decode() if process.stdout else ""
            raise AssertionError(f"api exited {process.returncode}:\n{output}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"api at {base} not live within 30 s")


def test_api_serves_over_real_http(served: tuple[str, str]) -> None:
    base, token = served
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, timeout=10) as client:
        ready = client.get("/readyz")
        page = client.get("/v1/results", headers=auth)
        jpeg = client.get("/v1/crops/served.jpg", headers=auth)
        relabel = client.post(
            "/v1/labels", headers=auth, json={"crop_ids": ["served"], "label": "bus"}
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
