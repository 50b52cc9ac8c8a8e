"""What the cloud API's review routes answer, as the desktop app reads them (pydantic).

Label schemas (``/v1/label-schemas``), review statuses (``/v1/reviews``), bulk relabels of
similar crops (``/v1/labels/similar``), the facets of the filter drop-downs (``/v1/facets``) and
the review queue's sorts of ``/v1/results``. They mirror ``lensflow.cloud.api.review_schemas``
without importing it (the app talks to the API over HTTP only); unknown fields are ignored, so a
newer server does not break an older app.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from lensflow.desktop.api_types import DETECTION_NODE, ResultItem, ResultQuery

ReviewStatus = Literal["accepted", "relabelled", "rejected", "unsure"]
"""A review's status (not a class): the model is right, a human label, a wrong detection,
skipped for now."""
DecisionStatus = Literal["accepted", "rejected", "unsure"]
"""The statuses :meth:`ReviewCalls.review` sets (``relabelled`` comes with a relabel)."""
LabelSource = Literal["pipeline", "model", "observed", "operator"]
QueueSort = Literal["captured_at", "confidence_asc", "disagreement", "unreviewed_first"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class SchemaLabel(_Model):
    """One label of a node's schema.

    Attributes:
        id: Its class id (position in the model's order): what exports write.
        name: The label.
        key: Its hotkey digit (``"1"``..``"9"``, or a declared ``"0"``), None for none. A
            label's key never changes between versions.
        color: ``#rrggbb``.

    """

    id: int
    name: str
    key: str | None = None
    color: str


class LabelSchema(_Model):
    """A version of a node's label schema (``detection`` is the edge detection)."""

    node: str
    version: int
    source: LabelSource
    labels: list[SchemaLabel]
    created_at: datetime
    created_by: str

    def names(self) -> list[str]:
        """The label names in model order."""
        return [label.name for label in self.labels]

    def by_key(self) -> dict[str, SchemaLabel]:
        """The labels that have a hotkey, by key."""
        return {label.key: label for label in self.labels if label.key is not None}


class LabelSchemaList(_Model):
    """The current schema of ``detection`` and of each labelled node of the active pipeline."""

    pipeline: str | None = None
    schemas: list[LabelSchema] = Field(default_factory=list)

    def for_node(self, node: str) -> LabelSchema | None:
        """The schema of ``node``, or None."""
        return next((schema for schema in self.schemas if schema.node == node), None)


class Review(_Model):
    """A crop's review of one node.

    Attributes:
        status: ``accepted``, ``relabelled``, ``rejected`` or ``unsure``.
        label: ``relabelled``: the human label; ``accepted``: the model's (for
            ``detection``: the edge class); else None.
        by: The API key's name that reviewed it.
        at: When.

    """

    status: ReviewStatus
    label: str | None = None
    by: str
    at: datetime


class ReviewItem(ResultItem):
    """A crop in a result list, with its review status per node."""

    reviews: dict[str, Review] = Field(default_factory=dict)

    def review(self, node: str = DETECTION_NODE) -> Review | None:
        """The review of ``node``, or None (not reviewed)."""
        return self.reviews.get(node)


class ReviewPage(_Model):
    """One page of a result list with reviews, and the cursor of the next (None: the last)."""

    items: list[ReviewItem]
    next_cursor: str | None = None


class ReviewEvent(_Model):
    """One change in the audit trail: of a human label, a review status, or both."""

    crop_id: str
    node: str
    old_label: str | None = None
    new_label: str | None = None
    old_status: ReviewStatus | None = None
    new_status: ReviewStatus | None = None
    actor: str
    at: datetime
    batch_id: str | None = None


class ReviewBatch(_Model):
    """What a review, a relabel, a bulk relabel or an undo changed (``batch_id``: to undo)."""

    batch_id: str
    undoes: str | None = None
    actor: str
    changed: int
    unchanged: int
    events: list[ReviewEvent] = Field(default_factory=list)


class SimilarGroup(_Model):
    """Crops a bulk relabel would change, of one current label and review status."""

    current: str | None = None
    status: ReviewStatus | None = None
    human: bool
    crop_ids: list[str]


class SimilarPreview(_Model):
    """What relabelling a crop and its look-alikes would change (nothing written yet).

    Attributes:
        crop_ids: Every crop that would change: pass them to
            :meth:`ReviewCalls.relabel_similar` as ``expect``.
        skipped_human: Crops a human reviewed, left alone (unless ``include_human``).
        unchanged: Crops already relabelled to the label.
        not_run: Crops the node did not run on.

    """

    node: str
    label: str
    threshold: float
    groups: list[SimilarGroup]
    crop_ids: list[str]
    skipped_human: int = 0
    unchanged: int = 0
    not_run: int = 0


class FacetCount(_Model):
    """A value and how many crops have it."""

    value: str
    count: int


class CameraFacet(_Model):
    """A camera of a site and how many crops it sent."""

    site: str
    camera: str
    count: int


class Facets(_Model):
    """The filter drop-downs' values with counts (each list ordered by value).

    Attributes:
        cameras: By site, then camera.
        classes: The edge classes.
        nodes: ``detection`` (every crop) first, then each node with its ``ok`` results.
        labels: By node: the current labels (human, else the model's).
        statuses: By node: the review statuses.

    """

    cameras: list[CameraFacet] = Field(default_factory=list)
    classes: list[FacetCount] = Field(default_factory=list)
    nodes: list[FacetCount] = Field(default_factory=list)
    labels: dict[str, list[FacetCount]] = Field(default_factory=dict)
    statuses: dict[str, list[FacetCount]] = Field(default_factory=dict)


@dataclass(frozen=True)
class QueueQuery:
    """A review queue: the result filters, a review status filter and a sort.

    Attributes:
        filters: The filters of ``GET /v1/results`` (``filters.order`` orders by capture time
            within the sort's key; ``filters.node`` is the node the sort and ``status`` use).
        sort: ``captured_at``; ``confidence_asc`` (lowest model score of the node first);
            ``disagreement`` (a cloud node's label names another edge class first);
            ``unreviewed_first`` (no review status of the node, else of any node, first).
        status: Only crops with this review status (of the node, else of any node).

    """

    filters: ResultQuery = field(default_factory=ResultQuery)
    sort: QueueSort = "captured_at"
    status: ReviewStatus | None = None

    def params(self) -> dict[str, str]:
        """The query parameters the API reads."""
        values = self.filters.params() | {"sort": self.sort}
        if self.status is not None:
            values["status"] = self.status
        return values
