"""Label schemas: a node's labels in model order, with ids, hotkeys and colours, by version.

A schema is computed from its sources (:mod:`lensflow.cloud.api.label_sources`) when a node
has no stored version, and stored as version 1 on first read. Later reads store a new version
only when the sources name labels the schema lacks (a class the edge model sends for the first
time, a label declared in the pipeline file): those are *appended*, so no existing label's
id, key or colour ever changes. The one exception is a schema built from ``observed`` labels
(a guess, alphabetical): once the pipeline file or the model names the labels, the schema is
rebuilt in that order, existing labels keeping their keys and colours, and labels the new
source lacks appended after it (with their id while free, and their key). An operator adds
a label with :func:`with_added_label`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lensflow.cloud.api.deps import ApiState
from lensflow.cloud.api.errors import ApiError
from lensflow.cloud.api.label_sources import (
    Computed,
    PipelineView,
    Seed,
    active_pipeline,
    compute_labels,
)
from lensflow.cloud.api.model_index import ModelIndex
from lensflow.cloud.api.review_schemas import LabelOut, LabelSchemaOut, LabelSource
from lensflow.cloud.api.schemas import DETECTION_NODE
from lensflow.cloud.storage.models import ClassifierResult, LabelSchemaVersion, utcnow
from lensflow.shared.classifiers.registry import PluginRegistry

logger = logging.getLogger(__name__)

PALETTE = (
    "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
    "#fabed4", "#469990", "#dcbeff", "#9a6324", "#fffac8", "#800000", "#aaffc3", "#808000",
    "#ffd8b1", "#000075", "#a9a9a9", "#ffe119",
)  # fmt: skip
"""A label's default colour is ``PALETTE[id % 20]`` (20 distinct colours, by Sasha Trubetskoy)."""
HOTKEYS = "123456789"
"""Keys given in label order to labels that declare none, while free."""
SYSTEM_ACTOR = "lensflow"
"""``created_by`` of versions computed from the sources (not an operator's)."""
MAX_NAMED = 30
"""Most allowed labels a refusal names."""


@dataclass(frozen=True)
class SchemaLabel:
    """One label of a stored schema version."""

    id: int
    name: str
    key: str | None
    color: str


@dataclass(frozen=True)
class Draft:
    """A schema version to store: its source and labels."""

    source: LabelSource
    labels: tuple[SchemaLabel, ...]


def labels_of(row: LabelSchemaVersion) -> list[SchemaLabel]:
    """The labels of a stored version, by id."""
    return [SchemaLabel(**label) for label in row.labels]


def schema_out(row: LabelSchemaVersion) -> LabelSchemaOut:
    """A stored version as the API answers it."""
    return LabelSchemaOut(
        node=row.node,
        version=row.version,
        source=row.source,
        labels=[LabelOut(**asdict(label)) for label in labels_of(row)],
        created_at=row.created_at,
        created_by=row.created_by,
    )


def build(seeds: Sequence[Seed], *, previous: Iterable[SchemaLabel] = ()) -> list[SchemaLabel]:
    """Labels from seeds in model order, with ids, keys and colours.

    Ids: a seed's own (the detection's class ids), else its position. Keys: declared, else the
    key ``previous`` gave the same name (kept, also when it had none), else the next digit
    free and not held by a previous label the seeds lack (it is appended after them keeping
    it). Colours: declared, else the previous one, else the palette's by id.
    """
    before = {label.name: label for label in previous}
    ids: list[int] = []
    for position, seed in enumerate(seeds):
        wanted = seed.id if seed.id is not None else position
        ids.append(wanted if wanted not in ids else max(ids) + 1)
    taken = {seed.key for seed in seeds if seed.key is not None}
    keys = [seed.key for seed in seeds]
    settled = [seed.key is not None for seed in seeds]
    for index, seed in enumerate(seeds):
        kept = before.get(seed.name)
        if not settled[index] and kept is not None and kept.key not in taken:
            keys[index], settled[index] = kept.key, True
            if kept.key is not None:
                taken.add(kept.key)
    names = {seed.name for seed in seeds}
    # a previous label the seeds lack is appended after them with its key: keep that key free
    taken |= {lb.key for lb in before.values() if lb.name not in names and lb.key is not None}
    for index in range(len(seeds)):
        if not settled[index]:
            keys[index] = _free_key(taken)
            if keys[index] is not None:
                taken.add(keys[index])  # type: ignore[arg-type]  # just checked
    labels = [
        SchemaLabel(
            id=label_id,
            name=seed.name,
            key=key,
            color=(seed.color or _kept_color(before, seed.name) or PALETTE[label_id % 20]).lower(),
        )
        for label_id, seed, key in zip(ids, seeds, keys, strict=True)
    ]
    return sorted(labels, key=lambda label: label.id)


