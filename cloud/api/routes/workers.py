"""``GET /v1/workers``: the cloud workers, what pipeline version each runs, and why not another.

Each worker writes its row every ``worker.version_poll_s`` (see
:mod:`lensflow.cloud.worker.versions`); a worker whose row is older than
:data:`STALE_POLLS` polls (at least :data:`STALE_MIN_S`) is shown ``alive: false``: it was
killed, or cannot reach the database.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from lensflow.cloud.api.auth import Viewer
from lensflow.cloud.api.deps import DbSession, State
from lensflow.cloud.api.errors import without_paths
from lensflow.cloud.storage.models_loop import WorkerRow

router = APIRouter(prefix="/v1/workers", tags=["workers"])

STALE_POLLS = 5
"""Polls a worker may miss before it is shown not alive."""
STALE_MIN_S = 15.0
"""Least age of a row shown not alive, however short the poll interval."""
NO_NUL = r"^[^\x00]*$"


class WorkerOut(BaseModel):
    """A cloud worker as it last reported itself."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="The worker's id: its MQTT client id or AMQP consumer tag.")
    host: str = Field(description="The host it runs on.")
    pid: int = Field(description="Its process id there.")
    intake: str = Field(description="Where its crops come from (no credentials).")
    pipeline: str = Field(description="The pipeline name it follows.")
    sha256: str = Field(description="The sha256 of the pipeline version it runs.")
    version_id: int | None = Field(
        description="That version's id (null: its local file, not a stored version)."
    )
    since: datetime = Field(description="When it started running that version.")
    started_at: datetime = Field(description="When the worker process started.")
    last_seen: datetime = Field(description="Its last report.")
    last_error: str = Field(description="Why the last version it tried did not load ('' if none).")
    last_error_at: datetime | None = Field(description="When that happened.")
    state: str = Field(description="running, or stopped (it said so on its way out).")
    alive: bool = Field(description="Running and reported recently.")


@router.get("", summary="List cloud workers")
def list_workers(
    _caller: Viewer,
    session: DbSession,
    state: State,
    pipeline: Annotated[
        str | None,
        Query(max_length=128, pattern=NO_NUL, description="Only workers of this pipeline."),
    ] = None,
    alive: Annotated[bool | None, Query(description="Only alive (or not alive) workers.")] = None,
) -> list[WorkerOut]:
    """Every worker that reported itself, most recently seen first."""
    query = select(WorkerRow).order_by(WorkerRow.last_seen.desc(), WorkerRow.id)
    if pipeline is not None:
        query = query.where(WorkerRow.pipeline == pipeline)
    stale_s = max(STALE_MIN_S, STALE_POLLS * state.config.worker.version_poll_s)
    now = datetime.now(UTC)
    rows = [
        _out(row, alive=row.state == "running" and (now - row.last_seen).total_seconds() < stale_s)
        for row in session.scalars(query.limit(1000))
    ]
    return [row for row in rows if alive is None or row.alive is alive]


def _out(row: WorkerRow, *, alive: bool) -> WorkerOut:
    return WorkerOut(
        id=row.id,
        host=row.host,
        pid=row.pid,
        intake=row.intake,
        pipeline=row.pipeline,
        sha256=row.sha256,
        version_id=row.version_id,
        since=row.since,
        started_at=row.started_at,
        last_seen=row.last_seen,
        last_error=without_paths(row.last_error),
        last_error_at=row.last_error_at,
        state=row.state,
        alive=alive,
    )
