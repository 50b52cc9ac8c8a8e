"""ResultStore: the small interface the workers and the API use to write and read results.

Writes are idempotent on ``crop_id``: a re-delivered crop (at-least-once intake) creates no
second row. The crop row is inserted with ``INSERT ... ON CONFLICT (crop_id) DO NOTHING
RETURNING id`` (SQLite and PostgreSQL alike), so of two concurrent saves of the same crop
exactly one inserts, and the other learns it lost without an error or a retry.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, Engine, Table, case, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import selectinload
from sqlalchemy.sql.dml import Insert

from cloud.storage.db import session_factory
from cloud.storage.errors import StorageError
from cloud.storage.models import Camera, ClassifierResult, Crop, DeadLetter, Edge, utcnow
from shared.dag.engine import NodeResult
from shared.protocol import CropHeader, StatusMessage

logger = logging.getLogger(__name__)

DEAD_LETTER_MAX_PAYLOAD = 64 * 1024
"""A dead letter's payload is kept whole up to this size; a larger one is cut."""
DEAD_LETTER_HEAD = 512
"""How many leading bytes of a too-large dead-letter payload are kept."""
LABEL_KEYS = ("label", "color")
"""Output keys whose (string) value becomes a result's ``label``, first found wins."""
SCORE_KEYS = ("score", "confidence")
"""Output keys whose (numeric) value becomes a result's ``score``, first found wins."""
_LABEL_MAX = 256

DeadLetterSource = Literal["mqtt", "amqp", "http"]


class ResultStore:
    """Crop results, dead letters and edge status in the results database."""

    def __init__(self, engine: Engine) -> None:
        """Write to and read from the (already migrated) database behind ``engine``.

        Args:
            engine: An engine from :func:`cloud.storage.db.create_engine_for`.

        """
        self.engine = engine
        self._sessions = session_factory(engine)

    def save_crop_results(
        self,
        header: CropHeader,
        *,
        jpeg_size: int,
        results: Mapping[str, NodeResult],
        pipeline: str,
        pipeline_version: str | None = None,
        received_at: datetime | None = None,
    ) -> bool:
        """Store a crop and its node results in one transaction, once per ``crop_id``.

        Args:
            header: The crop's validated header.
            jpeg_size: Size of the crop's JPEG in bytes (stored under ``header.jpeg_sha256``).
            results: The DAG's results for the crop, by node name.
            pipeline: Name of the pipeline that produced ``results``.
            pipeline_version: The pipeline version (e.g. its YAML's sha256), if known.
            received_at: When the crop arrived (aware); now if not given.

        Returns:
            True if the crop was stored; False if a crop with this ``crop_id`` already was
            (nothing is written then: a re-delivery is a no-op).

        Raises:
            StorageError: If a result is filed under another node's name, or the database
                write fails.

        """
        for name, result in results.items():
            if name != result.node:
                raise StorageError(
                    f"expected the result filed under node {name!r} to be that node's, "
                    f"got a result of node {result.node!r} (crop {header.crop_id})"
                )
        row = _crop_row(
            header,
            jpeg_size=jpeg_size,
            pipeline=pipeline,
            pipeline_version=pipeline_version,
            received_at=received_at or utcnow(),
        )
        try:
            with self.engine.begin() as connection:
                stored = self._insert_crop(connection, row, results)
        except SQLAlchemyError as err:
            raise StorageError(f"could not save crop {header.crop_id}: {err}") from err
        if not stored:
            logger.info("crop %s already stored: re-delivery ignored", header.crop_id)
        return stored

    def _insert_crop(
        self, connection: Connection, row: dict[str, Any], results: Mapping[str, NodeResult]
    ) -> bool:
        """Insert the crop unless present; then its results and its camera's seen times."""
        dialect = connection.dialect.name
        statement = _insert(dialect, Crop.__table__).values(row)
        crop_pk = connection.execute(
            statement.on_conflict_do_nothing(index_elements=["crop_id"]).returning(Crop.id)
        ).scalar_one_or_none()
        if crop_pk is None:
            return False
        if results:
            connection.execute(
                insert(ClassifierResult), [_result_row(crop_pk, r) for r in results.values()]
            )
        connection.execute(
            _camera_upsert(dialect, site=row["site"], name=row["camera"], at=row["captured_at"])
        )
        return True

    def save_dead_letter(
        self,
        *,
        source: DeadLetterSource,
        topic: str,
        reason: str,
        payload: bytes,
        received_at: datetime | None = None,
    ) -> int:
        """Record a message that could not be processed.

        The payload is kept whole up to :data:`DEAD_LETTER_MAX_PAYLOAD` bytes, else its first
        :data:`DEAD_LETTER_HEAD` bytes; its size and sha256 are always kept.

        Args:
            source: The intake it came from: ``mqtt``, ``amqp`` or ``http``.
            topic: The topic (or route) it came on.
            reason: Why it was rejected.
            payload: The message bytes.
            received_at: When it arrived (aware); now if not given.

        Returns:
            The dead letter's id.

        Raises:
            StorageError: If the database write fails.

        """
        truncated = len(payload) > DEAD_LETTER_MAX_PAYLOAD
        row = DeadLetter(
            received_at=received_at or utcnow(),
            source=source,
            topic=_clean_text(topic),
            reason=_clean_text(reason),
            payload_size=len(payload),
            payload_sha256=hashlib.sha256(payload).hexdigest(),
            payload=payload[:DEAD_LETTER_HEAD] if truncated else payload,
            payload_truncated=truncated,
        )
        try:
            with self._sessions.begin() as session:
                session.add(row)
                session.flush()
                letter_id = row.id
        except SQLAlchemyError as err:
            raise StorageError(f"could not save a dead letter from {topic!r}: {err}") from err
        logger.warning("dead letter %d from %s %s: %s", letter_id, source, topic, reason)
        return letter_id

    def upsert_edge_status(
        self, *, site: str, agent_id: str, status: StatusMessage, seen_at: datetime | None = None
    ) -> None:
        """Record an edge agent's status message (the latest one received wins).

        Statuses are applied in arrival order, not by their timestamp: the agent's last will
        (``offline``) carries its connect time, older than the ``online`` it follows.

        Args:
            site: The agent's site.
            agent_id: The agent's id (the ``{camera}`` level of its status topic).
            status: The decoded status message.
            seen_at: When it was received (aware); now if not given.

        Raises:
            StorageError: If the database write fails.

        """
        seen = seen_at or utcnow()
        values = {
            "state": status.state,
            "agent_version": status.agent_version,
            "applied_config_hash": status.applied_config_hash,
            "counters": dict(status.counters),
            "last_status": status.model_dump(mode="json"),
            "status_at": status.timestamp,
            "last_seen": seen,
        }
        try:
            with self.engine.begin() as connection:
                statement = _insert(connection.dialect.name, Edge.__table__).values(
                    site=site, agent_id=agent_id, first_seen=seen, **values
                )
                connection.execute(
                    statement.on_conflict_do_update(
                        index_elements=["site", "agent_id"], set_=values
                    )
                )
        except SQLAlchemyError as err:
            raise StorageError(f"could not save the status of {site}/{agent_id}: {err}") from err

    def count_crops(self) -> int:
        """Return how many crops are stored."""
        try:
            with self._sessions() as session:
                return session.scalar(select(func.count()).select_from(Crop)) or 0
        except SQLAlchemyError as err:
            raise StorageError(f"could not count crops: {err}") from err

    def get_crop(self, crop_id: str) -> Crop | None:
        """Return the crop with this ``crop_id`` with its results loaded, or None.

        Args:
            crop_id: The protocol's crop id.

        Returns:
            A detached ``Crop`` whose ``results`` are loaded, or None if there is none.

        Raises:
            StorageError: If the database read fails.

        """
        query = select(Crop).where(Crop.crop_id == crop_id).options(selectinload(Crop.results))
        try:
            with self._sessions() as session:
                return session.scalars(query).one_or_none()
        except SQLAlchemyError as err:
            raise StorageError(f"could not read crop {crop_id}: {err}") from err

    def get_edge(self, *, site: str, agent_id: str) -> Edge | None:
        """Return the stored status of an edge agent, or None if it never reported."""
        query = select(Edge).where(Edge.site == site, Edge.agent_id == agent_id)
        try:
            with self._sessions() as session:
                return session.scalars(query).one_or_none()
        except SQLAlchemyError as err:
            raise StorageError(f"could not read edge {site}/{agent_id}: {err}") from err

    def get_dead_letter(self, letter_id: int) -> DeadLetter | None:
        """Return the dead letter with this id, or None."""
        try:
            with self._sessions() as session:
                return session.get(DeadLetter, letter_id)
        except SQLAlchemyError as err:
            raise StorageError(f"could not read dead letter {letter_id}: {err}") from err


