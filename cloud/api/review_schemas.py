"""Bodies of the review routes (pydantic): label schemas, statuses, bulk edits, facets.

Label schemas (``/v1/label-schemas``), review statuses (``/v1/reviews``), bulk relabelling of
similar crops (``/v1/labels/similar``) and the facets of the filter drop-downs (``/v1/facets``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from lensflow.cloud.api.schemas import (
    DETECTION_NODE,
    MAX_RELABEL,
    CropId,
    Name,
    ReviewStatus,
    Text,
)

MAX_LABEL_NAME = 64
"""Longest label name of a label schema."""
MAX_SIMILAR_K = 100
"""Most neighbours one bulk relabel may take (the search routes' limit)."""

LabelSource = Literal["pipeline", "model", "observed", "operator"]
DecisionStatus = Literal["accepted", "rejected", "unsure"]
"""The statuses ``POST /v1/reviews`` sets; ``relabelled`` comes with a relabel."""

# printable, and not only whitespace: what is left once trimmed is 1-64 characters
_LABEL_NAME = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
LabelName = Annotated[str, Field(min_length=1, max_length=MAX_LABEL_NAME, pattern=_LABEL_NAME)]
Color = Annotated[str, Field(pattern=r"^#[0-9a-fA-F]{6}$", description="`#rrggbb`.")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LabelOut(_Model):
    """One label of a schema."""

    id: int = Field(description="Its class id: the position in model order (what exports use).")
    name: str
    key: str | None = Field(description="Its hotkey digit; never changes once given.")
    color: str = Field(description="`#rrggbb`.")


class LabelSchemaOut(_Model):
    """A version of a node's label schema."""

    node: str = Field(description="The DAG node, or `detection` (the edge detection).")
    version: int = Field(description="1, 2, ...: each change is a new version.")
    source: LabelSource = Field(
        description="Where this version came from: the pipeline file's `labels:`, the "
        "model's classes, the labels observed, or an operator adding one."
    )
    labels: list[LabelOut] = Field(description="In model order (by id).")
    created_at: datetime
    created_by: str


class LabelSchemaList(_Model):
    """The current label schema of each node of the active pipeline."""

    pipeline: str | None = Field(description="The pipeline the nodes are from (null: none).")
    schemas: list[LabelSchemaOut] = Field(description="`detection` first, then pipeline order.")


class AddLabelRequest(_Model):
    """A label to add to a node's schema (appended: no existing id or key moves)."""

    name: LabelName = Field(description="Trimmed; 1-64 characters.")
    color: Color | None = Field(None, description="Default: the palette colour of its id.")


class ReviewRequest(_Model):
    """Set a review status of one node on one or many crops."""

    crop_ids: list[CropId] = Field(min_length=1, max_length=MAX_RELABEL)
    node: Name = Field(DETECTION_NODE, description="`detection` or a classifier node name.")
    status: DecisionStatus = Field(
        description="`accepted`: the model's label is right; `rejected`: a wrong detection; "
        "`unsure`: skipped for now. Any human label of the node is cleared (undo restores it)."
    )


class SimilarRelabelRequest(_Model):
    """Relabel a crop and the crops most similar to it (image search), as one batch."""

    crop_id: CropId = Field(description="The crop whose look-alikes are relabelled (with it).")
    node: Name = Field(DETECTION_NODE, description="`detection` or a classifier node name.")
    label: Text = Field(description="The new label; one of the node's schema.")
    k: int = Field(20, ge=1, le=MAX_SIMILAR_K, description="At most this many neighbours.")
    min_similarity: float = Field(
        0.8, ge=-1.0, le=1.0, description="Only neighbours at least this similar (cosine)."
    )
    include_human: bool = Field(
        False, description="Also change crops a human reviewed (skipped by default)."
    )


class SimilarApplyRequest(SimilarRelabelRequest):
    """The bulk relabel of a preview, refused (409) unless it still changes exactly those."""

    expect: list[CropId] = Field(
        max_length=MAX_SIMILAR_K + 1, description="The preview's `crop_ids`."
    )


class SimilarGroup(_Model):
    """Crops that would change, of one current label and review status."""

    current: str | None = Field(description="The current label (human, else the model's).")
    status: ReviewStatus | None = Field(description="The current review status (null: none).")
    human: bool = Field(description="A human reviewed them (accepted, relabelled or rejected).")
    crop_ids: list[str] = Field(description="Most similar first.")


class SimilarPreview(_Model):
    """What a bulk relabel of similar crops would change, grouped by current label."""

    node: str
    label: str
    threshold: float = Field(description="The `min_similarity` applied.")
    groups: list[SimilarGroup]
    crop_ids: list[str] = Field(description="Every crop that would change: pass as `expect`.")
    skipped_human: int = Field(description="Human-reviewed crops left alone.")
    unchanged: int = Field(description="Crops that already carry the label (relabelled).")
    not_run: int = Field(description="Crops the node did not run on (no label to change).")


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
    """Distinct values with counts, for the filter drop-downs."""

    cameras: list[CameraFacet] = Field(description="By site, then camera.")
    classes: list[FacetCount] = Field(description="Edge detection classes.")
    nodes: list[FacetCount] = Field(
        description="`detection` (every crop), then each node with its `ok` results."
    )
    labels: dict[str, list[FacetCount]] = Field(
        description="By node (and `detection`): the current labels (human, else the model's)."
    )
    statuses: dict[str, list[FacetCount]] = Field(description="By node: the review statuses.")
