"""Run one replay job: a candidate version over the crops chosen when the job was created.

The crops are read from the crop store and the results database as the worker stored them;
the candidate runs on them in batches exactly as a worker would (same DAG inputs, same label
extraction), and the per-node comparison (:mod:`lensflow.cloud.replay.compare`) becomes the
job's report. Nothing the candidate computes is written as results; only the job row changes
(state, progress, report).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import selectinload

from lensflow.cloud.heads.store import DbHeadStore
from lensflow.cloud.processing import MAX_CROP_PIXELS
from lensflow.cloud.replay.compare import Comparison, Side, candidate_sides
from lensflow.cloud.storage import CropStore, StorageError
from lensflow.cloud.storage.db import session_factory
from lensflow.cloud.storage.models import Crop, PipelineVersion
from lensflow.cloud.storage.models_loop import ReplayJob
from lensflow.cloud.worker.versions import PipelineText, compile_text
from lensflow.shared.classifiers.base import Image
from lensflow.shared.classifiers.registry import PluginRegistry
from lensflow.shared.dag.engine import Pipeline
from lensflow.shared.errors import ImageError, ServiceUnavailableError
from lensflow.shared.images import decode_image
from lensflow.shared.protocol.messages import Detection

logger = logging.getLogger(__name__)

BATCH = 16
"""Crops run through the candidate at once."""


def dag_inputs_of(crop: Crop) -> dict[str, Any]:
    """What the DAG saw as ``context['input']`` for a stored crop (as the worker built it)."""
    detection = Detection(
        class_name=crop.class_name,
        class_id=crop.class_id,
        score=crop.score,
        box=(crop.box_x1, crop.box_y1, crop.box_x2, crop.box_y2),
        frame_width=crop.frame_width,
        frame_height=crop.frame_height,
    )
    return {
        "detection": detection.model_dump(),
        "site": crop.site,
        "camera": crop.camera,
        "crop_id": crop.crop_id,
        "track_id": crop.track_id,
        "attributes": dict(crop.attributes or {}),
    }


def stored_sides(crop: Crop) -> dict[str, Side]:
    """Each node's stored outcome for a crop."""
    return {row.node: Side(row.status, row.label) for row in crop.results}


def run_job(
    job_id: int, *, engine: Engine, crops: CropStore, registry: PluginRegistry, runner: str
) -> None:
    """Run job ``job_id`` to its end: ``done`` with a report, or ``failed`` with the reason.

    Args:
        job_id: A ``replay_jobs`` row in state ``queued``.
        engine: The results database.
        crops: The crop store.
        registry: Plugins and the model store; heads are loaded from ``engine``.
        runner: Who runs it (``host:pid``), recorded on the job.

    """
    sessions = session_factory(engine)
    with sessions() as session:
        job = session.get(ReplayJob, job_id)
        if job is None or job.state != "queued":
            logger.warning("replay job %s is not queued (%s); not run", job_id, job and job.state)
            return
        version = session.get(PipelineVersion, job.pipeline_version_id)
        if version is None:
            _finish(sessions, job_id, state="failed", error="its pipeline version was deleted")
            return
        candidate = PipelineText(
            version.name,
            version.yaml_text,
            version.sha256,
            version.id,
            f"pipeline version {version.id}",
        )
        crop_pks = [int(pk) for pk in job.params.get("crop_pks", [])]
        job.state, job.started_at, job.runner = "running", datetime.now(UTC), runner[:256]
        job.total = len(crop_pks)
        session.commit()
    started = time.perf_counter()
    try:
        pipeline = compile_text(candidate, registry=registry.with_heads(DbHeadStore(engine)))
        report = _replay(pipeline, crop_pks, sessions=sessions, crops=crops, job_id=job_id)
    except ServiceUnavailableError as err:  # not the crops' fault: say so, and how to go on
        logger.warning("replay job %s: inference service unavailable: %s", job_id, err)
        reason = " ".join(str(err).split()) or type(err).__name__
        why = f"an inference service the pipeline needs is unavailable ({reason}); replay again"
        _finish(sessions, job_id, state="failed", error=f"{why} once it is back")
        return
    except Exception as err:  # the job fails, with the reason; the process goes on
        logger.exception("replay job %s failed", job_id)
        _finish(sessions, job_id, state="failed", error=" ".join(str(err).split()) or repr(err))
        return
    report |= {
        "pipeline_version_id": candidate.version_id,
        "sha256": candidate.sha256,
        "seconds": round(time.perf_counter() - started, 3),
    }
    _finish(sessions, job_id, state="done", report=report)
    logger.info(
        "replay job %s done: %d crops in %.1f s", job_id, report["crops"], report["seconds"]
    )


def _replay(
    pipeline: Pipeline, crop_pks: Sequence[int], *, sessions: Any, crops: CropStore, job_id: int
) -> dict[str, Any]:
    comparison = Comparison()
    unreadable: list[str] = []
    for first in range(0, len(crop_pks), BATCH):
        chunk = crop_pks[first : first + BATCH]
        with sessions() as session:
            rows = session.scalars(
                select(Crop).where(Crop.id.in_(chunk)).options(selectinload(Crop.results))
            ).all()
            order = {pk: i for i, pk in enumerate(chunk)}
            rows = sorted(rows, key=lambda row: order[row.id])
            images: list[Image] = []
            kept: list[Crop] = []
            for row in rows:
                image = _image(row, crops)
                if image is None:
                    unreadable.append(row.crop_id)
                else:
                    images.append(image)
                    kept.append(row)
            results = (
                pipeline.run_batch(images, inputs=[dag_inputs_of(r) for r in kept]) if kept else []
            )
            for row, result in zip(kept, results, strict=True):
                comparison.add(
                    row.crop_id,
                    old=stored_sides(row),
                    new=candidate_sides(result),
                    old_version=row.pipeline_version,
                )
            job = session.get(ReplayJob, job_id)
            if job is not None:
                job.done = first + len(chunk)
                session.commit()
    report = comparison.as_dict(candidate_nodes=[node.name for node in pipeline.compiled.nodes])
    report["unreadable"] = {"count": len(unreadable), "examples": unreadable[:10]}
    return report


def _image(crop: Crop, crops: CropStore) -> Image | None:
    """A stored crop's pixels; None when its JPEG is gone or does not decode (counted)."""
    try:
        jpeg = crops.get(crop.jpeg_sha256)
        return decode_image(jpeg, what=f"crop {crop.crop_id} JPEG", max_pixels=MAX_CROP_PIXELS)
    except (StorageError, ImageError, OSError) as err:
        logger.warning("replay: crop %s skipped: %s", crop.crop_id, err)
        return None


def _finish(
    sessions: Any, job_id: int, *, state: str, report: dict[str, Any] | None = None, error: str = ""
) -> None:
    with sessions() as session:
        job = session.get(ReplayJob, job_id)
        if job is None:
            return
        job.state, job.report, job.error = state, report, error[:4000]
        job.finished_at = datetime.now(UTC)
        if state == "done":
            job.done = job.total
        session.commit()
