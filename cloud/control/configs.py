"""Edge config versions and assignments: the database is the source of truth.

An operator creates a version from YAML or JSON text (validated as an edge config, without
the sections that stay local to each agent), then assigns it to edges. Each assignment holds
the desired hash; the control plane (:mod:`lensflow.cloud.control.reconciler`) publishes the
version's
text on the edge's config topic and records what the edge acknowledges.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import ValidationError
from sqlalchemy import Engine, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from lensflow.cloud.storage import StorageError, session_factory
from lensflow.cloud.storage.models import Edge, EdgeConfigAssignment, EdgeConfigVersion, utcnow
from lensflow.shared.config.edge import LOCAL_ONLY, EdgeConfig, config_hash
from lensflow.shared.config.edge import payload_hash as edge_payload_hash
from lensflow.shared.config.yaml_loader import YamlDocument, validation_issues
from lensflow.shared.errors import ConfigError, ConfigIssue
from lensflow.shared.protocol import ConfigAck

MAX_CONFIG_BYTES = 256 * 1024
"""Largest config text accepted; the agents refuse larger pushes too."""

_PLACEHOLDER = {"site": "validation", "agent_id": "validation"}


@dataclass(frozen=True)
class ValidatedConfig:
    """An edge config text that passed validation.

    Attributes:
        text: The text as given (what is published to the edges).
        config_hash: The agents' canonical hash of it (``sha256:<hex>``).
        payload_hash: ``sha256:<hex>`` of the text's bytes: an agent that rejects the
            config acknowledges this hash.

    """

    text: str
    config_hash: str
    payload_hash: str


@dataclass(frozen=True)
class Push:
    """A config to publish on one edge's config topic."""

    assignment_id: int
    site: str
    agent_id: str
    text: str
    desired_hash: str


def payload_hash(text: str) -> str:
    """``sha256:<hex>`` of the UTF-8 bytes of ``text``, as the agents hash what they reject."""
    return edge_payload_hash(text.encode("utf-8"))


def validate_edge_config(text: str, *, source: str = "<config>") -> ValidatedConfig:
    """Validate the text of an edge config as the agents will, and hash it as they do.

    Args:
        text: YAML or JSON text of an edge config without its local-only sections
            (``site``, ``agent_id``, ``mqtt``, ``spool``, ``metrics_port``).
        source: Name used in the error locations.

    Returns:
        The validated config's text and hashes.

    Raises:
        ConfigError: One issue (with its line) per problem: too large, not YAML, not a
            mapping, a local-only section present, or invalid values.

    """
    size = len(text.encode("utf-8"))
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(
            [ConfigIssue(f"expected a config of at most {MAX_CONFIG_BYTES} bytes, got {size}")]
        )
    doc = YamlDocument(text, path=source)
    if not isinstance(doc.data, dict):
        got = "an empty document" if doc.data is None else type(doc.data).__name__
        raise ConfigError(
            [ConfigIssue(f"expected a mapping of config sections, got {got}", doc.location(()))]
        )
    issues = [
        ConfigIssue(
            "stays in each agent's local file (it needs a restart); remove it",
            doc.location((key,)),
            key,
        )
        for key in LOCAL_ONLY
        if key in doc.data
    ]
    shared = {key: value for key, value in doc.data.items() if key not in LOCAL_ONLY}
    try:
        config = EdgeConfig.model_validate({**shared, **_PLACEHOLDER})
    except ValidationError as err:  # every problem at once, not the local sections first
        raise ConfigError(sorted(issues + validation_issues(err, doc), key=_line)) from err
    if issues:
        raise ConfigError(issues)
    return ValidatedConfig(
        text=text, config_hash=config_hash(config), payload_hash=payload_hash(text)
    )


def _line(issue: ConfigIssue) -> int:
    """An issue's line, for listing issues in text order (0 when it has none)."""
    return issue.location.line if issue.location else 0


