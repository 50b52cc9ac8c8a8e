"""One detector for every camera of an agent: their frames share the engine's async path.

A camera submits a frame (:meth:`DetectorService.submit`, a :class:`PendingBatch` back) and
takes its detections later, so it may keep a few frames in the engine while it decodes the
next one and tracks and crops the last one; it takes the answers in its own frame order.
:meth:`DetectorService.detect` is submit and wait in one. What the cameras share is the
engine behind :class:`DetectorService`:

* a backend with an asynchronous engine (:class:`~lensflow.shared.detectors.base.AsyncDetector`:
  OpenVINO's ``AsyncInferQueue`` with the THROUGHPUT hint) gets every camera's frames on its
  queue of infer requests, pre-processed on the camera's thread, decoded in its callback;
* any other backend gets a small pool of worker threads, as many as its
  :attr:`~lensflow.shared.detectors.base.DetectorBackend.parallelism` (LiteRT interpreters,
  ONNX Runtime runs on one session), fed in arrival order from one queue.

A camera never waits on another: its answer comes back in a slot of its own, so a camera
whose thread stops pulling results holds nothing up, a camera whose source stalls simply
submits nothing, and each camera has at most ``per_camera`` batches waiting in the service
(more is refused, and the frame skipped, rather than queued). A batch that gets no answer
within ``timeout_s`` is a :class:`~lensflow.shared.errors.DetectorError` for its camera — the
frame is skipped and counted, as for any detector failure — and no longer counts against it:
its next frame is detected as usual.

:meth:`DetectorService.replace` switches to a new backend atomically between two batches;
batches already submitted finish on the old one, which :meth:`DetectorService.retire` closes
once they are done.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence

from lensflow.shared.classifiers.base import Image
from lensflow.shared.detectors.base import (
    AsyncDetector,
    DetectionBatch,
    DetectorBackend,
    ModelInfo,
)
from lensflow.shared.errors import DetectorError

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0
"""How long a camera waits for one batch before the frame counts as a detector failure."""

DEFAULT_PER_CAMERA = 2
"""Batches one camera may have in the service at once: one inferred while it prepares the next."""


class _Work:
    """One submitted batch and, once it is done, its detections or its error."""

    __slots__ = ("camera", "done", "engine", "finish", "images", "released", "result")

    def __init__(self, images: Sequence[Image], *, camera: str, engine: _Engine) -> None:
        self.images, self.camera, self.engine = images, camera, engine
        self.result: DetectionBatch | BaseException | None = None
        self.done = threading.Event()
        self.released = False  # answered or given up on: it no longer counts (once)
        self.finish: Callable[[DetectionBatch | BaseException], None] = self._store

    def _store(self, result: DetectionBatch | BaseException) -> None:
        """Hand the answer to the camera waiting for it (if it still is)."""
        self.result = result
        self.done.set()


class _Engine:
    """A backend, the work still in it and, for a synchronous one, its worker threads."""

    def __init__(self, backend: DetectorBackend, *, name: str) -> None:
        self.backend = backend
        self.inflight = 0  # guarded by the service's lock
        self.asynchronous = isinstance(backend, AsyncDetector)
        self.jobs: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self.workers: list[threading.Thread] = []
        if not self.asynchronous:
            for index in range(max(1, backend.parallelism)):
                worker = threading.Thread(target=self._work, name=f"{name}-{index}", daemon=True)
                worker.start()
                self.workers.append(worker)

    def _work(self) -> None:
        """A worker thread: run queued batches until told to stop."""
        while (work := self.jobs.get()) is not None:
            try:
                result: DetectionBatch | BaseException = self.backend.detect(work.images)
            except Exception as err:  # handed to the camera, which decides what it means
                result = err
            work.finish(result)

    def stop_workers(self) -> None:
        """Let the workers finish what is queued, then end them."""
        for _ in self.workers:
            self.jobs.put(None)


class PendingBatch:
    """One batch in the service: :meth:`result` waits for its detections (or its error)."""

    __slots__ = ("_deadline", "_service", "_work")

    def __init__(self, service: DetectorService, work: _Work, *, deadline: float) -> None:
        """A handle on ``work``, whose answer is awaited until ``deadline`` (monotonic s)."""
        self._service, self._work, self._deadline = service, work, deadline

    @property
    def done(self) -> bool:
        """Whether the answer is there (:meth:`result` will not wait)."""
        return self._work.done.is_set()

    def result(self) -> DetectionBatch:
        """The batch's detections, waiting until ``timeout_s`` after it was submitted.

        Raises:
            DetectorError: No answer in time (the batch no longer counts against its
                camera), or the backend's own DetectorError.
            ImageError: A frame is not a BGR uint8 (H, W, 3) array.
            Exception: Whatever else the backend raised on this batch.

        """
        work = self._work
        if not work.done.wait(max(0.0, self._deadline - time.monotonic())):
            self._service._abandon(work)
            raise DetectorError(
                f"camera {work.camera or '-'}: expected detections within "
                f"{self._service.timeout_s:g} s, got none from {work.engine.backend.info.path}"
            )
        result = work.result
        if isinstance(result, BaseException):
            raise result
        assert result is not None
        return result


class DetectorService(DetectorBackend):
    """The agent's one detector, shared by its cameras; a :class:`DetectorBackend` itself."""

    def __init__(
        self,
        backend: DetectorBackend,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        per_camera: int = DEFAULT_PER_CAMERA,
    ) -> None:
        """Wrap ``backend`` (starting its worker threads when it has no async engine).

        Args:
            backend: The loaded detector; closed by :meth:`close` or :meth:`retire`.
            timeout_s: Longest wait for one batch before it is a DetectorError.
            per_camera: Most batches one camera may have in the service at once.

        """
        if timeout_s <= 0 or per_camera < 1:
            raise ValueError(
                f"timeout_s must be > 0 and per_camera >= 1, got {timeout_s}, {per_camera}"
            )
        self.timeout_s = timeout_s
        self.per_camera = per_camera
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._generation = 0
        self._engines: dict[int, _Engine] = {}  # by id(backend): every engine not yet closed
        self._engine = self._start(backend)
        self._pending: Counter[str] = Counter()  # per camera, guarded by the lock
        self._closed = False

    @property
    def backend(self) -> DetectorBackend:
        """The backend new batches go to."""
        return self._engine.backend

    @property
    def info(self) -> ModelInfo:  # type: ignore[override]
        """The current backend's model."""
        return self._engine.backend.info

    @property
    def parallelism(self) -> int:
        """How many batches the current backend works on at once."""
        return self._engine.backend.parallelism

    def client(self, camera: str) -> CameraDetector:
        """The detector one camera calls: this service, its batches counted as ``camera``'s."""
        return CameraDetector(self, camera=camera)

    def detect(self, images: Sequence[Image], *, camera: str = "") -> DetectionBatch:
        """Detect ``images`` on the shared engine; waits for this batch only.

        Raises:
            DetectorError: The backend failed, ``camera`` already has ``per_camera`` batches
                waiting, no answer came within ``timeout_s``, or the service is closed.
            ImageError: A frame is not a BGR uint8 (H, W, 3) array.

        """
        return self.submit(images, camera=camera).result()

    def submit(self, images: Sequence[Image], *, camera: str = "") -> PendingBatch:
        """Start detecting ``images`` on the shared engine; the answer comes from the handle.

        The batch counts against ``camera``'s ``per_camera`` bound until it is answered or
        its camera gives up on it (:meth:`PendingBatch.result` past ``timeout_s``). Blocks only
        while an async engine has no idle request (the frame is pre-processed here then).

        Raises:
            DetectorError: ``camera`` already has ``per_camera`` batches waiting, or the
                service is closed. What goes wrong with the batch itself (a refused request,
                a frame that is not an image, the backend's errors) comes from the handle.

        """
        work = self._submit(images, camera=camera)
        return PendingBatch(self, work, deadline=time.monotonic() + self.timeout_s)

    def _submit(self, images: Sequence[Image], *, camera: str) -> _Work:
        """Queue one batch on the current engine (or start it on the async one)."""
        with self._lock:
            if self._closed:
                raise DetectorError("the detector service is closed")
            if self._pending[camera] >= self.per_camera:
                raise DetectorError(
                    f"camera {camera or '-'}: {self._pending[camera]} batch(es) still in the "
                    f"detector (at most {self.per_camera}); frame skipped"
                )
            engine = self._engine
            engine.inflight += 1
            self._pending[camera] += 1
        work = _Work(images, camera=camera, engine=engine)
        work.finish = self._finisher(work)
        if not engine.asynchronous:
            engine.jobs.put(work)
            return work
        try:
            engine.backend.submit(images, done=work.finish)  # type: ignore[attr-defined]
        except Exception as err:  # refused before it started: nothing else will finish it
            work.finish(err)  # its camera gets the error from the handle, in its turn
        return work

    def _finisher(self, work: _Work) -> Callable[[DetectionBatch | BaseException], None]:
        """What ends ``work``: its counts released, then its answer handed over."""
        store = work.finish

        def finish(result: DetectionBatch | BaseException) -> None:
            with self._lock:
                self._release(work)
            store(result)

        return finish

    def _abandon(self, work: _Work) -> None:
        """Stop counting a batch its camera gave up on.

        An engine may never answer a batch (OpenVINO calls no callback for a request that
        failed): counted for ever, it would keep its camera from detecting again.
        """
        with self._lock:
            self._release(work)

    def _release(self, work: _Work) -> None:
        """Uncount a finished or abandoned batch, once (the lock is held)."""
        if work.released:  # its answer and its camera's time-out raced: counted off already
            return
        work.released = True
        work.engine.inflight -= 1
        self._pending[work.camera] -= 1
        if not self._pending[work.camera]:
            del self._pending[work.camera]
        self._drained.notify_all()

    def replace(self, backend: DetectorBackend) -> DetectorBackend:
        """Send new batches to ``backend`` from now on; returns the old one (still running).

        Batches already submitted finish on the old backend: pass it to :meth:`retire`.
        """
        new = self._start(backend)
        with self._lock:
            old, self._engine = self._engine, new
        return old.backend

    def retire(self, backend: DetectorBackend, *, timeout_s: float) -> None:
        """Close a replaced backend once the batches still in it are done (or after timeout_s)."""
        engine = self._engines.pop(id(backend), None)
        if engine is None:
            backend.close()
            return
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while engine.inflight and (left := deadline - time.monotonic()) > 0:
                self._drained.wait(left)
            left_over = engine.inflight
        if left_over:
            logger.warning(
                "detector %s: closed with %d batch(es) still in it", backend.info.path, left_over
            )
        engine.stop_workers()
        backend.close()

    def close(self) -> None:
        """Refuse new batches, let the ones in flight finish (up to timeout_s), close it."""
        with self._lock:
            self._closed = True
            engine = self._engine
        self.retire(engine.backend, timeout_s=self.timeout_s)

    def _start(self, backend: DetectorBackend) -> _Engine:
        """Wrap a backend in an engine (its workers started) and keep it until retired."""
        self._generation += 1
        engine = _Engine(backend, name=f"detector{self._generation}")
        self._engines[id(backend)] = engine
        return engine


class CameraDetector(DetectorBackend):
    """One camera's view of the service: its batches counted against its own bound."""

    def __init__(self, service: DetectorService, *, camera: str) -> None:
        """Bind ``camera``'s name to the shared ``service``."""
        self.service, self.camera = service, camera

    @property
    def info(self) -> ModelInfo:  # type: ignore[override]
        """The service's current model."""
        return self.service.info

    @property
    def per_camera(self) -> int:
        """Most batches this camera may have in the service at once."""
        return self.service.per_camera

    def detect(self, images: Sequence[Image]) -> DetectionBatch:
        """Detect on the shared engine as this camera (see :meth:`DetectorService.detect`)."""
        return self.service.submit(images, camera=self.camera).result()

    def submit(self, images: Sequence[Image]) -> PendingBatch:
        """Start detecting as this camera (see :meth:`DetectorService.submit`)."""
        return self.service.submit(images, camera=self.camera)
