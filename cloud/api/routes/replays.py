"""Replay before activate: run a candidate version over stored crops and read the comparison.

``POST /v1/pipelines/{id}/replay`` chooses the crops (the results filters and ``limit``,
newest first) and queues a job; a child process runs it (:mod:`lensflow.cloud.replay`) and
``GET /v1/replays/{job}`` shows its progress, then its report: per node, crops compared,
labels changed, newly run and newly skipped, the old → new confusion table and example crop
ids. Nothing a replay computes is stored as results.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from lensflow.cloud.api.auth import Operator, Viewer
from lensflow.cloud.api.deps import DbSession
from lensflow.cloud.api.errors import ApiError, without_paths
from lensflow.cloud.api.queries import ResultFilter, filter_clauses
from lensflow.cloud.api.routes.results import result_filter
from lensflow.cloud.replay.runner import ReplayRunner
from lensflow.cloud.storage.models import Crop, PipelineVersion
from lensflow.cloud.storage.models_loop import ReplayJob

router = APIRouter(tags=["replays"])

MAX_ID = 2**63 - 1
MAX_REPLAY = 10_000
"""Most crops one replay runs over."""


class ReplayOut(BaseModel):
    """A replay job: its progress, then its report."""

    model_config = ConfigDict(extra="forbid")

    id: int = Field(description="The job's id.")
    pipeline_version_id: int = Field(description="The candidate version replayed.")
    state: str = Field(description="queued, running, done or failed.")
    total: int = Field(description="Crops to replay.")
    done: int = Field(description="Crops replayed so far.")
    filters: dict[str, Any] = Field(description="The results filters and limit that chose them.")
    created_at: datetime
    created_by: str
    started_at: datetime | None
    finished_at: datetime | None
    error: str = Field(description="Why it failed ('' unless failed).")
    report: dict[str, Any] | None = Field(
        description="When done: crops, compared_with (stored versions), nodes (per node: "
        "compared, changed, unchanged, newly_run, newly_skipped, errors, confusion, examples, "
        "in_candidate), unreadable, seconds."
    )


def get_runner(request: Request) -> ReplayRunner:
    """The app's replay runner."""
    runner: ReplayRunner = request.app.state.replays
    return runner


@router.post(
    "/v1/pipelines/{pipeline_id}/replay",
    status_code=202,
    summary="Replay a pipeline version over stored crops",
)
def create_replay(
    pipeline_id: Annotated[int, Path(ge=1, le=MAX_ID, description="The candidate version.")],
    caller: Operator,
    session: DbSession,
    spec: Annotated[ResultFilter, Depends(result_filter)],
    runner: Annotated[ReplayRunner, Depends(get_runner)],
    response: Response,
    limit: Annotated[
        int, Query(ge=1, le=MAX_REPLAY, description="Most crops, newest first.")
    ] = 500,
) -> ReplayOut:
    """Queue a replay of the version over the newest crops the filters select (202)."""
    if session.get(PipelineVersion, pipeline_id) is None:
        raise ApiError(
            404, "unknown_pipeline", f"expected an existing pipeline version, got {pipeline_id}"
        )
    query = (
        select(Crop.id)
        .where(*filter_clauses(spec))
        .order_by(Crop.captured_at.desc(), Crop.id.desc())
        .limit(limit)
    )
    crop_pks = list(session.scalars(query))
    if not crop_pks:
        raise ApiError(422, "no_crops", "expected stored crops matching the filters, found none")
    filters = {k: _plain(v) for k, v in dataclasses.asdict(spec).items() if v is not None}
    job = ReplayJob(
        pipeline_version_id=pipeline_id,
        state="queued",
        params={"crop_pks": crop_pks, "filters": {**filters, "limit": limit}},
        total=len(crop_pks),
        created_by=caller.name,
    )
    session.add(job)
    session.commit()
    runner.submit(job.id)
    response.headers["Location"] = f"/v1/replays/{job.id}"
    return _out(job)


@router.get("/v1/replays/{job_id}", summary="A replay job: progress, then report")
def get_replay(
    job_id: Annotated[int, Path(ge=1, le=MAX_ID, description="A replay job's id.")],
    _caller: Viewer,
    session: DbSession,
) -> ReplayOut:
    """The job; poll it until ``state`` is ``done`` (or ``failed``)."""
    job = session.get(ReplayJob, job_id)
    if job is None:
        raise ApiError(404, "unknown_replay", f"expected an existing replay job, got {job_id}")
    return _out(job)


@router.get("/v1/replays", summary="List replay jobs")
def list_replays(
    _caller: Viewer,
    session: DbSession,
    pipeline_id: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="Only replays of this version.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[ReplayOut]:
    """Replay jobs, newest first."""
    query = select(ReplayJob).order_by(ReplayJob.id.desc()).limit(limit)
    if pipeline_id is not None:
        query = query.where(ReplayJob.pipeline_version_id == pipeline_id)
    return [_out(job) for job in session.scalars(query)]


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _out(job: ReplayJob) -> ReplayOut:
    params = dict(job.params or {})
    return ReplayOut(
        id=job.id,
        pipeline_version_id=job.pipeline_version_id,
        state=job.state,
        total=job.total,
        done=job.done,
        filters=dict(params.get("filters", {})),
        created_at=job.created_at,
        created_by=job.created_by,
        started_at=job.started_at,
        finished_at=job.finished_at,
        error=without_paths(job.error),
        report=job.report,
    )
