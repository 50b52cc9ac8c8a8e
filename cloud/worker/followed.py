"""A pipeline that follows the active version of its name, for processes that are not workers.

The API's HTTP ingest runs the DAG itself; like a worker it runs the active version of its
pipeline name (the local file only seeds it). It checks the database at most every
``poll_s`` when an upload arrives, and a version that does not load is logged and not applied.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from lensflow.cloud.heads.store import DbHeadStore
from lensflow.cloud.worker.versions import PipelineText, VersionBook, compile_text
from lensflow.shared.classifiers.registry import PluginRegistry, default_registry
from lensflow.shared.dag.engine import Pipeline
from lensflow.shared.errors import ServiceUnavailableError

logger = logging.getLogger(__name__)


class FollowedPipeline:
    """The active version of a local pipeline file's name, loaded and kept current.

    Args:
        local_path: The local pipeline file (its name; the version run when none is active).
        engine: The results database.
        registry: Plugins and model store; heads load from ``engine``.
        poll_s: Least time between two looks at the active version.

    """

    def __init__(
        self, local_path: str, *, engine: Engine, registry: PluginRegistry | None, poll_s: float
    ) -> None:
        self._local = local_path
        self._book = VersionBook(engine)
        self._registry = (registry or default_registry()).with_heads(DbHeadStore(engine))
        self._poll_s = poll_s
        self._checked = 0.0
        self.version: PipelineText | None = None

    def load(self) -> tuple[Pipeline, PipelineText]:
        """The version to run now: the active one if it loads, else the local file.

        Raises:
            ConfigError: Neither loads (the local file's errors).
            ServiceUnavailableError: The active version needs a server (Triton) that is down.
            OSError: The local file cannot be read.

        """
        local = PipelineText.of_file(self._local)
        self._checked = time.monotonic()
        active = self._active(local.name)
        if active is not None and active.sha256 != local.sha256:
            try:
                return self._take(active)
            except ServiceUnavailableError:
                raise  # a server it needs is down: not a reason to run another version
            except Exception as err:  # run the local file, say why
                logger.error("%s did not load: %s; running %s", active.source, err, local.source)
        return self._take(local)

    def newer(self) -> tuple[Pipeline, PipelineText] | None:
        """A newly activated version, loaded; None if unchanged, not due, or it does not load."""
        if self.version is None or time.monotonic() - self._checked < self._poll_s:
            return None
        self._checked = time.monotonic()
        active = self._active(self.version.name)
        if active is None or active.sha256 == self.version.sha256:
            return None
        try:
            return self._take(active)
        except Exception as err:  # keep the running version
            logger.error("%s did not load: %s; keeping %s", active.source, err, self.version.source)
            return None

    def _active(self, name: str) -> PipelineText | None:
        try:
            return self._book.active(name)
        except SQLAlchemyError as err:
            logger.warning("pipeline %s: cannot read the active version: %s", name, err)
            return None

    def _take(self, version: PipelineText) -> tuple[Pipeline, PipelineText]:
        pipeline = compile_text(version, registry=self._registry)
        pipeline.warmup()
        self.version = version
        logger.info(
            "pipeline %s: running %s (%s)", version.name, version.source, version.sha256[:12]
        )
        return pipeline, version
