"""Replay jobs run in a child process, outside the API's event loop and threads.

The API owns one :class:`ReplayRunner`: a thread that takes queued jobs one at a time and
runs each in a fresh ``spawn`` child process (no inherited locks or sockets), so a replay's
model loads and inference neither block requests nor share the GIL with them. Each job writes
its progress and report into its ``replay_jobs`` row, which the API reads. A child that dies
(killed, out of memory) fails its job with the reason; when the API stops, the running child
is terminated and its job failed, and queued jobs stay queued.

When the API starts, jobs left ``queued`` are submitted again and jobs left ``running`` by a
process that is gone are marked failed.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import socket
import threading
from datetime import UTC, datetime
from multiprocessing.process import BaseProcess

from sqlalchemy import Engine, select

from lensflow.cloud.replay.job import run_job
from lensflow.cloud.storage import create_engine_for, open_crop_store
from lensflow.cloud.storage.db import session_factory
from lensflow.cloud.storage.models_loop import ReplayJob
from lensflow.shared.classifiers.registry import PluginRegistry
from lensflow.shared.config.cloud import CropStoreConfig

logger = logging.getLogger(__name__)

_STOP_WAIT_S = 10.0
"""How long a stopping API waits for a terminated child."""


def _child(job_id: int, db_url: str, crop_store: CropStoreConfig, registry: PluginRegistry) -> None:
    """The child process's side: open the database and run the job."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    engine = create_engine_for(db_url)
    try:
        runner = f"{socket.gethostname()}:{os.getpid()}"
        crops = open_crop_store(crop_store)
        run_job(job_id, engine=engine, crops=crops, registry=registry, runner=runner)
    finally:
        engine.dispose()


class ReplayRunner:
    """Runs replay jobs one at a time, each in a spawned child process.

    Args:
        db_url: The results database (the child opens its own engine).
        crop_store: Where the crops are (``crop_store:`` of the cloud config).
        registry: Plugins and model store the candidate versions compile with.
        engine: The API's engine on the same database, to fail jobs whose child died.

    """

    def __init__(
        self,
        *,
        db_url: str,
        crop_store: CropStoreConfig,
        registry: PluginRegistry,
        engine: Engine,
    ) -> None:
        self._db_url = db_url
        self._crop_store = crop_store
        self._registry = registry.with_heads(None)  # the child loads heads from the database
        self._sessions = session_factory(engine)
        self._jobs: queue.Queue[int] = queue.Queue()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._child: BaseProcess | None = None
        self._thread: threading.Thread | None = None

    def submit(self, job_id: int) -> None:
        """Queue job ``job_id`` (already stored as ``queued``)."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stopping.clear()
                self._thread = threading.Thread(target=self._loop, name="replays", daemon=True)
                self._thread.start()
        self._jobs.put(job_id)

    def recover(self) -> None:
        """Resubmit queued jobs; fail running jobs whose process is gone (an API restart)."""
        with self._sessions() as session:
            jobs = session.scalars(
                select(ReplayJob).where(ReplayJob.state.in_(("queued", "running")))
            ).all()
            queued = [job.id for job in jobs if job.state == "queued"]
            for job in jobs:
                if job.state == "running" and not _alive(job.runner):
                    job.state, job.finished_at = "failed", datetime.now(UTC)
                    job.error = "the process running it stopped before it finished; replay again"
            session.commit()
        for job_id in queued:
            self.submit(job_id)

    def close(self) -> None:
        """Stop: the running child is terminated (its job failed); queued jobs stay queued."""
        self._stopping.set()
        with self._lock:
            child, thread = self._child, self._thread
        if child is not None and child.is_alive():
            child.terminate()
        if thread is not None:
            thread.join(_STOP_WAIT_S)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                job_id = self._jobs.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._run(job_id)
            except Exception:  # the runner must outlive any surprise
                logger.exception("replay job %s could not be run", job_id)
                self._fail(job_id, "the replay could not be started; see the API log")

    def _run(self, job_id: int) -> None:
        context = multiprocessing.get_context("spawn")
        child = context.Process(
            target=_child,
            args=(job_id, self._db_url, self._crop_store, self._registry),
            name=f"replay-{job_id}",
            daemon=True,
        )
        with self._lock:
            self._child = child
        child.start()
        child.join()
        with self._lock:
            self._child = None
        if child.exitcode != 0:
            why = "the API stopped" if self._stopping.is_set() else f"exit code {child.exitcode}"
            logger.error("replay job %s: its process ended (%s)", job_id, why)
            self._fail(job_id, f"the process running it ended ({why}); replay again")

    def _fail(self, job_id: int, reason: str) -> None:
        with self._sessions() as session:
            job = session.get(ReplayJob, job_id)
            if job is not None and job.state in ("queued", "running"):
                job.state, job.error, job.finished_at = "failed", reason, datetime.now(UTC)
                session.commit()


def _alive(runner: str) -> bool:
    """Whether ``host:pid`` may still run: a live pid of this host, or another host's."""
    host, _, pid = runner.rpartition(":")
    if not runner or not pid.isdigit():
        return False
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
