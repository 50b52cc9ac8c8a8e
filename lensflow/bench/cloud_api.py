"""API latency: ``GET /v1/results`` with filters on a million rows in PostgreSQL, over HTTP.

A private PostgreSQL cluster is migrated (``lensflow.cloud.storage.migrate``) and bulk-loaded
(:mod:`lensflow.bench.cloud_rows`); ``lensflow cloud api`` serves it from a child process
(uvicorn, as deployed) and a keep-alive HTTP client times filtered pages, camera + class +
score range + 7-day capture window, 50 a page, each filter's first page and the next ones by
cursor. The plan PostgreSQL picks for the API's own query (``page_query`` compiled for
PostgreSQL) is printed with ``EXPLAIN ANALYZE``, so a regression to a row-by-row filter of
``ix_crops_captured_at_id`` (instead of ``ix_crops_camera_class_name_captured_at_id``) shows.
"""

from __future__ import annotations

import logging
import random
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml

from lensflow.bench import BenchError
from lensflow.bench.cloud_rows import CAMERAS, END, SPAN_DAYS, load_rows
from lensflow.cloud.api import KeyStore
from lensflow.cloud.api.queries import ResultFilter, decode_cursor, page_query
from lensflow.cloud.storage import create_engine_for, migrate
from lensflow.services.postgres import PostgresCluster
from lensflow.services.process import ManagedProcess, ProcessError, StopTimeoutError, free_port
from lensflow.services.readiness import http_200

TARGET_MS = 50.0
PAGE = 50
WINDOW_DAYS = 7
SCORES = (0.5, 0.9)
CLASSES = ("person", "car")
SERVER_SETTINGS = ("shared_buffers=256MB", "max_wal_size=4GB")
"""Beyond the throwaway cluster's defaults: a cache for the table, no checkpoints mid-load."""
_START_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 10.0

logger = logging.getLogger(__name__)


@dataclass
class Latency:
    """Request latencies of one series, in milliseconds."""

    requests: int
    p50_ms: float
    p95_ms: float
    first_page_p95_ms: float
    next_pages_p95_ms: float

    @property
    def ratio(self) -> float:
        """p95 over the target (at most 1.0 meets it)."""
        return self.p95_ms / TARGET_MS


@dataclass
class ApiBench:
    """Latency of the filtered results query, with the load and the query plans."""

    rows: int
    target_ms: float = TARGET_MS
    load_s: dict[str, float] = field(default_factory=dict)
    schema: Latency | None = None
    plan_first_page: str = ""
    plan_next_page: str = ""
    index_used: bool = False


def run_api_bench(*, rows: int, folder: Path, filters: int = 40, pages: int = 5) -> ApiBench:
    """Load ``rows`` crops into a private PostgreSQL, serve the API, time filtered pages.

    Args:
        rows: Crops (each with one classifier result) to load.
        folder: Scratch folder (config, crop store, server log).
        filters: Distinct filters timed (each a random camera, class and capture window).
        pages: Pages per filter: the first one, then ``pages - 1`` by cursor.

    Returns:
        The figures and plans.

    Raises:
        PostgresError: If the cluster cannot be started.
        BenchError: If the API cannot be started or answers an error.

    """
    result = ApiBench(rows=rows)
    with PostgresCluster(settings=SERVER_SETTINGS) as cluster:
        url = cluster.url()
        migrate(url)
        with cluster.connect() as connection:
            load = load_rows(connection, rows=rows)
        result.load_s = {"insert": load.insert_s, "indexes": load.index_s, "vacuum": load.vacuum_s}
        token = _viewer_key(url)
        specs = _filters(filters)
        with ApiServer(api_config(folder, url=url), folder=folder) as server:
            client = httpx.Client(
                base_url=server.base_url,
                headers={"Authorization": f"Bearer {token}"},
                timeout=30.0,
            )
            with client:
                _time_pages(client, specs[:5], pages=2)  # warm-up: connections, caches
                result.schema, cursor = _time_pages(client, specs, pages=pages)
                result.plan_first_page, result.index_used = explain(url, specs[0])
                result.plan_next_page, _ = explain(url, specs[0], after=cursor)
    return result


def _filters(count: int, *, seed: int = 7) -> list[ResultFilter]:
    """``count`` filters: a camera, a class, the score range and a 7-day capture window."""
    chooser = random.Random(seed)  # noqa: S311 - reproducible filters, not secrets
    first = END - timedelta(days=SPAN_DAYS)
    specs = []
    for _ in range(count):
        start = first + timedelta(hours=chooser.randrange((SPAN_DAYS - WINDOW_DAYS) * 24))
        specs.append(
            ResultFilter(
                camera=chooser.choice(CAMERAS),
                class_name=chooser.choice(CLASSES),
                min_score=SCORES[0],
                max_score=SCORES[1],
                captured_from=start,
                captured_to=start + timedelta(days=WINDOW_DAYS),
            )
        )
    return specs


def _params(spec: ResultFilter) -> dict[str, str]:
    """The query parameters of a filter, as the API reads them."""
    values = {key: value for key, value in asdict(spec).items() if value is not None}
    return {
        key: value.isoformat() if isinstance(value, datetime) else str(value)
        for key, value in values.items()
    }


