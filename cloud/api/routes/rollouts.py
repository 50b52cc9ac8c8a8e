"""Canary rollouts of edge config versions: one edge first, its health, promote, roll back.

``POST /v1/rollouts`` assigns a config version to one canary edge and remembers what it had;
``GET /v1/rollouts/{id}`` gives each touched edge's state (pending, downloading, applied,
rejected, from its acks) and health (fps, detections per frame, errors since it applied the
version, against its previous config); ``promote`` assigns the version to the rest of the
canary's site or of the fleet once the canary applied it (409 otherwise); ``rollback``
re-assigns every touched edge its previous version.
"""

from __future__ import annotations

from typing import Annotated, NoReturn

from fastapi import APIRouter, Path, Query

from lensflow.cloud.api.auth import Operator, Viewer
from lensflow.cloud.api.errors import ApiError
from lensflow.cloud.api.rollout_schemas import MAX_ID, RolloutCreate, RolloutOut, rollout_out
from lensflow.cloud.api.routes.control import Control
from lensflow.cloud.control.rollouts import RolloutError, RolloutNotFoundError

router = APIRouter(prefix="/v1/rollouts", tags=["rollouts"])

RolloutId = Annotated[int, Path(ge=1, le=MAX_ID, description="A rollout id.")]
MAX_LIST = 200


@router.post("", status_code=201, summary="Start a canary rollout of a config version")
def create(body: RolloutCreate, caller: Operator, control: Control) -> RolloutOut:
    """Assign the version to the canary edge; the rest waits for promote."""
    try:
        view = control.rollouts.create(
            body.config_version_id,
            site=body.canary.site,
            agent_id=body.canary.agent_id,
            scope=body.scope,
            created_by=caller.name,
        )
    except RolloutError as err:
        _refuse(err)
    _wake(control)
    return rollout_out(view)


@router.get("", summary="List rollouts")
def list_rollouts(
    _caller: Viewer,
    control: Control,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="Rollouts older than this id.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 20,
) -> list[RolloutOut]:
    """Rollouts, newest first, with their edges' states (no health)."""
    return [rollout_out(v) for v in control.rollouts.list(limit=limit, before_id=before)]


@router.get("/{rollout_id}", summary="One rollout with its edges' states and health")
def get_rollout(rollout_id: RolloutId, _caller: Viewer, control: Control) -> RolloutOut:
    """Each touched edge's state and its figures on the version against its config before."""
    try:
        return rollout_out(control.rollouts.view(rollout_id, health=True))
    except RolloutError as err:
        _refuse(err)


@router.post("/{rollout_id}/promote", summary="Promote a rollout to the rest of its scope")
def promote(rollout_id: RolloutId, caller: Operator, control: Control) -> RolloutOut:
    """Assign the version to every other edge of the canary's site (or the fleet)."""
    try:
        view = control.rollouts.promote(rollout_id, by=caller.name)
    except RolloutError as err:
        _refuse(err)
    _wake(control)
    return rollout_out(view)


@router.post("/{rollout_id}/rollback", summary="Roll a rollout back")
def rollback(rollout_id: RolloutId, caller: Operator, control: Control) -> RolloutOut:
    """Re-assign every edge the rollout touched the version it had before."""
    try:
        view = control.rollouts.rollback(rollout_id, by=caller.name)
    except RolloutError as err:
        _refuse(err)
    _wake(control)
    return rollout_out(view)


def _refuse(err: RolloutError) -> NoReturn:
    """The service's refusal as the API's error: 404 for what does not exist, else 409."""
    status = 404 if isinstance(err, RolloutNotFoundError) else 409
    raise ApiError(status, err.code, str(err)) from err


def _wake(control: Control) -> None:
    if control.reconciler is not None:
        control.reconciler.wake()