def append(labels: Sequence[SchemaLabel], seeds: Iterable[Seed]) -> list[SchemaLabel]:
    """``labels`` with each seed they lack appended: existing ids, keys and colours unchanged."""
    out = list(labels)
    for seed in seeds:
        if any(label.name == seed.name for label in out):
            continue
        ids = {label.id for label in out}
        label_id = (
            seed.id if seed.id is not None and seed.id not in ids else max(ids, default=-1) + 1
        )
        taken = {label.key for label in out if label.key is not None}
        key = seed.key if seed.key is not None and seed.key not in taken else _free_key(taken)
        color = (seed.color or PALETTE[label_id % 20]).lower()
        out.append(SchemaLabel(label_id, seed.name, key, color))
    return sorted(out, key=lambda label: label.id)


def next_draft(stored: LabelSchemaVersion | None, computed: Computed) -> Draft | None:
    """The version to store after ``stored`` given what the sources say now; None: no change."""
    if stored is None:
        return Draft(computed.source, tuple(build(computed.seeds)))
    current = labels_of(stored)
    if stored.source == "observed" and computed.source != "observed":
        rebuilt = build(computed.seeds, previous=current)
        kept = (Seed(label.name, label.id, label.key, label.color) for label in current)
        return Draft(computed.source, tuple(append(rebuilt, kept)))
    names = {label.name for label in current}
    missing = [seed for seed in computed.seeds if seed.name not in names]
    if not missing:
        return None
    return Draft(computed.source, tuple(append(current, missing)))


def with_added_label(stored: LabelSchemaVersion, *, name: str, color: str | None) -> Draft:
    """The version after an operator adds ``name`` to ``stored``.

    Raises:
        ApiError: 409 ``label_exists`` if the schema has it; 422 ``near_duplicate_label``
            naming the existing label if one differs from it only by case or spaces.

    """
    current = labels_of(stored)
    for label in current:
        if label.name == name:
            raise ApiError(
                409,
                "label_exists",
                f"expected a new label for node {stored.node!r}, got {name!r}, which its "
                f"schema (version {stored.version}) has already",
            )
        if label.name.strip().casefold() == name.casefold():
            raise ApiError(
                422,
                "near_duplicate_label",
                f"expected a label that differs from the existing ones by more than case or "
                f"spaces, got {name!r}: node {stored.node!r} has {label.name!r} (use it)",
            )
    return Draft("operator", tuple(append(current, [Seed(name, color=color)])))


def _free_key(taken: set[str]) -> str | None:
    """The first hotkey digit not taken, or None."""
    return next((key for key in HOTKEYS if key not in taken), None)


def _kept_color(before: dict[str, SchemaLabel], name: str) -> str | None:
    label = before.get(name)
    return label.color if label is not None else None


