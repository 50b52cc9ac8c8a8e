"""Where a node's labels come from, before any stored schema version says (docs/labels.md).

First that applies:

1. the pipeline file's ``labels:`` of the node (for ``detection``: of its ``edge_detection``
   node), in the active pipeline version of the database, else the local pipeline file;
2. the plugin's own classes in model order (:meth:`BaseClassifier.label_space`);
3. for the detection (``detection``, or a node of the ``edge_detection`` plugin): the classes
   of the edge model of the newest crop (its ``model_sha256``), by class id, from the model's
   card (:class:`~lensflow.cloud.api.model_index.ModelIndex`: model cards, the manifest,
   registry bundles); when no card names that model, the classes *observed*: the distinct
   ``(class_id, class_name)`` of the stored crops by class id;
4. else the labels observed for the node (model and human ones), alphabetically.

Only the newest crop's model is asked (one read by primary key, the card remembered per
hash): a schema only ever grows, so the classes of a model the edges ran before are in it
already, and those of a model swapped in are appended when its crops arrive.

Distinct values are read with a loose index scan (a recursive query that seeks the next value
in the index), so a table of millions of crops costs one index probe per distinct label.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, String, cast, func, literal, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from lensflow.cloud.api.model_index import ModelIndex
from lensflow.cloud.api.schemas import DETECTION_NODE
from lensflow.cloud.storage.models import ClassifierResult, Crop, HumanLabel, PipelineVersion
from lensflow.shared.classifiers.registry import PluginRegistry
from lensflow.shared.config.pipeline import NodeConfig, PipelineConfig
from lensflow.shared.config.yaml_loader import YamlDocument, load_config, load_model
from lensflow.shared.errors import LensflowError

logger = logging.getLogger(__name__)

DETECTION_PLUGIN = "edge_detection"
"""The plugin whose node is the edge's own detection."""
MAX_OBSERVED = 1000
"""Most distinct labels read for a node (observed labels, detection classes)."""

ComputedSource = Literal["pipeline", "model", "observed"]


@dataclass(frozen=True)
class Seed:
    """A label as a source gives it: its name, and its id, key and colour where declared."""

    name: str
    id: int | None = None
    key: str | None = None
    color: str | None = None


@dataclass(frozen=True)
class Computed:
    """A node's labels as its sources give them now, in model order."""

    source: ComputedSource
    seeds: tuple[Seed, ...]


@dataclass(frozen=True)
class PipelineView:
    """The nodes of the pipeline the label schemas follow (none when no pipeline is readable)."""

    name: str | None
    nodes: tuple[NodeConfig, ...]

    def node(self, name: str) -> NodeConfig | None:
        """The node called ``name``; for ``detection``, the first ``edge_detection`` node."""
        for node in self.nodes:
            if node.name == name or (name == DETECTION_NODE and node.class_ == DETECTION_PLUGIN):
                return node
        return None

    def is_detection(self, name: str) -> bool:
        """Whether ``name`` is the edge detection (``detection`` or an ``edge_detection`` node)."""
        node = self.node(name)
        return name == DETECTION_NODE or (node is not None and node.class_ == DETECTION_PLUGIN)

    def labelled_nodes(self) -> list[str]:
        """``detection``, then every other node in pipeline order."""
        others = [node.name for node in self.nodes if node.class_ != DETECTION_PLUGIN]
        return [DETECTION_NODE, *others]


def active_pipeline(session: Session, *, local_path: str) -> PipelineView:
    """The active pipeline version of the database, else the local pipeline file.

    The active version of the local file's pipeline name is preferred; without a readable
    local file, the most recently stored active version of any name.
    """
    local = _read_local(local_path)
    query = select(PipelineVersion).where(PipelineVersion.active.is_(True))
    if local is not None:
        query = query.where(PipelineVersion.name == local.name)
    row = session.scalars(query.order_by(PipelineVersion.id.desc()).limit(1)).first()
    if row is not None:
        try:
            stored = load_model(PipelineConfig, YamlDocument(row.yaml_text, path="pipeline.yaml"))
        except LensflowError as err:
            logger.warning("active pipeline version %d cannot be read: %s", row.id, err)
        else:
            return PipelineView(stored.name, tuple(stored.pipeline))
    if local is None:
        return PipelineView(None, ())
    return PipelineView(local.name, tuple(local.pipeline))


def _read_local(path: str) -> PipelineConfig | None:
    """The local pipeline file, or None (logged) when it is missing or invalid."""
    try:
        return load_config(PipelineConfig, path)
    except LensflowError as err:
        logger.info("label schemas: no local pipeline file to follow: %s", err)
        return None


