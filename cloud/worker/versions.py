"""Which pipeline version a worker runs: the active one in the database, followed live.

The database is the source of truth. A worker's local ``pipeline:`` file only seeds the first
version of its pipeline name (stored and activated when the name has no version yet). A
:class:`VersionFollower` thread polls the active version every ``worker.version_poll_s``;
when it changes, the follower compiles, instantiates and warms the new version beside the
old one, off the worker's thread, and hands it over; the worker swaps between two batches
(:meth:`VersionFollower.take`), so no crop is lost or processed twice and each result carries
the sha256 of the version that produced it. A version that does not load is not applied:
the worker keeps the old one, records why (``GET /v1/workers``) and tries that version again
only after ``worker.version_retry_s``.

Each poll also writes the worker's row in ``workers``: id, host, intake, pipeline name, the
sha256 it runs and since when, its last error and when it was last seen.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from lensflow.cloud.storage.db import session_factory
from lensflow.cloud.storage.models import PipelineVersion
from lensflow.cloud.storage.models_loop import WorkerRow
from lensflow.shared.classifiers.registry import PluginRegistry
from lensflow.shared.config.cloud import Intake as IntakeConfig
from lensflow.shared.config.pipeline import PipelineConfig
from lensflow.shared.config.yaml_loader import YamlDocument, load_model
from lensflow.shared.dag.compiler import compile_pipeline
from lensflow.shared.dag.engine import Pipeline

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineText:
    """A pipeline's YAML text and where it comes from.

    Attributes:
        name: The pipeline's name (its ``name:``).
        text: The YAML.
        sha256: sha256 of the UTF-8 text: the version recorded with each result.
        version_id: The stored version's id; None for a local file that is not stored.
        source: For messages: ``pipeline version 7`` or the file's path.

    """

    name: str
    text: str
    sha256: str
    version_id: int | None
    source: str

    @classmethod
    def of_file(cls, path: str) -> PipelineText:
        """Read a local pipeline file (its name parsed, nothing compiled).

        Raises:
            ConfigError: The file is not a valid pipeline file.
            OSError: It cannot be read.

        """
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        config = load_model(PipelineConfig, YamlDocument(text, path=path))
        return cls(config.name, text, digest(text), None, path)


def digest(text: str) -> str:
    """The version of a pipeline text: sha256 of its UTF-8 bytes (as the API stores it)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def compile_text(version: PipelineText, *, registry: PluginRegistry | None) -> Pipeline:
    """Compile a version and instantiate its plugins (loads models; may take seconds).

    Raises:
        ConfigError: The text is invalid, or a plugin's params (a model, a head) are.
        LensflowError: A plugin cannot load its model.

    """
    doc = YamlDocument(version.text, path=version.source)
    config = load_model(PipelineConfig, doc)
    return Pipeline(compile_pipeline(config, registry=registry, doc=doc))


class VersionBook:
    """Reads a pipeline name's active version and records what workers run (the database).

    Args:
        engine: The results database.

    """

    def __init__(self, engine: Engine) -> None:
        self._sessions = session_factory(engine)

    def seed(self, local: PipelineText, *, actor: str) -> PipelineText | None:
        """Store ``local`` as the first, active version of its name if the name has none.

        Returns:
            The active version of the name afterwards, or None when it has versions but
            none is active (the worker then runs its local file until one is activated).

        """
        with self._sessions() as session:
            exists = session.scalar(
                select(PipelineVersion.id).where(PipelineVersion.name == local.name).limit(1)
            )
            if exists is None:
                session.add(
                    PipelineVersion(
                        name=local.name,
                        yaml_text=local.text,
                        sha256=local.sha256,
                        created_by=actor[:128],
                        active=True,
                    )
                )
                try:
                    session.commit()
                    logger.info("pipeline %s: seeded version 1 from %s", local.name, local.source)
                except IntegrityError:  # another worker seeded it meanwhile
                    session.rollback()
        return self.active(local.name)

    def active(self, name: str) -> PipelineText | None:
        """The active version of pipeline ``name``, or None."""
        with self._sessions() as session:
            row = session.scalars(
                select(PipelineVersion)
                .where(PipelineVersion.name == name, PipelineVersion.active.is_(True))
                .order_by(PipelineVersion.id.desc())
                .limit(1)
            ).first()
            if row is None:
                return None
            source = f"pipeline version {row.id}"
            return PipelineText(row.name, row.yaml_text, row.sha256, row.id, source)

    def report(self, status: WorkerStatus) -> None:
        """Write the worker's row (insert or update)."""
        with self._sessions() as session:
            row = session.get(WorkerRow, status.id) or WorkerRow(id=status.id)
            row.host, row.pid, row.intake = status.host, status.pid, status.intake
            row.pipeline, row.sha256, row.version_id = (
                status.pipeline,
                status.sha256,
                status.version_id,
            )
            row.since, row.started_at = status.since, status.started_at
            row.last_seen = datetime.now(UTC)
            row.last_error, row.last_error_at = status.last_error[:4000], status.last_error_at
            row.state = status.state
            session.add(row)
            session.commit()


