"""Retrying the worker's storage writes and DAG runs: which failures pass, and the backoff.

A transient failure (the database down or locked, the disk full) is retried with exponential
backoff until it succeeds or the worker stops; any other failure is the data refused, and is
returned at once. An inference service that is down (:class:`ServiceUnavailableError`) is
retried the same way: the batch waits for it, its acks held.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import tenacity
from sqlalchemy import exc as sa_exc

from lensflow.cloud.storage import StorageError
from lensflow.cloud.worker.metrics import WorkerMetrics
from lensflow.shared.errors import ServiceUnavailableError

logger = logging.getLogger(__name__)

_Written = TypeVar("_Written")
_Ran = TypeVar("_Ran")

_RETRY_FIRST_S = 0.2
_RETRY_MAX_S = 10.0
_TRANSIENT_CAUSES = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError, OSError)


def is_transient(err: StorageError) -> bool:
    """Whether a storage failure may pass by itself (database down or locked, disk full)."""
    return isinstance(err.__cause__, _TRANSIENT_CAUSES)


def retry_storage(
    write: Callable[[], _Written],
    *,
    stopping: threading.Event,
    before_sleep: Callable[[tenacity.RetryCallState], None],
) -> _Written | StorageError | None:
    """Call ``write`` until it succeeds; retry transient storage failures with backoff.

    Args:
        write: The storage write.
        stopping: Set when the worker stops: it ends the retries (and the pause between two).
        before_sleep: Called before each pause (to count and log the retry).

    Returns:
        What ``write`` returned; the StorageError if the failure is not transient (the
        data is refused, not the database down); None if stopping while it still fails.

    """

    def pause(seconds: float) -> None:  # ends early when the worker stops
        stopping.wait(seconds)

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(
            lambda err: isinstance(err, StorageError) and is_transient(err)
        ),
        wait=tenacity.wait_exponential(multiplier=_RETRY_FIRST_S, max=_RETRY_MAX_S),
        stop=tenacity.stop_when_event_set(stopping),
        sleep=pause,
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return retrying(write)
    except StorageError as err:
        return None if is_transient(err) else err


def retry_service(
    run: Callable[[], _Ran], *, stopping: threading.Event, metrics: WorkerMetrics, what: str
) -> _Ran | None:
    """Call ``run`` until no inference service it needs is unavailable; back off in between.

    Each retry is counted; an outage is logged once when it starts and once when it ends.

    Args:
        run: The DAG run.
        stopping: Set when the worker stops: it ends the retries (and the pause between two).
        metrics: Where the retries and outages are counted.
        what: Names the worker and the batch in the log.

    Returns:
        What ``run`` returned; None if stopping while the service is still unavailable.

    """
    outage_since: list[float] = []  # when this outage began, once it has

    def retrying_soon(state: tenacity.RetryCallState) -> None:
        metrics.service_retries.inc()
        if not outage_since:  # one warning per outage, not per retry
            outage_since.append(time.monotonic())
            metrics.service_outages.inc()
            error = state.outcome.exception() if state.outcome else None
            logger.warning(
                "%s: inference service unavailable, holding the batch and retrying with "
                "backoff: %s",
                *(what, error),
            )

    def pause(seconds: float) -> None:  # ends early when the worker stops
        stopping.wait(seconds)

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(ServiceUnavailableError),
        wait=tenacity.wait_exponential(multiplier=_RETRY_FIRST_S, max=_RETRY_MAX_S),
        stop=tenacity.stop_when_event_set(stopping),
        sleep=pause,
        before_sleep=retrying_soon,
        reraise=True,
    )
    try:
        result = retrying(run)
    except ServiceUnavailableError:
        return None
    if outage_since:
        waited = time.monotonic() - outage_since[0]
        logger.info("%s: inference service back after %.1f s", what, waited)
    return result
