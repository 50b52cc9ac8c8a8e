"""What a worker sets up before its loop: its intake, the version it runs, its batch window.

The version it runs is the active one in the database (see
:mod:`lensflow.cloud.worker.versions`); the local ``pipeline:`` file seeds the first version
of its name, and is what the worker falls back to when the active version does not load
here (reported, and tried again later).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity
from sqlalchemy import Engine
from sqlalchemy import exc as sa_exc

from lensflow.cloud.worker.intake import Intake
from lensflow.cloud.worker.metrics import WorkerMetrics
from lensflow.cloud.worker.versions import (
    PipelineText,
    VersionBook,
    VersionFollower,
    WorkerStatus,
    compile_text,
    describe_intake,
)
from lensflow.shared.classifiers.registry import PluginRegistry
from lensflow.shared.config.cloud import CloudConfig
from lensflow.shared.config.cloud import Intake as IntakeConfig
from lensflow.shared.dag.compiler import CompiledPipeline
from lensflow.shared.dag.engine import Pipeline

logger = logging.getLogger(__name__)

_Read = TypeVar("_Read")


def build_intake(config: IntakeConfig, *, metrics: WorkerMetrics | None = None) -> Intake:
    """Create the intake a config's ``intake`` section describes (imported lazily).

    Args:
        config: ``intake`` of the cloud config (``type: mqtt`` or ``type: amqp``).
        metrics: Where the intake counts connections and broker drops.

    Returns:
        The intake, not started.

    """
    if config.type == "mqtt":
        from lensflow.cloud.worker.intake_mqtt import MqttIntake

        return MqttIntake(config, metrics=metrics)
    from lensflow.cloud.worker.intake_amqp import AmqpIntake

    return AmqpIntake(config, metrics=metrics)


def batch_window(compiled: CompiledPipeline) -> tuple[int, float]:
    """The worker's batch size and wait: the largest ``batch`` of any enabled node.

    Each node runs once per worker batch, so the batch must be as large as the largest node
    batch; the wait is the longest a node accepts for its batch to fill.

    Returns:
        ``(max_batch, max_wait_ms)``.

    """
    batches = [node.config.batch for node in compiled.nodes if node.config.enabled]
    if not batches:
        return 1, 0.0
    return max(b.max_size for b in batches), max(b.max_wait_ms for b in batches)


def fitted_window(
    compiled: CompiledPipeline, window: int, max_batch: int | None, max_wait_ms: float | None
) -> tuple[int, float]:
    """Batch size and wait of a pipeline (or the overrides), within the intake's window."""
    size, wait = batch_window(compiled)
    size, wait = max_batch or size, wait if max_wait_ms is None else max_wait_ms
    if size > window:
        logger.warning(
            "batch of %d cannot fill through an in-flight window of %d: batching %d",
            size,
            window,
            window,
        )
        size = window
    return size, wait


def load_version(version: PipelineText, *, registry: PluginRegistry) -> Pipeline:
    """Compile, instantiate and warm a version: loaded completely, or not at all.

    Raises:
        Exception: Whatever compiling, loading a model or the first inference raised.

    """
    pipeline = compile_text(version, registry=registry)
    pipeline.warmup()
    return pipeline


@dataclass(frozen=True)
class RunningVersion:
    """The pipeline a worker starts with, and the follower that keeps it current."""

    pipeline: Pipeline
    version: PipelineText
    follower: VersionFollower


def open_versions(
    *, config: CloudConfig, engine: Engine, registry: PluginRegistry, intake: Intake
) -> RunningVersion:
    """Seed the first version from the local file, load the active one, set up the follower.

    Raises:
        ConfigError: The pipeline to run (the local file, when no other version is active
            or the active one does not load) is invalid.
        OSError: The local pipeline file cannot be read.

    """
    local = PipelineText.of_file(config.pipeline)
    book = VersionBook(engine)
    actor = f"worker {intake.name} (seed: {local.source})"
    active = _retrying_startup(lambda: book.seed(local, actor=actor)) or local
    failure, pipeline, running = "", None, active
    if active.sha256 != local.sha256:
        try:
            pipeline = load_version(active, registry=registry)
        except Exception as err:  # run what this worker can, and say why
            failure = f"{active.source} ({active.sha256[:12]}) did not load: {err}"
            logger.error("pipeline %s: %s; running %s", local.name, failure, local.source)
            running = local
        else:
            logger.info(
                "pipeline %s: running the active %s; %s only seeded the first version",
                local.name,
                active.source,
                local.source,
            )
    if pipeline is None:
        pipeline = compile_text(local, registry=registry)  # warmed up when the worker runs
    status = WorkerStatus.starting(intake.name, describe_intake(config.intake), running)
    follower = VersionFollower(
        book=book,
        running=running,
        status=status,
        load=lambda version: load_version(version, registry=registry),
        poll_s=config.worker.version_poll_s,
        retry_s=config.worker.version_retry_s,
    )
    if failure:
        follower.failed(active, failure)
    return RunningVersion(pipeline, running, follower)


def _retrying_startup(read: Callable[[], _Read]) -> _Read:
    """A startup read of the database; a transient failure is retried a few times."""
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(sa_exc.OperationalError),
        wait=tenacity.wait_exponential(multiplier=0.2, max=5.0),
        stop=tenacity.stop_after_attempt(5),
        reraise=True,
    )
    return retrying(read)
