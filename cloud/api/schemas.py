"""Request and response bodies of the API (pydantic), and the validated scalar types.

Strings that reach the database are restricted (no control characters: PostgreSQL refuses
NUL), datetimes must be timezone-aware and are brought to UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

CROP_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
"""The protocol's crop id."""
DETECTION_NODE = "detection"
"""The node name under which a human label relabels the edge detection itself."""
MAX_PAGE = 500
MAX_RELABEL = 1000

_TEXT = r"^[^\x00-\x1f\x7f]+$"  # printable: no control characters


def _to_utc(value: datetime) -> datetime:
    """Express an aware datetime in UTC; one beyond UTC's range becomes its nearest end.

    ``0001-01-01T00:30+01:00`` is before UTC's first representable instant: as a filter
    bound it means the same as that instant, so it is clamped rather than refused.
    """
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        end = datetime.min if value.year == datetime.min.year else datetime.max
        return end.replace(tzinfo=UTC)


def _iso_only(value: object) -> object:
    """Refuse numbers, which pydantic would read as Unix times: the schema says ISO 8601."""
    if isinstance(value, int | float) or (isinstance(value, str) and _is_number(value)):
        raise ValueError(f"expected an ISO 8601 datetime with a zone, got the number {value!r}")
    return value


def _is_number(text: str) -> bool:
    """Whether ``text`` reads as a number."""
    try:
        float(text)
    except ValueError:
        return False
    return True


UtcTime = Annotated[AwareDatetime, BeforeValidator(_iso_only), AfterValidator(_to_utc)]
"""An ISO 8601 datetime with a zone (``2024-05-01T12:00:00Z``), converted to UTC."""
Text = Annotated[str, Field(min_length=1, max_length=256, pattern=_TEXT)]
"""A label or class name: 1-256 printable characters."""
Name = Annotated[str, Field(min_length=1, max_length=128, pattern=_TEXT)]
"""A camera, node or site name: 1-128 printable characters."""
CropId = Annotated[str, Field(pattern=CROP_ID_PATTERN)]
"""A crop id: 1-64 of ``A-Z a-z 0-9 _ -``."""
Order = Literal["desc", "asc"]
ReviewStatus = Literal["accepted", "relabelled", "rejected", "unsure"]
"""A review's status (not a class): the model is right, a human label, a wrong detection,
skipped for now."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(_Model):
    """What went wrong."""

    code: str = Field(description="Stable machine-readable code, e.g. `invalid_cursor`.")
    message: str = Field(description="What was expected and what was got.")


class ErrorBody(_Model):
    """The body of every error response."""

    error: ErrorDetail


class DetectionOut(_Model):
    """The edge detection a crop shows."""

    class_name: str = Field(description="Edge detector class.")
    class_id: int
    score: float = Field(description="Edge detector confidence, 0..1.")
    box: list[float] = Field(description="[x1, y1, x2, y2] in frame pixels.")
    frame_width: int
    frame_height: int
    track_id: int | None = None
    crop_box: list[int] | None = Field(None, description="Padded region cut from the frame.")


class ProvenanceOut(_Model):
    """What produced a crop and its results."""

    model_sha256: str = Field(description="Edge model sha256.")
    config_hash: str = Field(description="Edge config hash.")
    agent_version: str
    pipeline_name: str
    pipeline_version: str | None = None


class NodeLabel(_Model):
    """A classifier node's outcome in a result list."""

    status: Literal["ok", "skipped", "error"]
    label: str | None = None
    score: float | None = None


class ClassifierOutput(_Model):
    """Everything one classifier node stored for a crop."""

    node: str
    plugin: str
    plugin_version: str
    status: Literal["ok", "skipped", "error"]
    label: str | None = None
    score: float | None = None
    output: dict[str, Any] = Field(description="The plugin's whole output.")
    reason: str = Field(description="Why it was skipped, or its error.")
    duration_ms: float
    batch_size: int


class HumanLabelOut(_Model):
    """A crop's current human label for one node (or for the detection)."""

    node: str
    label: str
    actor: str
    labeled_at: datetime


class LabelEventOut(_Model):
    """One change in the audit trail: of a human label, a review status, or both."""

    crop_id: str
    node: str
    old_label: str | None = Field(description="The human label before (null: none).")
    new_label: str | None = Field(description="The human label after (null: none).")
    old_status: ReviewStatus | None = Field(None, description="The review status before.")
    new_status: ReviewStatus | None = Field(None, description="The review status after.")
    actor: str
    at: datetime
    batch_id: str | None


class ReviewOut(_Model):
    """A crop's review of one node."""

    status: ReviewStatus
    label: str | None = Field(
        description="`relabelled`: the human label; `accepted`: the model's label (for "
        "`detection`, the edge class); `rejected` and `unsure`: null."
    )
    by: str = Field(description="The API key's name.")
    at: datetime


class ResultItem(_Model):
    """A crop in a result list."""

    crop_id: str
    site: str
    camera: str
    captured_at: datetime
    received_at: datetime
    detection: DetectionOut
    classifiers: dict[str, NodeLabel] = Field(description="Each node's outcome, by node.")
    human_labels: dict[str, str] = Field(description="Current human labels, by node.")
    reviews: dict[str, ReviewOut] = Field(
        default_factory=dict, description="Review statuses, by node (none: not reviewed)."
    )
    jpeg_sha256: str
    crop_url: str = Field(description="Path of the crop's JPEG.")


class ResultPage(_Model):
    """One page of results and the cursor of the next one."""

    items: list[ResultItem]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: end.")


class ResultDetail(ResultItem):
    """A crop with everything known about it."""

    provenance: ProvenanceOut
    sent_at: datetime
    jpeg_size: int
    attributes: dict[str, Any]
    outputs: list[ClassifierOutput] = Field(description="Every classifier node's full output.")
    labels: list[HumanLabelOut] = Field(description="Current human labels.")
    history: list[LabelEventOut] = Field(description="The crop's label changes, oldest first.")


class AggregateRow(_Model):
    """The count of crops of one group in one time bucket."""

    bucket: datetime = Field(description="Start of the bucket (UTC).")
    key: str | None = Field(description="The site, camera, class or label.")
    count: int


class Aggregates(_Model):
    """Counts per bucket and group."""

    by: Literal["site", "camera", "class", "label"]
    bucket: Literal["hour", "day"]
    start: datetime = Field(description="Inclusive start of the range (UTC).")
    end: datetime = Field(description="Exclusive end of the range (UTC).")
    rows: list[AggregateRow]


class RelabelRequest(_Model):
    """Set one human label on one or many crops."""

    crop_ids: list[CropId] = Field(min_length=1, max_length=MAX_RELABEL)
    node: Name = Field(DETECTION_NODE, description="`detection` or a classifier node name.")
    label: Text


class UndoRequest(_Model):
    """Undo a relabel batch: the one named, or the caller's last one."""

    batch_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")] | None = None


class LabelBatch(_Model):
    """What a relabel (or an undo) changed."""

    batch_id: str = Field(description="Id of this change set (pass it to undo).")
    undoes: str | None = Field(None, description="The batch this one undid.")
    actor: str
    changed: int
    unchanged: int = Field(description="Crops that already had that label.")
    events: list[LabelEventOut]


class Health(_Model):
    """Liveness or readiness."""

    status: Literal["ok"]
    checks: dict[str, str] = Field(default_factory=dict)