@dataclass(frozen=True)
class WorkerStatus:
    """What a worker reports about itself."""

    id: str
    host: str
    pid: int
    intake: str
    pipeline: str
    sha256: str
    version_id: int | None
    since: datetime
    started_at: datetime
    last_error: str = ""
    last_error_at: datetime | None = None
    state: str = "running"

    @classmethod
    def starting(cls, worker_id: str, intake: str, running: PipelineText) -> WorkerStatus:
        """The status of a worker that starts running ``running`` now."""
        now = datetime.now(UTC)
        return cls(
            worker_id,
            socket.gethostname(),
            os.getpid(),
            intake,
            running.name,
            running.sha256,
            running.version_id,
            now,
            now,
        )


def describe_intake(config: IntakeConfig) -> str:
    """Where a worker's crops come from, without credentials (for ``GET /v1/workers``)."""
    if config.type == "mqtt":
        return f"mqtt://{config.mqtt.host}:{config.mqtt.port} {config.topic}"
    return f"amqp queue {config.queue}"


Loader = Callable[[PipelineText], Pipeline]


class VersionFollower:
    """Polls the active version; loads a new one beside the running one; reports the worker.

    Args:
        book: The database side.
        running: The version the worker runs now.
        status: The worker's status (id, host, intake...).
        load: Compiles, instantiates and warms a version (raises if it cannot).
        poll_s: Seconds between two polls.
        retry_s: Seconds before a version that failed to load is tried again.

    """

    def __init__(
        self,
        *,
        book: VersionBook,
        running: PipelineText,
        status: WorkerStatus,
        load: Loader,
        poll_s: float,
        retry_s: float,
    ) -> None:
        self.book = book
        self.running = running
        self.status = status
        self._load = load
        self._poll_s = poll_s
        self._retry_s = retry_s
        self._pending: tuple[PipelineText, Pipeline] | None = None
        self._failed: dict[str, float] = {}  # sha256 -> monotonic time it may be tried again
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Report the worker and start polling on a daemon thread."""
        self._report()
        self._thread = threading.Thread(target=self._loop, name="version-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and report the worker stopped."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            self.status = replace(self.status, state="stopped")
        self._report()

    def failed(self, version: PipelineText, message: str) -> None:
        """Record that ``version`` did not load (at startup): reported, retried later."""
        self._failed[version.sha256] = time.monotonic() + self._retry_s
        with self._lock:
            self.status = replace(self.status, last_error=message, last_error_at=datetime.now(UTC))

    def take(self) -> tuple[PipelineText, Pipeline] | None:
        """The loaded new version, if one is ready (the worker swaps to it now)."""
        with self._lock:
            pending, self._pending = self._pending, None
            if pending is None:
                return None
            version = pending[0]
            self.running = version
            self.status = replace(
                self.status,
                pipeline=version.name,
                sha256=version.sha256,
                version_id=version.version_id,
                since=datetime.now(UTC),
                last_error="",
                last_error_at=None,
            )
        self._wake.set()  # report the swap now, not at the next poll
        return pending

    def poll_once(self) -> None:
        """Look at the active version once; load it if it is new; report the worker."""
        try:
            active = self.book.active(self.running.name)
        except SQLAlchemyError as err:
            logger.warning(
                "pipeline %s: cannot read the active version: %s", self.running.name, err
            )
            return
        if active is not None and self._wanted(active):
            self._try_load(active)
        self._report()

    def _wanted(self, active: PipelineText) -> bool:
        with self._lock:
            if active.sha256 == self.running.sha256:
                return False
            if self._pending is not None and self._pending[0].sha256 == active.sha256:
                return False
        return time.monotonic() >= self._failed.get(active.sha256, 0.0)

    def _try_load(self, version: PipelineText) -> None:
        started = time.perf_counter()
        logger.info(
            "pipeline %s: loading %s (%s) beside %s",
            version.name,
            version.source,
            version.sha256[:12],
            self.running.sha256[:12],
        )
        try:
            pipeline = self._load(version)
        except Exception as err:  # any failure: keep the old version, say why
            reason = " ".join(str(err).split()) or type(err).__name__
            message = f"{version.source} ({version.sha256[:12]}) did not load: {reason}"
            logger.error("pipeline %s: %s; keeping %s", version.name, message, self.running.source)
            self._failed[version.sha256] = time.monotonic() + self._retry_s
            with self._lock:
                self.status = replace(
                    self.status, last_error=message, last_error_at=datetime.now(UTC)
                )
            return
        with self._lock:
            self._pending = (version, pipeline)
        logger.info(
            "pipeline %s: %s ready in %.1f s; swapping between batches",
            version.name,
            version.source,
            time.perf_counter() - started,
        )

    def _report(self) -> None:
        with self._lock:
            status = self.status
        try:
            self.book.report(status)
        except SQLAlchemyError as err:
            logger.warning("worker %s: cannot report its status: %s", status.id, err)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._poll_s)
            if self._stop.is_set():
                return
            woken = self._wake.is_set()
            self._wake.clear()
            try:
                if woken:
                    self._report()
                else:
                    self.poll_once()
            except Exception:  # the follower must outlive any surprise
                logger.exception("pipeline %s: version poll failed", self.running.name)
