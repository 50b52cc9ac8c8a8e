"""Request and response bodies of the rollout routes (``/v1/rollouts``)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from lensflow.cloud.api.control_schemas import EdgeRef
from lensflow.cloud.control.rollout_health import EdgeHealth, Figures
from lensflow.cloud.control.rollouts import RolloutView
from lensflow.cloud.storage.rollouts import RolloutEdge

MAX_ID = 2**63 - 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RolloutCreate(_Model):
    """A config version to roll out, first to one canary edge."""

    config_version_id: int = Field(ge=1, le=MAX_ID, description="The version to roll out.")
    canary: EdgeRef = Field(description="The edge that gets it first.")
    scope: Literal["site", "fleet"] = Field(
        "site", description="Promote assigns it to the rest of the canary's site, or the fleet."
    )


class FiguresOut(_Model):
    """What an edge did over some heartbeats."""

    heartbeats: int
    seconds: float = Field(description="Time the heartbeats cover.")
    frames: int
    fps: float | None
    detections_per_frame: float | None = Field(description="Before filtering.")
    errors: int | None = Field(description="Detector and source failures.")


class HealthOut(_Model):
    """An edge's figures on the rollout's version against its config before."""

    current: FiguresOut | None = Field(description="Since it applied the version; null before.")
    previous: FiguresOut = Field(description="On its previous config, in the hour before.")


class RolloutEdgeOut(_Model):
    """An edge the rollout touched."""

    site: str
    agent_id: str
    role: Literal["canary", "promoted"]
    state: Literal["pending", "downloading", "applied", "rejected"]
    error: str | None = Field(description="The edge's reason, when it rejected the version.")
    assigned_at: datetime
    state_at: datetime
    applied_at: datetime | None
    previous_version_id: int | None = Field(
        description="Its assigned version before (rollback restores it); null: its local file."
    )
    previous_model_sha256: str | None
    assigned_version_id: int | None = Field(description="The version assigned to it now.")
    model_sha256: str | None = Field(description="The model its last status named.")
    health: HealthOut | None = Field(description="Given by GET /v1/rollouts/{id}.")


class RolloutOut(_Model):
    """A canary rollout of a config version."""

    id: int
    config_version_id: int
    config_hash: str
    scope: Literal["site", "fleet"]
    site: str = Field(description="The canary's site.")
    agent_id: str = Field(description="The canary's agent id.")
    state: Literal["canary", "promoted", "rolled_back"]
    created_at: datetime
    created_by: str | None
    promoted_at: datetime | None
    promoted_by: str | None
    rolled_back_at: datetime | None
    rolled_back_by: str | None
    edges: list[RolloutEdgeOut]


def rollout_out(view: RolloutView) -> RolloutOut:
    """The API's view of a rollout."""
    row = view.rollout
    return RolloutOut(
        id=row.id,
        config_version_id=row.config_version_id,
        config_hash=row.config_hash,
        scope=row.scope,  # checked by the table
        site=row.site,
        agent_id=row.agent_id,
        state=row.state,  # checked by the table
        created_at=row.created_at,
        created_by=row.created_by,
        promoted_at=row.promoted_at,
        promoted_by=row.promoted_by,
        rolled_back_at=row.rolled_back_at,
        rolled_back_by=row.rolled_back_by,
        edges=[_edge_out(view, edge) for edge in view.edges],
    )


def _edge_out(view: RolloutView, edge: RolloutEdge) -> RolloutEdgeOut:
    key = (edge.site, edge.agent_id)
    assigned, model = view.now_running.get(key, (None, None))
    health = view.health.get(key)
    return RolloutEdgeOut(
        site=edge.site,
        agent_id=edge.agent_id,
        role=edge.role,  # checked by the table
        state=edge.state,  # checked by the table
        error=edge.error,
        assigned_at=edge.assigned_at,
        state_at=edge.state_at,
        applied_at=edge.applied_at,
        previous_version_id=edge.previous_version_id,
        previous_model_sha256=edge.previous_model_sha256,
        assigned_version_id=assigned,
        model_sha256=model,
        health=_health_out(health) if health else None,
    )


def _health_out(health: EdgeHealth) -> HealthOut:
    return HealthOut(
        current=_figures_out(health.current) if health.current else None,
        previous=_figures_out(health.previous),
    )


def _figures_out(figures: Figures) -> FiguresOut:
    return FiguresOut(
        heartbeats=figures.heartbeats,
        seconds=figures.seconds,
        frames=figures.frames,
        fps=figures.fps,
        detections_per_frame=figures.detections_per_frame,
        errors=figures.errors,
    )