class LabelSchemas:
    """Reads, computes and stores label schema versions (on the caller's session)."""

    @classmethod
    def of(cls, state: ApiState) -> LabelSchemas:
        """The label schemas of the app's pipeline file, plugins and model cards."""
        return cls(
            pipeline_path=state.config.pipeline, registry=state.registry, models=state.models
        )

    def __init__(self, *, pipeline_path: str, registry: PluginRegistry, models: ModelIndex) -> None:
        """Follow the pipeline file ``pipeline_path`` (or the active stored version).

        Args:
            pipeline_path: The workers' local pipeline file (the cloud config's ``pipeline``).
            registry: Plugins, asked for their classes (:meth:`BaseClassifier.label_space`).
            models: Model cards by hash: the edge model's classes for the detection.

        """
        self.pipeline_path = pipeline_path
        self.registry = registry
        self.models = models

    def pipeline(self, session: Session) -> PipelineView:
        """The pipeline the schemas follow."""
        return active_pipeline(session, local_path=self.pipeline_path)

    def stored(
        self, session: Session, node: str, *, version: int | None = None
    ) -> LabelSchemaVersion | None:
        """The latest stored version of ``node`` (or version ``version``), or None."""
        query = select(LabelSchemaVersion).where(LabelSchemaVersion.node == node)
        if version is not None:
            query = query.where(LabelSchemaVersion.version == version)
        return session.scalars(query.order_by(LabelSchemaVersion.version.desc()).limit(1)).first()

    def is_known(self, session: Session, node: str, *, pipeline: PipelineView) -> bool:
        """``detection``, a node of the pipeline, or one with stored results or a schema."""
        if node == DETECTION_NODE or pipeline.node(node) is not None:
            return True
        results = select(ClassifierResult.id).where(ClassifierResult.node == node).limit(1)
        return session.scalar(results) is not None or self.stored(session, node) is not None

    def plan(
        self, session: Session, node: str, *, pipeline: PipelineView | None = None
    ) -> tuple[LabelSchemaVersion | None, Draft | None]:
        """The stored version and the one to store after it (None: it is current); no writes."""
        view = pipeline or self.pipeline(session)
        stored = self.stored(session, node)
        computed = compute_labels(
            session, node, pipeline=view, registry=self.registry, models=self.models
        )
        return stored, next_draft(stored, computed)

    def current(
        self, session: Session, node: str, *, pipeline: PipelineView | None = None
    ) -> LabelSchemaVersion:
        """The node's current version, storing a new one first if its sources changed.

        Call it with the write lock held (see ``label_changes.write_lock``).
        """
        stored, draft = self.plan(session, node, pipeline=pipeline)
        if draft is None:
            assert stored is not None  # next_draft answers a draft when nothing is stored
            return stored
        return self.store(session, node, draft, after=stored, actor=SYSTEM_ACTOR) or (
            self._latest_or_fail(session, node)
        )

    def store(
        self,
        session: Session,
        node: str,
        draft: Draft,
        *,
        after: LabelSchemaVersion | None,
        actor: str,
    ) -> LabelSchemaVersion | None:
        """Store ``draft`` as the version after ``after``; None if another request stored it."""
        row = LabelSchemaVersion(
            node=node,
            version=(after.version if after is not None else 0) + 1,
            source=draft.source,
            labels=[asdict(label) for label in draft.labels],
            created_at=utcnow(),
            created_by=actor,
        )
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:  # a concurrent request stored this version first
            logger.info("label schema %s version %d stored concurrently", node, row.version)
            return None
        logger.info(
            "label schema %s: version %d (%s, %d labels) by %s",
            node, row.version, row.source, len(draft.labels), actor,
        )  # fmt: skip
        return row

    def names(self, session: Session, node: str, *, pipeline: PipelineView) -> list[str]:
        """The node's current label names, as the next version would have them (no writes)."""
        stored, draft = self.plan(session, node, pipeline=pipeline)
        if draft is not None:
            return [label.name for label in draft.labels]
        return [label.name for label in labels_of(stored)] if stored is not None else []

    def disagreement_nodes(
        self, session: Session, *, node: str | None
    ) -> tuple[list[str], list[str]]:
        """The cloud nodes compared with the edge class, and the edge model's classes.

        The cloud nodes are ``node`` when given, else every pipeline node whose labels share
        one with the detection's (the vehicle type node with a COCO detector's ``car``,
        ``truck``, ``bus``).
        """
        pipeline = self.pipeline(session)
        detection = self.names(session, DETECTION_NODE, pipeline=pipeline)
        if node is not None and not pipeline.is_detection(node):
            return [node], detection
        shared = set(detection)
        nodes = [
            name
            for name in pipeline.labelled_nodes()
            if not pipeline.is_detection(name)
            and shared.intersection(self.names(session, name, pipeline=pipeline))
        ]
        return nodes, detection

    def _latest_or_fail(self, session: Session, node: str) -> LabelSchemaVersion:
        stored = self.stored(session, node)
        if stored is None:
            raise ApiError(409, "conflict", f"the label schema of {node!r} changed; try again")
        return stored

    def check_label(self, session: Session, node: str, label: str) -> None:
        """Refuse a label outside the node's current schema (422 ``label_not_in_schema``).

        Call it with the write lock held: the schema may be computed and stored first.
        """
        stored = self.stored(session, node)
        if stored is not None and any(lb.name == label for lb in labels_of(stored)):
            return
        schema = self.current(session, node)
        names = [lb.name for lb in labels_of(schema)]
        if label in names:
            return
        shown = ", ".join(repr(name) for name in names[:MAX_NAMED]) or "none"
        more = f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else ""
        raise ApiError(
            422,
            "label_not_in_schema",
            f"expected a label of node {node!r}'s schema (version {schema.version}): "
            f"{shown}{more}; got {label!r}. An operator adds a label with "
            f"POST /v1/label-schemas/{node}/labels",
        )