def _time_pages(
    client: httpx.Client, specs: list[ResultFilter], *, pages: int
) -> tuple[Latency, tuple[datetime, int] | None]:
    """Time each filter's first page and its next ``pages - 1``; the first filter's last cursor."""
    first: list[float] = []
    later: list[float] = []
    cursor_seen: tuple[datetime, int] | None = None
    for index, spec in enumerate(specs):
        params: dict[str, str] = {**_params(spec), "limit": str(PAGE)}
        for page in range(pages):
            start = time.perf_counter()
            response = client.get("/v1/results", params=params)
            elapsed = (time.perf_counter() - start) * 1000
            if response.status_code != 200:
                raise BenchError(
                    f"GET /v1/results answered {response.status_code}: {response.text[:300]}"
                )
            (first if page == 0 else later).append(elapsed)
            cursor = response.json().get("next_cursor")
            if cursor is None:
                break
            if index == 0:
                cursor_seen = decode_cursor(cursor)
            params["cursor"] = cursor
    every = first + later
    return (
        Latency(
            requests=len(every),
            p50_ms=statistics.median(every),
            p95_ms=percentile(every, 95),
            first_page_p95_ms=percentile(first, 95),
            next_pages_p95_ms=percentile(later, 95) if later else 0.0,
        ),
        cursor_seen,
    )


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (linear interpolation between the closest ranks)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def explain(
    url: str, spec: ResultFilter, *, after: tuple[datetime, int] | None = None
) -> tuple[str, bool]:
    """``EXPLAIN ANALYZE`` of the API's page query for ``spec`` (after the keyset ``after``).

    Returns:
        A one-line summary of the plan with its execution time, and whether it scans an
        index of ``crops`` (an index, index-only or bitmap index scan).

    """
    statement = page_query(spec, order="desc", after=after, limit=PAGE)
    engine = create_engine_for(url)
    try:
        compiled = statement.compile(dialect=engine.dialect)
        with engine.connect() as connection:
            document = connection.exec_driver_sql(
                "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + str(compiled), compiled.params
            ).scalar_one()
    finally:
        engine.dispose()
    top = document[0]
    steps: list[str] = []
    used = _walk(top["Plan"], steps)
    return f"{' > '.join(steps)}; {top['Execution Time']:.1f} ms", used


def _walk(node: dict[str, Any], steps: list[str]) -> bool:
    """Describe ``node`` and its children into ``steps``; whether one scans an index of crops."""
    text = node["Node Type"]
    if node.get("Scan Direction") == "Backward":
        text += " Backward"
    if "Index Name" in node:
        text += f" using {node['Index Name']}"
    if "Relation Name" in node:
        text += f" on {node['Relation Name']}"
    if removed := node.get("Rows Removed by Filter"):
        text += f" ({removed:,} rows removed by filter)"
    steps.append(text)
    index = str(node.get("Index Name", ""))
    used = "Index" in node["Node Type"] and index.startswith(("ix_crops", "pk_crops", "uq_crops"))
    for child in node.get("Plans", []):
        used = _walk(child, steps) or used
    return used


def _viewer_key(url: str) -> str:
    """A new viewer API key on the database (the table is created if missing)."""
    engine = create_engine_for(url)
    try:
        store = KeyStore(engine)
        store.ensure_table()
        return store.create(name="bench-viewer", role="viewer").token
    finally:
        engine.dispose()


def api_config(folder: Path, *, url: str, search: dict[str, Any] | None = None) -> Path:
    """A cloud config for the API on ``url``: no rate limit in the way, warnings only.

    Args:
        folder: Where the config file and the crop store go.
        url: The database URL.
        search: The ``search:`` section (image search off when None).

    """
    path = folder / "cloud-api.yaml"
    document: dict[str, Any] = {
        "database": {"url": url},
        "crop_store": str(folder / "api-crops"),
        "api": {"rate_limit": "1000000/minute"},
        "logging": {"level": "WARNING"},
    }
    if search is not None:
        document["search"] = search
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


class ApiServer:
    """``lensflow cloud api`` in a child process on a free port (a context manager).

    Its output goes to ``folder/api.log`` (started afresh); :attr:`base_url` is where it
    answers. Entering waits until ``/healthz`` answers 200.
    """

    def __init__(self, config: Path, *, folder: Path) -> None:
        """Prepare to serve ``config``; entering starts the process and waits for health."""
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.config = config
        self.log = folder / "api.log"
        command = [sys.executable, "-m", "lensflow", "cloud", "api", "--config", str(config)]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        self._process = ManagedProcess(
            command,
            name="the API",
            log_file=self.log,
            ready=http_200(f"{self.base_url}/healthz"),
            start_timeout_s=_START_TIMEOUT_S,
            stop_timeout_s=_STOP_TIMEOUT_S,
        )

    def __enter__(self) -> ApiServer:
        """Start the API and wait until it is healthy.

        Raises:
            BenchError: It exited, or was not healthy within 60 s; with its log tail.

        """
        self.log.unlink(missing_ok=True)
        try:
            self._process.start()
        except ProcessError as err:
            raise BenchError(f"the API did not start: {err}") from err
        return self

    def __exit__(self, *_exc: object) -> None:
        """Stop it with SIGTERM (SIGKILL after 10 s)."""
        try:
            self._process.stop()
        except StopTimeoutError as err:
            logger.warning("%s", err)