def compute_labels(
    session: Session,
    node: str,
    *,
    pipeline: PipelineView,
    registry: PluginRegistry,
    models: ModelIndex,
) -> Computed:
    """The labels of ``node`` as its sources give them now (see the module docstring)."""
    config = pipeline.node(node)
    if config is not None and config.labels:
        seeds = tuple(Seed(label.name, None, label.key, label.color) for label in config.labels)
        return Computed("pipeline", seeds)
    if pipeline.is_detection(node):
        carded = edge_model_classes(session, models)
        if carded:
            return Computed("model", carded)
        return Computed("observed", tuple(detection_classes(session)))
    if config is not None:
        space = plugin_label_space(config, registry)
        if space:
            return Computed("model", tuple(Seed(name) for name in space))
    return Computed("observed", tuple(Seed(name) for name in observed_labels(session, node)))


def plugin_label_space(config: NodeConfig, registry: PluginRegistry) -> list[str] | None:
    """The node's plugin's classes in model order, or None when not known.

    A ``package.module.Class`` plugin is asked only when its module is loaded already: the API
    imports no module a pipeline names (see ``routes/pipelines.py``).
    """
    spec = config.class_
    module = spec.rpartition(".")[0]
    if spec not in registry.plugins and (not module or module not in sys.modules):
        return None
    try:
        plugin = registry.resolve(spec)
    except LensflowError as err:
        logger.info("node %s: plugin %s unavailable for its labels: %s", config.name, spec, err)
        return None
    try:
        space = plugin.label_space(config.params)
    except Exception:  # a plugin's code: its failure must not fail the schema (logged)
        logger.exception("node %s: %s.label_space failed", config.name, spec)
        return None
    if space is None:
        return None
    names = [str(name).strip() for name in space]
    return list(dict.fromkeys(name for name in names if name))


def edge_model_classes(session: Session, models: ModelIndex) -> tuple[Seed, ...]:
    """The classes of the newest crop's edge model by class id, from its card; () if unknown."""
    sha256 = session.scalar(select(Crop.model_sha256).order_by(Crop.id.desc()).limit(1))
    if sha256 is None:
        return ()
    info = models.classes_of(session, sha256)
    if info is None:
        return ()
    seen: set[str] = set()
    seeds = []
    for class_id, raw in info.classes:
        name = raw.strip()
        if name and name not in seen:  # a repeated name (a placeholder such as N/A) once
            seen.add(name)
            seeds.append(Seed(name, class_id))
    return tuple(seeds)


def detection_classes(session: Session) -> list[Seed]:
    """The edge classes seen in stored crops, by class id (the model's order)."""
    names = distinct_values(session, Crop.class_name)
    seeds = []
    for name in names:
        class_id = session.scalar(select(Crop.class_id).where(Crop.class_name == name).limit(1))
        seeds.append(Seed(name, class_id))
    return sorted(seeds, key=lambda seed: (seed.id if seed.id is not None else -1, seed.name))


def observed_labels(session: Session, node: str) -> list[str]:
    """The distinct model and current human labels of ``node``, alphabetically."""
    model = distinct_values(
        session,
        ClassifierResult.label,
        where=[ClassifierResult.node == node, ClassifierResult.label.is_not(None)],
    )
    human = distinct_values(
        session,
        HumanLabel.label,
        where=[HumanLabel.node == node, HumanLabel.undone.is_(False)],
    )
    return sorted(set(model) | set(human))[:MAX_OBSERVED]


def distinct_values(
    session: Session,
    column: InstrumentedAttribute[Any],
    *,
    where: Sequence[ColumnElement[bool]] = (),
    limit: int = MAX_OBSERVED,
) -> list[str]:
    """The distinct non-null values of an indexed text column, ascending (a loose index scan).

    Each step seeks the least value greater than the previous one: one index probe per
    distinct value instead of reading every row.
    """
    first = select(cast(func.min(column), String).label("value"), literal(1).label("depth")).where(
        *where
    )
    loose = first.cte("loose", recursive=True)
    following = select(func.min(column)).where(*where, column > loose.c.value).scalar_subquery()
    step = select(cast(following, String), loose.c.depth + 1).where(
        loose.c.value.is_not(None), loose.c.depth < limit
    )
    loose = loose.union_all(step)
    query = select(loose.c.value).where(loose.c.value.is_not(None)).order_by(loose.c.value)
    return [str(value) for value in session.scalars(query)]