def _insert(dialect: str, table: Any) -> sqlite.Insert | postgresql.Insert:
    """An INSERT with ON CONFLICT support for the connection's dialect."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise StorageError(f"expected a sqlite or postgresql database, got {dialect}")


def _camera_upsert(dialect: str, *, site: str, name: str, at: datetime) -> Insert:
    """Insert a camera, or widen its first/last seen times to include ``at``."""
    table: Table = Camera.__table__  # type: ignore[assignment]
    statement = _insert(dialect, table).values(site=site, name=name, first_seen=at, last_seen=at)
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


def _crop_row(
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
        "class_name": _clean_text(det.class_name),
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


def _result_row(crop_pk: int, result: NodeResult) -> dict[str, Any]:
    """The ``classifier_results`` row of a node result."""
    payload = to_json(result.output)
    return {
        "crop_pk": crop_pk,
        "node": result.node,
        "plugin": result.plugin,
        "plugin_version": result.version,
        "status": result.status,
        "label": _label_of(payload),
        "score": _score_of(payload),
        "payload": payload,
        "reason": _clean_text(result.reason),
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
        return _clean_text(value)
    if isinstance(value, Mapping):
        return {_clean_text(str(key)): to_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(item) for item in value]
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars, without importing numpy
    if callable(tolist):
        return to_json(tolist())
    return _clean_text(repr(value))


def _clean_text(text: str) -> str:
    """Replace NUL characters, which PostgreSQL text and JSONB cannot hold."""
    return text.replace("\x00", "\ufffd")
