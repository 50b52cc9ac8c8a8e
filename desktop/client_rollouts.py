"""Canary rollout calls of :class:`lensflow.desktop.client.ApiClient` (``/v1/rollouts``).

A rollout puts an edge config version on one canary edge; its edges' states (pending,
downloading, applied, rejected) and health (fps, detections per frame, errors on the new
version against the previous) come with ``GET /v1/rollouts/{id}``. Promote is refused with
409 (:class:`~lensflow.desktop.errors.Conflict`) until the canary applied the version.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, TypeAdapter

from lensflow.desktop.client_http import HttpApi


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Figures(_Model):
    """What an edge did over some heartbeats."""

    heartbeats: int
    seconds: float
    frames: int
    fps: float | None = None
    detections_per_frame: float | None = None
    errors: int | None = None


class Health(_Model):
    """An edge's figures on the rollout's version (None before it applied) and before."""

    current: Figures | None = None
    previous: Figures


class RolloutEdge(_Model):
    """An edge a rollout touched."""

    site: str
    agent_id: str
    role: str
    state: str
    error: str | None = None
    previous_version_id: int | None = None
    previous_model_sha256: str | None = None
    assigned_version_id: int | None = None
    model_sha256: str | None = None
    health: Health | None = None


class Rollout(_Model):
    """A canary rollout of an edge config version."""

    id: int
    config_version_id: int
    scope: str
    site: str
    agent_id: str
    state: str
    created_at: datetime
    created_by: str | None = None
    edges: list[RolloutEdge]


_ROLLOUTS = TypeAdapter(list[Rollout])


class RolloutCalls(HttpApi):
    """The rollout part of the API client."""

    def rollouts(self, *, limit: int = 20) -> list[Rollout]:
        """Rollouts, newest first (their edges' states, no health)."""
        response = self._get("/v1/rollouts", params={"limit": str(limit)})
        return self._adapt(_ROLLOUTS, response)

    def rollout(self, rollout_id: int) -> Rollout:
        """One rollout with each edge's state and health."""
        return self._model(Rollout, self._get(f"/v1/rollouts/{rollout_id}"))

    def start_rollout(
        self, version_id: int, *, site: str, agent_id: str, scope: str = "site"
    ) -> Rollout:
        """Put config version ``version_id`` on the canary ``site/agent_id``."""
        body = {
            "config_version_id": version_id,
            "canary": {"site": site, "agent_id": agent_id},
            "scope": scope,
        }
        return self._model(Rollout, self._request("POST", "/v1/rollouts", json=body))

    def promote_rollout(self, rollout_id: int) -> Rollout:
        """Assign the version to the rest of the rollout's scope.

        Raises:
            Conflict: The canary has not applied it (or the rollout is not a canary any more).

        """
        return self._model(Rollout, self._request("POST", f"/v1/rollouts/{rollout_id}/promote"))

    def rollback_rollout(self, rollout_id: int) -> Rollout:
        """Re-assign every touched edge its previous version."""
        return self._model(Rollout, self._request("POST", f"/v1/rollouts/{rollout_id}/rollback"))
