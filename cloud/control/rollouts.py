"""Canary rollouts of edge config versions: one edge first, then promote or roll back.

A rollout assigns a config version (:class:`~lensflow.cloud.control.configs.ConfigService`)
to one canary edge and remembers, for every edge it touches, the version that edge had
assigned before, the config hash it ran and its model. The control plane feeds it the edges'
acks (``downloading``, ``applied``, ``rejected``) and heartbeats. ``promote`` assigns the
version to the rest of the canary's site (or of the fleet), only once the canary applied it;
``rollback`` re-assigns each touched edge its previous version.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session, sessionmaker

from lensflow.cloud.control.configs import ConfigService, Transaction, payload_hash
from lensflow.cloud.control.rollout_health import EdgeHealth, edge_health
from lensflow.cloud.storage import session_factory
from lensflow.cloud.storage.models import Edge, EdgeConfigAssignment, EdgeConfigVersion, utcnow
from lensflow.cloud.storage.rollouts import EdgeHeartbeat, Rollout, RolloutEdge
from lensflow.shared.protocol import ConfigAck, StatusMessage


class RolloutError(Exception):
    """A rollout request that cannot be done; ``code`` names why for the API."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class RolloutNotFoundError(RolloutError):
    """The rollout, config version or edge named does not exist."""


class RolloutConflictError(RolloutError):
    """The rollout is not in a state that allows the request."""


@dataclass(frozen=True)
class RolloutView:
    """A rollout, each edge it touched, and (when asked) their health."""

    rollout: Rollout
    edges: list[RolloutEdge]
    health: dict[tuple[str, str], EdgeHealth]
    now_running: dict[tuple[str, str], tuple[int | None, str | None]]  # assigned version, model


