"""What the cloud API answers, as the desktop app reads it (pydantic, unknown fields ignored).

These mirror ``lensflow.cloud.api.schemas`` and ``lensflow.cloud.api.control_schemas`` without
importing them:
the desktop app talks to the API over HTTP only and does not need the cloud tier installed.
Extra fields are ignored, so a newer server does not break an older app.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

DETECTION_NODE = "detection"
"""The node under which a human label relabels the edge detection itself."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Detection(_Model):
    """The edge detection a crop shows."""

    class_name: str
    class_id: int
    score: float
    box: list[float]
    frame_width: int
    frame_height: int
    track_id: int | None = None
    crop_box: list[int] | None = None


class NodeLabel(_Model):
    """A classifier node's outcome in a result list."""

    status: Literal["ok", "skipped", "error"]
    label: str | None = None
    score: float | None = None


class ResultItem(_Model):
    """A crop in a result list."""

    crop_id: str
    site: str
    camera: str
    captured_at: datetime
    received_at: datetime
    detection: Detection
    classifiers: dict[str, NodeLabel] = Field(default_factory=dict)
    human_labels: dict[str, str] = Field(default_factory=dict)
    jpeg_sha256: str
    crop_url: str

    def label(self, node: str = DETECTION_NODE) -> str | None:
        """The crop's current label for ``node``: the human one, else the model's."""
        if node in self.human_labels:
            return self.human_labels[node]
        if node == DETECTION_NODE:
            return self.detection.class_name
        outcome = self.classifiers.get(node)
        return outcome.label if outcome else None

    @property
    def reviewed(self) -> bool:
        """Whether a human labelled any node of this crop."""
        return bool(self.human_labels)


class ResultPage(_Model):
    """One page of results and the cursor of the next one (None: the last page)."""

    items: list[ResultItem]
    next_cursor: str | None = None


class Provenance(_Model):
    """What produced a crop and its results."""

    model_sha256: str
    config_hash: str
    agent_version: str
    pipeline_name: str
    pipeline_version: str | None = None


class ClassifierOutput(_Model):
    """Everything one classifier node stored for a crop."""

    node: str
    plugin: str
    plugin_version: str
    status: Literal["ok", "skipped", "error"]
    label: str | None = None
    score: float | None = None
    output: dict[str, Any] = Field(default_factory=dict)
    reason: str = ""
    duration_ms: float = 0.0
    batch_size: int = 1


class HumanLabel(_Model):
    """A crop's current human label for one node."""

    node: str
    label: str
    actor: str
    labeled_at: datetime


class LabelEvent(_Model):
    """One change in the audit trail."""

    crop_id: str
    node: str
    old_label: str | None
    new_label: str | None
    actor: str
    at: datetime
    batch_id: str | None = None
    old_status: str | None = None
    new_status: str | None = None


class ResultDetail(ResultItem):
    """A crop with everything the API knows about it."""

    provenance: Provenance
    sent_at: datetime
    jpeg_size: int
    attributes: dict[str, Any] = Field(default_factory=dict)
    outputs: list[ClassifierOutput] = Field(default_factory=list)
    labels: list[HumanLabel] = Field(default_factory=list)
    history: list[LabelEvent] = Field(default_factory=list)


class AggregateRow(_Model):
    """The count of crops of one group in one time bucket."""

    bucket: datetime
    key: str | None
    count: int


class Aggregates(_Model):
    """Counts per bucket and group."""

    by: Literal["camera", "class", "label"]
    bucket: Literal["hour", "day"]
    start: datetime
    end: datetime
    rows: list[AggregateRow]


class LabelBatch(_Model):
    """What a relabel (or an undo) changed; ``batch_id`` is what undo takes."""

    batch_id: str
    undoes: str | None = None
    actor: str
    changed: int
    unchanged: int
    events: list[LabelEvent] = Field(default_factory=list)


class ConfigIssue(_Model):
    """One problem of a config text, at its 1-based line and column when known."""

    message: str
    field: str = ""
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        what = f"{self.field}: " if self.field else ""
        return f"{where}{what}{self.message}"


class ConfigValidation(_Model):
    """Whether a config text would be accepted by the agents, and its hash if so."""

    valid: bool
    config_hash: str | None = None
    issues: list[ConfigIssue] = Field(default_factory=list)


class ConfigVersion(_Model):
    """A stored edge config version."""

    id: int
    config_hash: str
    text: str
    comment: str | None = None
    created_at: datetime
    created_by: str | None = None


class Assignment(_Model):
    """An edge's desired config and what the edge answered about it."""

    site: str
    agent_id: str
    config_version_id: int
    desired_hash: str
    ack_status: Literal["pending", "applied", "rejected"]
    acked_hash: str | None = None
    error: str | None = None
    assigned_at: datetime
    assigned_by: str | None = None
    acked_at: datetime | None = None
    last_sent_at: datetime | None = None
    sent_count: int = 0


class EdgeInfo(_Model):
    """An edge agent: its last status, heartbeat counters and config state."""

    site: str
    agent_id: str
    online: bool
    state: Literal["online", "offline", "unknown"]
    agent_version: str | None = None
    applied_config_hash: str | None = None
    counters: dict[str, int] = Field(default_factory=dict)
    status_at: datetime | None = None
    last_seen: datetime | None = None
    desired: Assignment | None = None
    in_sync: bool | None = None


class SimilarItem(ResultItem):
    """A search hit: a crop as in a result list, plus its cosine similarity to the query."""

    similarity: float


class SearchResult(_Model):
    """The crops most similar to a query, best first (``GET /v1/search/similar/{id}``).

    Attributes:
        items: The hits, most similar first (the query crop itself is not among them).
        k: How many were asked for.
        node: The pipeline node whose embeddings were compared.

    """

    items: list[SimilarItem]
    k: int
    node: str = ""


Order = Literal["desc", "asc"]


@dataclass(frozen=True)
class ResultQuery:
    """The filters and sort of a result list; None means no condition.

    Attributes mirror ``GET /v1/results``: ``label`` matches a human or classifier label
    (of ``node`` when given), ``reviewed=False`` lists only unreviewed crops,
    ``disagreement=True`` only those whose human label differs from the edge or classifier.
    """

    camera: str | None = None
    class_name: str | None = None
    label: str | None = None
    node: str | None = None
    min_score: float | None = None
    max_score: float | None = None
    captured_from: datetime | None = None
    captured_to: datetime | None = None
    reviewed: bool | None = None
    disagreement: bool | None = None
    order: Order = "desc"

    def params(self) -> dict[str, str]:
        """The query parameters the API reads (booleans as ``true``/``false``, ISO times)."""
        values: dict[str, str] = {"order": self.order}
        for name in (
            "camera",
            "class_name",
            "label",
            "node",
            "min_score",
            "max_score",
            "captured_from",
            "captured_to",
            "reviewed",
            "disagreement",
        ):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool):
                values[name] = "true" if value else "false"
            elif isinstance(value, datetime):
                values[name] = value.isoformat()
            else:
                values[name] = str(value)
        return values
