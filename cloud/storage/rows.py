"""Rows of the results database built from protocol headers and DAG results.

Shared by the single and the batched writes of
:class:`~lensflow.cloud.storage.repository.ResultStore`:
what a crop row, a classifier-result row and a camera upsert look like, and how plugin
outputs become JSON that SQLite and PostgreSQL both accept.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Table, case
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from lensflow.cloud.storage.errors import StorageError
from lensflow.cloud.storage.models import Camera
from lensflow.shared.dag.engine import NodeResult
from lensflow.shared.protocol import CropHeader

LABEL_KEYS = ("label", "color", "type")
"""Output keys whose (string) value becomes a result's ``label``, first found wins."""
SCORE_KEYS = ("score", "confidence")
"""Output keys whose (numeric) value becomes a result's ``score``, first found wins."""
_LABEL_MAX = 256
EMBEDDING_KEY = "vector"
"""A node output under this key is an embedding: stored in ``crop_embeddings``, for search."""


def insert_for(dialect: str, table: Any) -> sqlite.Insert | postgresql.Insert:
    """An INSERT with ON CONFLICT support for the connection's dialect."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise StorageError(f"expected a sqlite or postgresql database, got {dialect}")


def camera_upsert(dialect: str, *, site: str, name: str, first: datetime, last: datetime) -> Insert:
    """Insert a camera, or widen its first/last seen times to include ``first``..``last``."""
    table: Table = Camera.__table__  # type: ignore[assignment]
    statement = insert_for(dialect, table).values(
        site=site, name=name, first_seen=first, last_seen=last
    )
    new = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=["site", "name"],
        set_={
            "first_seen": case(
                (new.first_seen < table.c.first_seen, new.first_seen), else_=table.c.first_seen
            ),
            "last_seen": case(
                (new.last_seen > table.c.last_seen, new.last_seen), else_=table.c.last_seen
            ),
        },
    )


def crop_row(
    header: CropHeader,
    *,
    jpeg_size: int,
    pipeline: str,
    pipeline_version: str | None,
    received_at: datetime,
) -> dict[str, Any]:
    """The ``crops`` row of a header."""
    det = header.detection
    return {
        "crop_id": header.crop_id,
        "site": header.site,
        "camera": header.camera,
        "captured_at": header.captured_at,
        "sent_at": header.sent_at,
        "received_at": received_at,
        "class_name": clean_text(det.class_name),
        "class_id": det.class_id,
        "score": det.score,
        "box_x1": det.box[0],
        "box_y1": det.box[1],
        "box_x2": det.box[2],
        "box_y2": det.box[3],
        "frame_width": det.frame_width,
        "frame_height": det.frame_height,
        "track_id": header.track_id,
        "crop_box": list(header.crop_box) if header.crop_box is not None else None,
        "model_sha256": header.provenance.model_sha256,
        "config_hash": header.provenance.config_hash,
        "agent_version": header.provenance.agent_version,
        "jpeg_sha256": header.jpeg_sha256,
        "jpeg_size": jpeg_size,
        "attributes": to_json(dict(header.attributes)),
        "pipeline_name": pipeline,
        "pipeline_version": pipeline_version,
    }


def embedding_row(crop_pk: int, result: NodeResult) -> dict[str, Any] | None:
    """The ``crop_embeddings`` row of a node result whose output has a ``vector``, else None.

    Raises:
        StorageError: If ``vector`` is not a flat, finite, non-empty list of numbers.

    """
    if result.status != "ok" or EMBEDDING_KEY not in result.output:
        return None
    try:
        vector = np.asarray(result.output[EMBEDDING_KEY], dtype="<f4")
    except (TypeError, ValueError) as err:
        raise StorageError(
            f"expected node {result.node!r}'s {EMBEDDING_KEY!r} to be a list of numbers: {err}"
        ) from err
    if vector.ndim != 1 or not vector.size or not np.isfinite(vector).all():
        raise StorageError(
            f"expected node {result.node!r}'s {EMBEDDING_KEY!r} to be a flat list of finite "
            f"numbers, got shape {vector.shape}"
        )
    model = result.output.get("model")
    return {
        "crop_pk": crop_pk,
        "node": result.node,
        "model": clean_text(str(model if model else result.plugin))[:256],
        "dim": int(vector.size),
        "vector": vector.tobytes(),
    }


def result_row(crop_pk: int, result: NodeResult) -> dict[str, Any]:
    """The ``classifier_results`` row of a node result (an embedding's vector left out)."""
    output = result.output
    if result.status == "ok" and EMBEDDING_KEY in output:  # stored in crop_embeddings
        output = {**output, EMBEDDING_KEY: {"stored_in": "crop_embeddings"}}
    payload = to_json(output)
    return {
        "crop_pk": crop_pk,
        "node": result.node,
        "plugin": result.plugin,
        "plugin_version": result.version,
        "status": result.status,
        "label": _label_of(payload),
        "score": _score_of(payload),
        "payload": payload,
        "reason": clean_text(result.reason),
        "duration_ms": result.duration_ms,
        "batch_size": result.batch_size,
    }


def _label_of(output: Mapping[str, Any]) -> str | None:
    """The first string among the output's label keys, cut to the column's size."""
    for key in LABEL_KEYS:
        value = output.get(key)
        if isinstance(value, str):
            return value[:_LABEL_MAX]
    return None


def _score_of(output: Mapping[str, Any]) -> float | None:
    """The first finite number among the output's score keys."""
    for key in SCORE_KEYS:
        value = output.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return None


def to_json(value: Any) -> Any:
    """Turn a plugin output into JSON every dialect accepts.

    numpy scalars and arrays become Python numbers and lists, tuples become lists, mapping
    keys become strings, NaN and infinities become null (JSONB refuses them), NUL characters
    become U+FFFD (PostgreSQL text refuses them), anything else becomes its ``repr``.

    Args:
        value: A plugin output or one of its values.

    Returns:
        The value made of dicts, lists, str, int, float, bool and None.

    """
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, Mapping):
        return {clean_text(str(key)): to_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(item) for item in value]
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars, without importing numpy
    if callable(tolist):
        return to_json(tolist())
    return clean_text(repr(value))


def clean_text(text: str) -> str:
    """Replace NUL characters, which PostgreSQL text and JSONB cannot hold."""
    return text.replace("\x00", "\ufffd")
