"""Specs of how a worker picks and follows its pipeline version (real SQLite, real compiler).

The end-to-end swap under load, on both intakes with two worker processes, is
tests/cloud/test_versions_live.py; here each rule is checked on its own.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, update

from lensflow.cloud.storage import create_engine_for, migrate
from lensflow.cloud.storage.db import session_factory
from lensflow.cloud.storage.models import PipelineVersion
from lensflow.cloud.storage.models_loop import WorkerRow
from lensflow.cloud.worker.startup import open_versions
from lensflow.cloud.worker.versions import (
    PipelineText,
    VersionBook,
    VersionFollower,
    WorkerStatus,
    compile_text,
    digest,
)
from lensflow.shared.classifiers.registry import PluginRegistry
from lensflow.shared.config.cloud import CloudConfig, DatabaseConfig
from lensflow.shared.dag.engine import Pipeline
from tests.support.api import running_api
from tests.support.worker import PIPELINE


def pipeline_text(*nodes: str) -> str:
    """The test DAG keeping only ``nodes`` (by name)."""
    kept = [node for node in PIPELINE["pipeline"] if node["name"] in nodes]
    return yaml.safe_dump({**PIPELINE, "pipeline": kept}, sort_keys=False)


@pytest.fixture
def engine(tmp_path: Path) -> Any:
    built = create_engine_for(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    migrate(built)
    yield built
    built.dispose()


def store(engine: Engine, text: str, *, active: bool) -> int:
    """Store a version as the API does (optionally the only active one); its id."""
    with session_factory(engine)() as session:
        if active:
            session.execute(update(PipelineVersion).values(active=False))
        row = PipelineVersion(
            name=PIPELINE["name"],
            yaml_text=text,
            sha256=digest(text),
            created_by="t",
            active=active,
        )
        session.add(row)
        session.commit()
        return row.id


def local(tmp_path: Path, text: str, name: str = "pipeline.yaml") -> PipelineText:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return PipelineText.of_file(str(path))


def test_the_local_file_seeds_the_first_version_and_is_not_a_competing_truth(
    engine: Engine, tmp_path: Path
) -> None:
    book = VersionBook(engine)
    first = local(tmp_path, pipeline_text("object_detection", "tshirt_color"), "a.yaml")
    other = local(tmp_path, pipeline_text("object_detection"), "b.yaml")

    seeded = book.seed(first, actor="worker a")
    again = book.seed(other, actor="worker b")  # a second worker with another local file

    assert seeded is not None and seeded.sha256 == first.sha256 and seeded.version_id == 1
    assert again == seeded, "the stored active version wins over a later local file"


def test_a_name_with_versions_but_none_active_runs_the_local_file(
    engine: Engine, tmp_path: Path
) -> None:
    store(engine, pipeline_text("object_detection"), active=False)

    assert (
        VersionBook(engine).seed(local(tmp_path, pipeline_text("tshirt_color")), actor="w") is None
    )


def follower_on(
    engine: Engine, running: PipelineText, load: Any, *, retry_s: float = 600.0
) -> VersionFollower:
    status = WorkerStatus.starting("w-1", "mqtt://127.0.0.1:1883 t", running)
    return VersionFollower(
        book=VersionBook(engine), running=running, status=status, load=load, poll_s=0.05,
        retry_s=retry_s,
    )  # fmt: skip


def test_a_new_active_version_is_loaded_beside_the_old_and_taken_between_batches(
    engine: Engine, tmp_path: Path, registry: PluginRegistry
) -> None:
    running = VersionBook(engine).seed(
        local(tmp_path, pipeline_text("object_detection")), actor="w"
    )
    assert running is not None
    follower = follower_on(engine, running, lambda v: compile_text(v, registry=registry))
    new_text = pipeline_text("object_detection", "tshirt_color")
    new_id = store(engine, new_text, active=True)

    assert follower.take() is None, "nothing is handed over before a poll loaded it"
    follower.poll_once()
    taken = follower.take()

    assert taken is not None
    version, pipeline = taken
    assert (version.version_id, version.sha256) == (new_id, digest(new_text))
    assert [node.name for node in pipeline.compiled.nodes] == ["object_detection", "tshirt_color"]
    assert follower.take() is None, "handed over once"
    assert follower.status.sha256 == digest(new_text) and follower.status.last_error == ""
    follower.poll_once()  # the active version is the running one now: nothing to load
    assert follower.take() is None


def test_a_version_that_fails_to_load_is_not_applied_and_is_retried_only_later(
    engine: Engine, tmp_path: Path
) -> None:
    running = VersionBook(engine).seed(
        local(tmp_path, pipeline_text("object_detection")), actor="w"
    )
    assert running is not None
    attempts: list[str] = []

    def load(version: PipelineText) -> Pipeline:
        attempts.append(version.sha256)
        raise RuntimeError("model file var/models/x.onnx is missing")

    follower = follower_on(engine, running, load, retry_s=600.0)
    bad_id = store(engine, pipeline_text("object_detection", "tshirt_color"), active=True)

    follower.poll_once()
    follower.poll_once()  # within retry_s: not tried again

    assert follower.take() is None
    assert len(attempts) == 1
    assert follower.status.sha256 == running.sha256, "still on the old version"
    assert follower.status.last_error.startswith(f"pipeline version {bad_id} (")
    assert "did not load: model file var/models/x.onnx is missing" in follower.status.last_error
    follower._failed = {sha: 0.0 for sha in follower._failed}  # retry_s has passed
    follower.poll_once()
    assert len(attempts) == 2


def test_a_worker_whose_active_version_does_not_load_starts_on_its_local_file_and_says_why(
    engine: Engine, tmp_path: Path, registry: PluginRegistry
) -> None:
    seed = pipeline_text("object_detection")
    (tmp_path / "pipeline.yaml").write_text(seed, encoding="utf-8")
    broken = pipeline_text("object_detection").replace("edge_detection", "no_such_plugin")
    broken_id = store(engine, broken, active=True)
    config = CloudConfig(
        pipeline=str(tmp_path / "pipeline.yaml"), database=DatabaseConfig(url=str(engine.url))
    )

    running = open_versions(
        config=config,
        engine=engine,
        registry=registry,
        intake=SimpleNamespace(name="w-1"),
    )

    assert running.version.sha256 == digest(seed) and running.version.version_id is None
    status = running.follower.status
    assert status.last_error.startswith(f"pipeline version {broken_id} (")
    assert "unknown classifier 'no_such_plugin'" in status.last_error


def test_the_follower_reports_the_worker_until_it_stops(engine: Engine, tmp_path: Path) -> None:
    running = VersionBook(engine).seed(
        local(tmp_path, pipeline_text("object_detection")), actor="w"
    )
    assert running is not None
    follower = follower_on(engine, running, lambda v: None)
    book = VersionBook(engine)
    seen = threading.Event()
    original = book.report

    def report(status: WorkerStatus) -> None:
        original(status)
        seen.set()

    follower.book = SimpleNamespace(report=report, active=book.active)  # type: ignore[assignment]
    follower.start()
    try:
        assert seen.wait(5)
        seen.clear()
        assert seen.wait(5), "reported again at the next poll"
    finally:
        follower.stop()


def test_get_workers_lists_what_each_runs_and_marks_the_silent_ones(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'api.sqlite3'}"
    with running_api(db_url, tmp_path) as api:
        book = VersionBook(api.engine)
        running = PipelineText("p", "x", "a" * 64, 3, "pipeline version 3")
        fresh = WorkerStatus.starting("w-fresh", "amqp queue q", running)
        book.report(replace(fresh, last_error="pipeline version 4 (bbbb) did not load: no"))
        old = replace(fresh, id="w-old", since=datetime.now(UTC) - timedelta(hours=1))
        book.report(old)
        with session_factory(api.engine)() as session:  # w-old went silent an hour ago
            row = session.get(WorkerRow, "w-old")
            assert row is not None
            row.last_seen = datetime.now(UTC) - timedelta(hours=1)
            session.commit()

        listed = {row["id"]: row for row in api.get("/v1/workers", who="viewer").json()}
        alive = api.get("/v1/workers?alive=true", who="viewer").json()

    assert listed["w-fresh"]["alive"] and not listed["w-old"]["alive"]
    assert listed["w-fresh"]["sha256"] == "a" * 64 and listed["w-fresh"]["version_id"] == 3
    assert listed["w-fresh"]["last_error"].endswith("did not load: no")
    assert [row["id"] for row in alive] == ["w-fresh"]
