"""Watching a demo run: what the edge sent (its metrics and log) and what the cloud stored.

The edge agent's Prometheus metrics count, per camera, frames, detections and crops handed to
its spool; its JSON log says when a camera's source is exhausted (after which that camera's
counters no longer move). The API says what the database stored; the worker's metrics count
dead letters. A run is *processed* when every camera has finished, the spool is empty, and
stored plus dead-lettered crops reach what the edge sent.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from lensflow.demo.prepare import DemoError
from lensflow.demo.services import Metrics, metric, scrape

_STOPPED = re.compile(r"^camera (?P<camera>\S+): stopped after (?P<frames>\d+) frames$")


@dataclass
class CameraCounts:
    """One camera's counters, as its edge agent reported them."""

    frames: int = 0
    detections: int = 0
    crops_sent: int = 0
    crops_stored: int = 0
    finished: bool = False


@dataclass
class Progress:
    """Where the run stands."""

    cameras: dict[str, CameraCounts]
    spooled: int = 0
    published: int = 0
    processed: int = 0
    dead_letters: int = 0

    @property
    def sent(self) -> int:
        """Crops the edge handed to its spool, every camera."""
        return sum(c.crops_sent for c in self.cameras.values())

    @property
    def stored(self) -> int:
        """Crops stored in the database, every camera."""
        return sum(c.crops_stored for c in self.cameras.values())

    @property
    def edge_done(self) -> bool:
        """Every source exhausted and every crop acknowledged by the broker."""
        return (
            all(c.finished for c in self.cameras.values())
            and self.spooled == 0
            and self.published >= self.sent
        )

    @property
    def done(self) -> bool:
        """The edge is done and the cloud stored (or dead-lettered) all it sent."""
        return self.edge_done and self.stored + self.dead_letters >= self.sent


class EdgeLog:
    """Reads the edge agent's JSON log as it grows; remembers which cameras stopped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""
        self.stopped: dict[str, int] = {}

    def poll(self) -> None:
        """Read the lines written since the last poll."""
        if not self.path.is_file():
            return
        with self.path.open("rb") as file:
            file.seek(self._offset)
            chunk = file.read()
        self._offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            self._line(line)

    def _line(self, line: bytes) -> None:
        try:
            entry = json.loads(line)
        except ValueError:
            return  # not a log record (a warning printed by a library)
        if not isinstance(entry, dict):
            return
        match = _STOPPED.match(str(entry.get("message", "")))
        if match:
            self.stopped[match["camera"]] = int(match["frames"])


class ApiClient:
    """The few API calls the demo makes, with one key."""

    def __init__(self, base_url: str, key: str) -> None:
        self.base_url = base_url
        self.key = key
        self.http = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=10.0
        )

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def get(self, path: str, **params: Any) -> Any:
        """The JSON of a GET that must succeed.

        Raises:
            DemoError: The API answered an error status or could not be reached.

        """
        try:
            answer = self.http.get(path, params=params)
        except httpx.HTTPError as err:
            raise DemoError(f"GET {self.base_url}{path} failed: {err}") from err
        if answer.status_code != 200:
            raise DemoError(
                f"expected 200 from GET {path}, got {answer.status_code}: {answer.text[:300]}"
            )
        return answer.json()

    def post(self, path: str, body: Any = None, **params: Any) -> Any:
        """The JSON of a POST that must succeed (200, 201 or 202).

        Raises:
            DemoError: The API answered another status (its error message quoted) or could
                not be reached.

        """
        try:
            answer = self.http.post(path, json=body, params=params, timeout=120.0)
        except httpx.HTTPError as err:
            raise DemoError(f"POST {self.base_url}{path} failed: {err}") from err
        if answer.status_code not in (200, 201, 202):
            raise DemoError(
                f"expected success from POST {path}, got {answer.status_code}: {answer.text[:500]}"
            )
        return answer.json()

    def stored_per_camera(self, since: datetime) -> Counter[str]:
        """Crops stored per camera, captured since ``since``."""
        now = datetime.now(UTC) + timedelta(minutes=1)
        start = since - timedelta(minutes=1)
        data = self.get(
            "/v1/aggregates",
            by="camera",
            bucket="hour",
            **{"from": start.isoformat(), "to": now.isoformat()},
        )
        counts: Counter[str] = Counter()
        for row in data["rows"]:
            counts[str(row["key"])] += int(row["count"])
        return counts

    def all_results(self, *, limit: int = 200) -> list[dict[str, Any]]:
        """Every stored result (oldest first), page by page."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"order": "asc", "limit": limit}
            if cursor is not None:
                params["cursor"] = cursor
            page = self.get("/v1/results", **params)
            items.extend(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                return items


@dataclass
class Monitor:
    """Puts the edge's metrics and log, the worker's metrics and the API together."""

    cameras: list[str]
    edge_metrics_port: int
    worker_metrics_port: int
    edge_log: EdgeLog
    api: ApiClient
    since: datetime
    last: Progress = field(init=False)

    def __post_init__(self) -> None:
        self.last = Progress(cameras={name: CameraCounts() for name in self.cameras})

    def poll(self) -> Progress:
        """Read everything once; keeps the last good edge and worker figures if one is down."""
        self.edge_log.poll()
        progress = self.last
        edge = scrape(self.edge_metrics_port)
        if edge is not None:
            self._edge(progress, edge)
        worker = scrape(self.worker_metrics_port)
        if worker is not None:
            progress.processed = int(metric(worker, "lensflow_worker_messages_total"))
            progress.dead_letters = int(metric(worker, "lensflow_worker_dead_letters_total"))
        stored = self.api.stored_per_camera(self.since)
        for name, counts in progress.cameras.items():
            counts.crops_stored = stored.get(name, 0)
        unknown = sorted(set(stored) - set(progress.cameras))
        if unknown:
            raise DemoError(f"expected crops of cameras {self.cameras}, got some of {unknown}")
        return progress

    def _edge(self, progress: Progress, samples: Metrics) -> None:
        for name, counts in progress.cameras.items():
            # a camera's counters are final once its log says it stopped: read them after that
            finished = name in self.edge_log.stopped
            counts.frames = int(metric(samples, "lensflow_edge_frames_total", camera=name))
            counts.detections = int(metric(samples, "lensflow_edge_detections_total", camera=name))
            counts.crops_sent = int(metric(samples, "lensflow_edge_crops_sent_total", camera=name))
            counts.finished = finished
        progress.spooled = int(metric(samples, "lensflow_edge_spooled"))
        progress.published = int(metric(samples, "lensflow_edge_published_total"))