class ConfigService:
    """Versions, assignments and acks of edge configs in the results database.

    Args:
        engine: The results database (migrated).

    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions: sessionmaker[Session] = session_factory(engine)

    def create_version(
        self, text: str, *, created_by: str | None, comment: str | None = None
    ) -> EdgeConfigVersion:
        """Validate ``text`` and store it as a new version.

        Raises:
            ConfigError: If the text is not a valid edge config.
            StorageError: If the database write fails.

        """
        checked = validate_edge_config(text)
        row = EdgeConfigVersion(
            config_text=checked.text,
            config_hash=checked.config_hash,
            comment=comment,
            created_by=created_by,
        )
        with self._write("create a config version") as session:
            session.add(row)
        return row

    def get_version(self, version_id: int) -> EdgeConfigVersion | None:
        """Return one version, or None."""
        with self._read("read a config version") as session:
            return session.get(EdgeConfigVersion, version_id)

    def list_versions(self, *, limit: int, before_id: int | None = None) -> list[EdgeConfigVersion]:
        """Return versions newest first, ``limit`` of them, older than ``before_id``."""
        query = select(EdgeConfigVersion).order_by(EdgeConfigVersion.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(EdgeConfigVersion.id < before_id)
        with self._read("list config versions") as session:
            return list(session.scalars(query))

    def assign(
        self, version_id: int, edges: Sequence[tuple[str, str]], *, assigned_by: str | None
    ) -> list[EdgeConfigAssignment]:
        """Make a version the desired config of each ``(site, agent_id)``.

        The ack state starts again at ``pending`` and the next sweep publishes it.

        Raises:
            LookupError: If there is no such version.
            StorageError: If the database write fails.

        """
        rows: list[EdgeConfigAssignment] = []
        with self._write("assign a config") as session:
            version = session.get(EdgeConfigVersion, version_id)
            if version is None:
                raise LookupError(f"no config version {version_id}")
            now = utcnow()
            for site, agent_id in dict.fromkeys(edges):
                row = session.scalars(
                    select(EdgeConfigAssignment)
                    .where(
                        EdgeConfigAssignment.site == site,
                        EdgeConfigAssignment.agent_id == agent_id,
                    )
                    .with_for_update()
                ).one_or_none()
                if row is None:
                    row = EdgeConfigAssignment(site=site, agent_id=agent_id)
                    session.add(row)
                row.config_version_id = version.id
                row.desired_hash = version.config_hash
                row.payload_hash = payload_hash(version.config_text)
                row.ack_status, row.acked_hash, row.error, row.acked_at = (
                    "pending",
                    None,
                    None,
                    None,
                )
                row.assigned_at, row.assigned_by = now, assigned_by
                row.last_sent_at, row.sent_count = None, 0
                rows.append(row)
        return rows

    def assignments(self) -> dict[tuple[str, str], EdgeConfigAssignment]:
        """Every assignment, by ``(site, agent_id)``."""
        with self._read("read assignments") as session:
            rows = session.scalars(select(EdgeConfigAssignment))
            return {(row.site, row.agent_id): row for row in rows}

    def record_ack(self, *, site: str, agent_id: str, ack: ConfigAck) -> bool:
        """Record an agent's answer if it concerns its desired config; say whether it did.

        An agent acknowledges an applied config with its config hash, a rejected one with
        the hash of the payload (it could not compute a config hash); either matches.
        """
        with self._write(f"record the config ack of {site}/{agent_id}") as session:
            row = session.scalars(
                select(EdgeConfigAssignment).where(
                    EdgeConfigAssignment.site == site, EdgeConfigAssignment.agent_id == agent_id
                )
            ).one_or_none()
            if row is None or ack.hash not in (row.desired_hash, row.payload_hash):
                return False
            if ack.status == "downloading":  # still pending here; rollouts show the progress
                return True
            row.ack_status, row.acked_hash, row.error = ack.status, ack.hash, ack.error
            row.acked_at = utcnow()
            return True

    def due(self, *, now: datetime, resend_after_s: float) -> list[Push]:
        """Assignments to publish now.

        Never sent since assigned: now. Sent before: again when the edge is online, reports
        another applied hash than the desired one, has not rejected it, and the last send is
        at least ``resend_after_s`` old.
        """
        cutoff = now - timedelta(seconds=resend_after_s)
        query = (
            select(EdgeConfigAssignment, EdgeConfigVersion.config_text)
            .join(EdgeConfigVersion, EdgeConfigAssignment.config_version_id == EdgeConfigVersion.id)
            .outerjoin(
                Edge,
                (Edge.site == EdgeConfigAssignment.site)
                & (Edge.agent_id == EdgeConfigAssignment.agent_id),
            )
            .where(
                or_(
                    EdgeConfigAssignment.last_sent_at.is_(None),
                    (EdgeConfigAssignment.ack_status != "rejected")
                    & (Edge.state == "online")
                    & (
                        Edge.applied_config_hash.is_(None)
                        | (Edge.applied_config_hash != EdgeConfigAssignment.desired_hash)
                    )
                    & (EdgeConfigAssignment.last_sent_at <= cutoff),
                )
            )
            .order_by(EdgeConfigAssignment.id)
        )
        with self._read("find configs to send") as session:
            return [
                Push(row.id, row.site, row.agent_id, text, row.desired_hash)
                for row, text in session.execute(query)
            ]

    def mark_sent(self, push: Push, *, at: datetime) -> None:
        """Record that ``push`` reached the broker (if it is still the desired config)."""
        with self._write("record a config send") as session:
            row = session.get(EdgeConfigAssignment, push.assignment_id, with_for_update=True)
            if row is not None and row.desired_hash == push.desired_hash:
                row.last_sent_at, row.sent_count = at, row.sent_count + 1

    def _read(self, what: str) -> Transaction:
        return Transaction(self._sessions, what, commit=False)

    def _write(self, what: str) -> Transaction:
        return Transaction(self._sessions, what, commit=True)


class Transaction:
    """A session whose SQLAlchemy errors become :class:`StorageError` naming ``what``."""

    def __init__(self, sessions: sessionmaker[Session], what: str, *, commit: bool) -> None:
        self.session = sessions()
        self.what, self.commit = what, commit

    def __enter__(self) -> Session:
        return self.session

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _tb: object
    ) -> None:
        try:
            if kind is None and self.commit:
                self.session.commit()
            elif kind is not None:
                self.session.rollback()
        except SQLAlchemyError as err:
            raise StorageError(f"could not {self.what}: {err}") from err
        finally:
            self.session.close()
        if isinstance(error, SQLAlchemyError):
            raise StorageError(f"could not {self.what}: {error}") from error
