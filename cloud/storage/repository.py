"""ResultStore: the small interface the workers and the API use to write and read results.

Writes are idempotent on ``crop_id``: a re-delivered crop (at-least-once intake) creates no
second row. The crop row is inserted with ``INSERT ... ON CONFLICT (crop_id) DO NOTHING
RETURNING id`` (SQLite and PostgreSQL alike), so of two concurrent saves of the same crop
exactly one inserts, and the other learns it lost without an error or a retry.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, Engine, func, insert, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import selectinload

from lensflow.cloud.storage.db import session_factory
from lensflow.cloud.storage.errors import StorageError
from lensflow.cloud.storage.models import (
    ClassifierResult,
    Crop,
    CropEmbedding,
    DeadLetter,
    Edge,
    utcnow,
)
from lensflow.cloud.storage.rows import (
    camera_upsert,
    clean_text,
    crop_row,
    embedding_row,
    insert_for,
    result_row,
)
from lensflow.shared.dag.engine import NodeResult
from lensflow.shared.protocol import CropHeader, StatusMessage

logger = logging.getLogger(__name__)

DEAD_LETTER_MAX_PAYLOAD = 64 * 1024
"""A dead letter's payload is kept whole up to this size; a larger one is cut."""
DEAD_LETTER_HEAD = 512
"""How many leading bytes of a too-large dead-letter payload are kept."""

DeadLetterSource = Literal["mqtt", "amqp", "http"]


@dataclass(frozen=True)
class CropEntry:
    """One crop to store: its header, JPEG size, node results and arrival time (aware)."""

    header: CropHeader
    jpeg_size: int
    results: Mapping[str, NodeResult]
    received_at: datetime


