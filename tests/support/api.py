"""The cloud API under test: an app on a real database, keys of every role, seeded crops."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from lensflow.cloud.api import KeyStore, create_app
from lensflow.cloud.api.routes.search import use_search
from lensflow.cloud.search.embedder import NodeEmbedder
from lensflow.cloud.search.service import SearchService
from lensflow.cloud.storage import CropStore, FolderCropStore, ResultStore, create_engine_for
from lensflow.shared.classifiers.registry import PluginRegistry
from lensflow.shared.config.cloud import ApiConfig, CloudConfig, ControlConfig, DatabaseConfig
from lensflow.shared.config.search import SearchConfig
from lensflow.shared.dag.engine import NodeResult
from lensflow.shared.protocol import Detection, Provenance, new_crop_header
from tests.support.plugins import make_registry
from tests.support.protocol_samples import real_jpeg

T0 = datetime(2024, 5, 1, tzinfo=UTC)
ROLES = ("viewer", "operator", "admin")


@dataclass
class ApiHarness:
    """An app, a client on it, its stores, and a key per role (plus a second operator)."""

    app: FastAPI
    client: TestClient
    engine: Engine
    results: ResultStore
    crops: FolderCropStore
    tokens: dict[str, str] = field(default_factory=dict)

    def headers(self, who: str = "admin") -> dict[str, str]:
        """Bearer headers of the key ``who`` (a role, or ``operator2``)."""
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def get(self, url: str, *, who: str = "admin", **kwargs: Any) -> Any:
        return self.client.get(url, headers=self.headers(who) | kwargs.pop("headers", {}), **kwargs)

    def post(self, url: str, *, who: str = "admin", **kwargs: Any) -> Any:
        return self.client.post(url, headers=self.headers(who), **kwargs)


def make_config(
    db_url: str,
    tmp_path: Path,
    *,
    control: ControlConfig | None = None,
    search: SearchConfig | None = None,
    pipeline: Path | None = None,
    **api: Any,
) -> CloudConfig:
    """A cloud config on ``db_url`` with its crop store in ``tmp_path``."""
    return CloudConfig(
        database=DatabaseConfig(url=db_url),
        crop_store=str(tmp_path / "crops"),
        api=ApiConfig(**api),
        control=control,
        search=search,
        **({"pipeline": str(pipeline)} if pipeline is not None else {}),
    )


def issue_keys(engine: Engine) -> dict[str, str]:
    """A key per role, plus ``operator2``; by role (or name) -> token."""
    store = KeyStore(engine)
    store.ensure_table()
    tokens = {role: store.create(name=f"{role}-key", role=role).token for role in ROLES}  # type: ignore[arg-type]
    tokens["operator2"] = store.create(name="operator2-key", role="operator").token
    return tokens


@contextlib.contextmanager
def running_api(
    db_url: str,
    tmp_path: Path,
    *,
    control: ControlConfig | None = None,
    search: SearchConfig | None = None,
    pipeline: Path | None = None,
    registry: PluginRegistry | None = None,
    **api: Any,
) -> Iterator[ApiHarness]:
    """An app on a fresh (migrated) database, with keys, served through a TestClient.

    With ``search``, image search runs on the test plugins (``pipeline`` names the node);
    ``registry`` is the app's (replays compile with it), the default one when None.
    """
    engine = create_engine_for(db_url)
    try:
        config = make_config(
            db_url, tmp_path, control=control, search=search, pipeline=pipeline, **api
        )
        app = create_app(config, engine=engine, registry=registry)
        if search is not None:
            embedder = NodeEmbedder(
                config.pipeline,
                search.node,
                registry=make_registry(),
                max_pixels=search.max_image_pixels,
            )
            use_search(app, SearchService(search, engine=engine, embedder=embedder))
        with TestClient(app, raise_server_exceptions=False) as client:
            yield ApiHarness(
                app=app,
                client=client,
                engine=engine,
                results=ResultStore(engine),
                crops=FolderCropStore(tmp_path / "crops"),
                tokens=issue_keys(engine),
            )
    finally:
        engine.dispose()


def seed(api: ApiHarness, crop_id: str, **options: Any) -> None:
    """Store a crop of the harness's API (see :func:`store_crop` for ``options``)."""
    store_crop(api.results, api.crops, crop_id, **options)


def store_crop(
    results: ResultStore,
    crops: CropStore,
    crop_id: str,
    *,
    site: str = "plant-a",
    camera: str = "cam01",
    at: datetime = T0,
    class_name: str = "car",
    class_id: int = 1,
    score: float = 0.9,
    outputs: Mapping[str, Mapping[str, Any] | None] | None = None,
    jpeg: bytes | None = None,
    model_sha256: str = "ab" * 32,
) -> None:
    """Store a crop (its JPEG in the crop store) with classifier results.

    ``outputs`` maps node -> output dict (``ok``) or None (``skipped``); ``model_sha256`` is
    the edge model its provenance names (by default one no card knows).
    """
    data = jpeg or real_jpeg()
    crops.put(data)
    header = new_crop_header(
        jpeg=data,
        site=site,
        camera=camera,
        captured_at=at,
        detection=Detection(
            class_name=class_name,
            class_id=class_id,
            score=score,
            box=(10, 20, 110, 220),
            frame_width=640,
            frame_height=480,
        ),
        provenance=Provenance(model_sha256=model_sha256, config_hash="c1", agent_version="0.1"),
        crop_id=crop_id,
        sent_at=at + timedelta(seconds=1),
        track_id=7,
    )
    node_results = {
        node: NodeResult(
            node=node,
            status="ok" if output is not None else "skipped",
            output=dict(output or {}),
            reason="" if output is not None else "condition false",
            plugin=f"tests.support.plugins:{node.title()}",
            version="1.0",
        )
        for node, output in (outputs or {}).items()
    }
    assert results.save_crop_results(
        header, jpeg_size=len(data), results=node_results, pipeline="default", pipeline_version="v1"
    )


def labelled_pipeline(
    folder: Path,
    labels: Mapping[str, Sequence[str | Mapping[str, str]]],
    *,
    name: str = "labelled",
    plugin: str = "echo",
) -> Path:
    """A pipeline file whose nodes declare ``labels`` (``detection``: its edge_detection node).

    Each other key is a node of class ``plugin`` after the detection (``tshirt_color`` for a
    text the API's compiler accepts: ``echo`` is a test plugin); the file is written to
    ``folder/pipeline.yaml`` and its path returned (pass it as ``running_api(pipeline=)``).
    """
    detection: dict[str, Any] = {"name": "object_detection", "class": "edge_detection"}
    if "detection" in labels:
        detection["labels"] = list(labels["detection"])
    nodes = [detection] + [
        {"name": node, "class": plugin, "depends_on": "object_detection", "labels": list(names)}
        for node, names in labels.items()
        if node != "detection"
    ]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pipeline.yaml"
    document = {"version": 1, "name": name, "pipeline": nodes}
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


@contextlib.contextmanager
def database_for(dialect: str, request: Any, folder: Path) -> Iterator[str]:
    """A fresh empty database URL: a SQLite file in ``folder``, or one on the session cluster.

    For module-scoped fixtures, which cannot use the function-scoped ``db_url``.
    """
    if dialect == "sqlite":
        yield f"sqlite:///{folder / 'lensflow.sqlite3'}"
        return
    cluster = request.getfixturevalue("postgres_cluster")
    url: str = cluster.create_database()
    try:
        yield url
    finally:
        cluster.drop_database(url.rsplit("/", 1)[1])