class RolloutService:
    """Rollouts, their edges' states and the heartbeat history they are judged on.

    Args:
        engine: The results database (migrated).
        configs: Where versions are assigned.
        heartbeat_history_s: How long heartbeats are kept.

    """

    def __init__(
        self, engine: Engine, *, configs: ConfigService, heartbeat_history_s: float = 21600.0
    ) -> None:
        self.configs = configs
        self.heartbeat_history_s = heartbeat_history_s
        self._sessions: sessionmaker[Session] = session_factory(engine)

    def create(
        self, version_id: int, *, site: str, agent_id: str, scope: str, created_by: str | None
    ) -> RolloutView:
        """Start a rollout of ``version_id`` on the canary ``site/agent_id``.

        Raises:
            RolloutNotFoundError: No such version, or the edge never reported nor had a config.
            RolloutConflictError: The edge is the canary or a target of an unfinished rollout.
            StorageError: If the database fails.

        """
        with Transaction(self._sessions, "start a rollout", commit=True) as session:
            version = session.get(EdgeConfigVersion, version_id)
            if version is None:
                raise RolloutNotFoundError(
                    "unknown_config", f"expected an existing config version, got {version_id}"
                )
            if (site, agent_id) not in _known_edges(session, site=site):
                raise RolloutNotFoundError(
                    "unknown_edge", f"expected a known edge as canary, got {site}/{agent_id}"
                )
            busy = _open_rollout_of(session, site, agent_id)
            if busy is not None:
                raise RolloutConflictError(
                    "rollout_in_progress",
                    f"expected {site}/{agent_id} in no unfinished rollout, got rollout "
                    f"{busy} (promote or roll it back first)",
                )
            rollout = Rollout(
                config_version_id=version.id,
                config_hash=version.config_hash,
                payload_hash=payload_hash(version.config_text),
                scope=scope,
                site=site,
                agent_id=agent_id,
                state="canary",
                created_by=created_by,
            )
            session.add(rollout)
            session.flush()
            session.add(_touched(session, rollout, site, agent_id, role="canary"))
            rollout_id = rollout.id
        self.configs.assign(version_id, [(site, agent_id)], assigned_by=created_by)
        return self.view(rollout_id)

    def view(self, rollout_id: int, *, health: bool = False) -> RolloutView:
        """One rollout with its edges (and their health when asked).

        Raises:
            RolloutNotFoundError: No such rollout.
            StorageError: If the database fails.

        """
        with Transaction(self._sessions, "read a rollout", commit=False) as session:
            rollout = session.get(Rollout, rollout_id)
            if rollout is None:
                raise RolloutNotFoundError(
                    "unknown_rollout", f"expected an existing rollout, got {rollout_id}"
                )
            edges = list(
                session.scalars(
                    select(RolloutEdge)
                    .where(RolloutEdge.rollout_id == rollout_id)
                    .order_by(RolloutEdge.role, RolloutEdge.site, RolloutEdge.agent_id)
                )
            )
            keys = [(e.site, e.agent_id) for e in edges]
            found = {
                key: edge_health(session, rollout, e) for key, e in zip(keys, edges, strict=True)
            }
            return RolloutView(rollout, edges, found if health else {}, _now_running(session, keys))

    def list(self, *, limit: int, before_id: int | None = None) -> list[RolloutView]:
        """Rollouts newest first, without health."""
        query = select(Rollout.id).order_by(Rollout.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(Rollout.id < before_id)
        with Transaction(self._sessions, "list rollouts", commit=False) as session:
            ids = list(session.scalars(query))
        return [self.view(rollout_id) for rollout_id in ids]

    def promote(self, rollout_id: int, *, by: str | None) -> RolloutView:
        """Assign the version to every other edge of the rollout's site (or the fleet).

        Raises:
            RolloutNotFoundError: No such rollout.
            RolloutConflictError: It is not on its canary only, or the canary has not applied it.
            StorageError: If the database fails.

        """
        with Transaction(self._sessions, "promote a rollout", commit=True) as session:
            rollout = _rollout_for_update(session, rollout_id)
            _expect_state(rollout, "canary", doing="promote")
            canary = session.scalars(
                select(RolloutEdge).where(
                    RolloutEdge.rollout_id == rollout.id, RolloutEdge.role == "canary"
                )
            ).one()
            if canary.state != "applied":
                why = f": {canary.error}" if canary.error else ""
                raise RolloutConflictError(
                    "canary_not_applied",
                    f"expected canary {canary.site}/{canary.agent_id} to have applied config "
                    f"version {rollout.config_version_id}, got {canary.state}{why}",
                )
            scope_site = rollout.site if rollout.scope == "site" else None
            targets = sorted(
                _known_edges(session, site=scope_site) - {(canary.site, canary.agent_id)}
            )
            for site, agent_id in targets:
                session.add(_touched(session, rollout, site, agent_id, role="promoted"))
            rollout.state, rollout.promoted_at, rollout.promoted_by = "promoted", utcnow(), by
            version_id = rollout.config_version_id
        if targets:
            self.configs.assign(version_id, targets, assigned_by=by)
        return self.view(rollout_id)

    def rollback(self, rollout_id: int, *, by: str | None) -> RolloutView:
        """Re-assign every touched edge the version it had before the rollout.

        An edge that had no version assigned (it ran its local file) keeps the rollout's:
        the cloud has no text of what it ran before.

        Raises:
            RolloutNotFoundError: No such rollout.
            RolloutConflictError: It was rolled back already.
            StorageError: If the database fails.

        """
        groups: dict[int, list[tuple[str, str]]] = defaultdict(list)
        with Transaction(self._sessions, "roll back a rollout", commit=True) as session:
            rollout = _rollout_for_update(session, rollout_id)
            if rollout.state == "rolled_back":
                raise RolloutConflictError(
                    "rollout_finished",
                    f"expected a rollout in state canary or promoted to roll back, got "
                    f"rollout {rollout_id} rolled_back",
                )
            for edge in session.scalars(
                select(RolloutEdge).where(RolloutEdge.rollout_id == rollout.id)
            ):
                if edge.previous_version_id is not None:
                    groups[edge.previous_version_id].append((edge.site, edge.agent_id))
            rollout.state, rollout.rolled_back_at, rollout.rolled_back_by = (
                "rolled_back",
                utcnow(),
                by,
            )
        for version_id, edges in sorted(groups.items()):
            self.configs.assign(version_id, edges, assigned_by=by)
        return self.view(rollout_id)

    def record_ack(self, *, site: str, agent_id: str, ack: ConfigAck) -> int:
        """Move the edge's state in its unfinished rollouts of the acked config; how many."""
        with Transaction(
            self._sessions, f"record the rollout ack of {site}/{agent_id}", commit=True
        ) as session:
            rows = _edge_rows(session, site, agent_id, ack.hash)
            for row in rows:
                if ack.status == "downloading" and row.state != "pending":
                    continue  # a late download notice never undoes the final answer
                if row.state == "applied" and ack.status == "applied":
                    continue
                row.state, row.error, row.state_at = ack.status, ack.error, utcnow()
                if ack.status == "applied":
                    row.applied_at = row.state_at
            return len(rows)

    def record_heartbeat(self, *, site: str, agent_id: str, status: StatusMessage) -> None:
        """Keep an online status for the health figures; drop those past the history."""
        if status.state != "online":
            return
        cutoff = utcnow() - timedelta(seconds=self.heartbeat_history_s)
        with Transaction(
            self._sessions, f"keep the heartbeat of {site}/{agent_id}", commit=True
        ) as session:
            session.add(
                EdgeHeartbeat(
                    site=site,
                    agent_id=agent_id,
                    at=status.timestamp,
                    config_hash=status.applied_config_hash,
                    model_sha256=status.model_sha256,
                    counters=dict(status.counters),
                )
            )
            session.execute(
                delete(EdgeHeartbeat).where(
                    EdgeHeartbeat.site == site,
                    EdgeHeartbeat.agent_id == agent_id,
                    EdgeHeartbeat.at < cutoff,
                )
            )
            if status.applied_config_hash is None:
                return
            for row in _edge_rows(session, site, agent_id, status.applied_config_hash):
                if row.state in ("pending", "downloading"):  # its ack was lost: it runs it
                    row.state, row.error, row.state_at = "applied", None, utcnow()
                    row.applied_at = status.timestamp


def _known_edges(session: Session, *, site: str | None) -> set[tuple[str, str]]:
    """Edges that reported or have a config assigned, of ``site`` (None: every site)."""
    found: set[tuple[str, str]] = set()
    for table in (Edge, EdgeConfigAssignment):
        query = select(table.site, table.agent_id)
        if site is not None:
            query = query.where(table.site == site)
        found |= {(s, a) for s, a in session.execute(query)}
    return found


def _open_rollout_of(session: Session, site: str, agent_id: str) -> int | None:
    """The id of an unfinished (canary) rollout that touched the edge, if any."""
    return session.scalars(
        select(Rollout.id)
        .join(RolloutEdge, RolloutEdge.rollout_id == Rollout.id)
        .where(
            Rollout.state == "canary", RolloutEdge.site == site, RolloutEdge.agent_id == agent_id
        )
        .limit(1)
    ).first()


def _touched(
    session: Session, rollout: Rollout, site: str, agent_id: str, *, role: str
) -> RolloutEdge:
    """A rollout edge row with what the edge has now (its previous version and model)."""
    assignment = session.scalars(
        select(EdgeConfigAssignment).where(
            EdgeConfigAssignment.site == site, EdgeConfigAssignment.agent_id == agent_id
        )
    ).one_or_none()
    edge = session.scalars(
        select(Edge).where(Edge.site == site, Edge.agent_id == agent_id)
    ).one_or_none()
    model = edge.last_status.get("model_sha256") if edge is not None else None
    return RolloutEdge(
        rollout_id=rollout.id,
        site=site,
        agent_id=agent_id,
        role=role,
        state="pending",
        previous_version_id=assignment.config_version_id if assignment else None,
        previous_config_hash=edge.applied_config_hash if edge else None,
        previous_model_sha256=model if isinstance(model, str) else None,
    )


def _rollout_for_update(session: Session, rollout_id: int) -> Rollout:
    rollout = session.get(Rollout, rollout_id, with_for_update=True)
    if rollout is None:
        raise RolloutNotFoundError(
            "unknown_rollout", f"expected an existing rollout, got {rollout_id}"
        )
    return rollout


def _expect_state(rollout: Rollout, wanted: str, *, doing: str) -> None:
    if rollout.state != wanted:
        raise RolloutConflictError(
            "rollout_not_canary",
            f"expected rollout {rollout.id} in state {wanted} to {doing} it, got {rollout.state}",
        )


def _edge_rows(session: Session, site: str, agent_id: str, hash_: str) -> Sequence[RolloutEdge]:
    """The edge's rows in unfinished rollouts whose config (or its payload) has ``hash_``."""
    return session.scalars(
        select(RolloutEdge)
        .join(Rollout, RolloutEdge.rollout_id == Rollout.id)
        .where(
            Rollout.state != "rolled_back",
            RolloutEdge.site == site,
            RolloutEdge.agent_id == agent_id,
            (Rollout.config_hash == hash_) | (Rollout.payload_hash == hash_),
        )
    ).all()


def _now_running(
    session: Session, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], tuple[int | None, str | None]]:
    """Each edge's assigned version now and the model its last status named."""
    now: dict[tuple[str, str], tuple[int | None, str | None]] = {}
    for site, agent_id in keys:
        assignment = session.scalars(
            select(EdgeConfigAssignment).where(
                EdgeConfigAssignment.site == site, EdgeConfigAssignment.agent_id == agent_id
            )
        ).one_or_none()
        edge = session.scalars(
            select(Edge).where(Edge.site == site, Edge.agent_id == agent_id)
        ).one_or_none()
        model = edge.last_status.get("model_sha256") if edge is not None else None
        now[(site, agent_id)] = (
            assignment.config_version_id if assignment else None,
            model if isinstance(model, str) else None,
        )
    return now