class ResultStore:
    """Crop results, dead letters and edge status in the results database."""

    def __init__(self, engine: Engine) -> None:
        """Write to and read from the (already migrated) database behind ``engine``.

        Args:
            engine: An engine from :func:`lensflow.cloud.storage.db.create_engine_for`.

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
        entry = CropEntry(header, jpeg_size, results, received_at or utcnow())
        return self.save_many([entry], pipeline=pipeline, pipeline_version=pipeline_version)[0]

    def save_many(
        self, entries: Sequence[CropEntry], *, pipeline: str, pipeline_version: str | None = None
    ) -> list[bool]:
        """Store several crops and their node results in ONE transaction (one commit).

        A worker's batch is committed at once: one WAL sync instead of one per crop. Each
        crop is still inserted at most once per ``crop_id`` (duplicates, also within
        ``entries``, are no-ops). If the transaction fails nothing of it is kept; the caller
        may retry it, or save the entries one by one to find a crop the database refuses.

        Args:
            entries: The crops with their results.
            pipeline: Name of the pipeline that produced the results.
            pipeline_version: The pipeline version, if known.

        Returns:
            For each entry in order, True if it was stored, False if its ``crop_id`` already
            was.

        Raises:
            StorageError: If a result is filed under another node's name, or the database
                write fails.

        """
        rows = []
        for entry in entries:
            for name, result in entry.results.items():
                if name != result.node:
                    raise StorageError(
                        f"expected the result filed under node {name!r} to be that node's, "
                        f"got a result of node {result.node!r} (crop {entry.header.crop_id})"
                    )
            rows.append(
                crop_row(
                    entry.header,
                    jpeg_size=entry.jpeg_size,
                    pipeline=pipeline,
                    pipeline_version=pipeline_version,
                    received_at=entry.received_at,
                )
            )
        try:
            with self.engine.begin() as connection:
                stored = self._insert_batch(connection, rows, entries)
        except SQLAlchemyError as err:
            ids = ", ".join(entry.header.crop_id for entry in entries[:3])
            more = f" and {len(entries) - 3} more" if len(entries) > 3 else ""
            raise StorageError(f"could not save crop {ids}{more}: {err}") from err
        for entry, was_stored in zip(entries, stored, strict=True):
            if not was_stored:
                logger.info("crop %s already stored: re-delivery ignored", entry.header.crop_id)
        return stored

    def _insert_batch(
        self, connection: Connection, rows: list[dict[str, Any]], entries: Sequence[CropEntry]
    ) -> list[bool]:
        """Insert the crops not yet present, their results and embeddings, and their cameras.

        A few statements per batch, not per crop: one multi-row crop insert (``ON CONFLICT
        DO NOTHING RETURNING``), one executemany each for results and embeddings, one upsert
        per camera.
        """
        if not rows:
            return []
        dialect = connection.dialect.name
        first: dict[str, int] = {}  # crop_id -> index of its first entry in this batch
        for index, row in enumerate(rows):
            first.setdefault(row["crop_id"], index)
        unique = [rows[index] for index in first.values()]
        statement = (
            insert_for(dialect, Crop.__table__)
            .on_conflict_do_nothing(index_elements=["crop_id"])
            .returning(Crop.id, Crop.crop_id)
        )  # executemany with RETURNING: SQLAlchemy's cached "insertmanyvalues" batches
        inserted = connection.execute(statement, unique).all()
        pk_of = {crop_id: pk for pk, crop_id in inserted}
        stored = [
            pk_of.get(row["crop_id"]) is not None and first[row["crop_id"]] == index
            for index, row in enumerate(rows)
        ]
        results: list[dict[str, Any]] = []
        embeddings: list[dict[str, Any]] = []
        seen: dict[tuple[str, str], tuple[datetime, datetime]] = {}
        for row, entry, was_stored in zip(rows, entries, stored, strict=True):
            if not was_stored:
                continue
            crop_pk = pk_of[row["crop_id"]]
            for result in entry.results.values():
                results.append(result_row(crop_pk, result))
                if (embedding := embedding_row(crop_pk, result)) is not None:
                    embeddings.append(embedding)
            camera, at = (row["site"], row["camera"]), row["captured_at"]
            low, high = seen.get(camera, (at, at))
            seen[camera] = (min(low, at), max(high, at))
        if results:
            connection.execute(insert(ClassifierResult), results)
        if embeddings:
            connection.execute(insert(CropEmbedding), embeddings)
        for (site, name), (low, high) in sorted(seen.items()):
            connection.execute(camera_upsert(dialect, site=site, name=name, first=low, last=high))
        return stored

    def save_dead_letter(
        self,
        *,
        source: DeadLetterSource,
        topic: str,
        reason: str,
        payload: bytes,
        received_at: datetime | None = None,
        crop_id: str | None = None,
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
            crop_id: The crop's id, when its header could be read that far.

        Returns:
            The dead letter's id.

        Raises:
            StorageError: If the database write fails.

        """
        truncated = len(payload) > DEAD_LETTER_MAX_PAYLOAD
        row = DeadLetter(
            received_at=received_at or utcnow(),
            source=source,
            topic=clean_text(topic),
            reason=clean_text(reason),
            payload_size=len(payload),
            payload_sha256=hashlib.sha256(payload).hexdigest(),
            payload=payload[:DEAD_LETTER_HEAD] if truncated else payload,
            payload_truncated=truncated,
            crop_id=crop_id,
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
                statement = insert_for(connection.dialect.name, Edge.__table__).values(
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

    def known_crops(self, crop_ids: Sequence[str]) -> dict[str, str]:
        """The JPEG sha256 of each of ``crop_ids`` already stored (one indexed query).

        Lets a worker recognise a re-delivery before it decodes the JPEG or runs the DAG.

        Raises:
            StorageError: If the database read fails.

        """
        if not crop_ids:
            return {}
        query = select(Crop.crop_id, Crop.jpeg_sha256).where(Crop.crop_id.in_(set(crop_ids)))
        try:
            with self._sessions() as session:
                return {crop_id: sha for crop_id, sha in session.execute(query)}
        except SQLAlchemyError as err:
            raise StorageError(f"could not look up {len(crop_ids)} crop ids: {err}") from err

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
