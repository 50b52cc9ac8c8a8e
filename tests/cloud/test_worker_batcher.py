"""Batcher specs (up to max_batch or max_wait_ms, whichever first; a bounded queue) and
which storage failures the worker retries."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import exc as sa_exc

from lensflow.cloud.storage import StorageError
from lensflow.cloud.worker.batcher import Batcher
from lensflow.cloud.worker.retry import is_transient


def test_a_full_batch_is_handed_out_at_once() -> None:
    # given 10 items queued and batches of 4 that may wait 5 s
    batcher: Batcher[int] = Batcher(max_batch=4, max_wait_ms=5_000, capacity=16)
    for item in range(10):
        assert batcher.put(item)

    # when batches are taken, then they are full, in order, without waiting
    start = time.monotonic()
    assert batcher.next_batch() == [0, 1, 2, 3]
    assert batcher.next_batch() == [4, 5, 6, 7]
    assert time.monotonic() - start < 1.0


def test_a_partial_batch_is_handed_out_when_its_wait_is_over() -> None:
    # given 3 items and batches of 8 that wait at most 50 ms
    batcher: Batcher[int] = Batcher(max_batch=8, max_wait_ms=50, capacity=16)
    for item in range(3):
        batcher.put(item)

    # when a batch is taken, then it holds the 3 after about 50 ms
    start = time.monotonic()
    assert batcher.next_batch() == [0, 1, 2]
    assert 0.04 <= time.monotonic() - start < 1.0


def test_items_arriving_during_the_wait_join_the_batch() -> None:
    # given a batch started by one item
    batcher: Batcher[int] = Batcher(max_batch=3, max_wait_ms=2_000, capacity=8)
    batcher.put(0)

    # when two more arrive 50 ms later
    threading.Timer(0.05, lambda: [batcher.put(1), batcher.put(2)]).start()

    # then the batch is handed out as soon as it is full, well before its wait is over
    start = time.monotonic()
    assert batcher.next_batch() == [0, 1, 2]
    assert time.monotonic() - start < 1.0


def test_no_item_gives_an_empty_batch_after_the_idle_timeout() -> None:
    batcher: Batcher[int] = Batcher(max_batch=4, max_wait_ms=10, capacity=4)
    assert batcher.next_batch(idle_timeout_s=0.05) == []


def test_put_blocks_while_the_queue_is_full_and_close_releases_it() -> None:
    # given a full queue
    batcher: Batcher[int] = Batcher(max_batch=2, max_wait_ms=0, capacity=2)
    batcher.put(0)
    batcher.put(1)

    # when a third put is made, then it blocks (backpressure on the intake's thread)
    results: list[bool] = []
    putter = threading.Thread(target=lambda: results.append(batcher.put(2)))
    putter.start()
    putter.join(0.3)
    assert putter.is_alive()

    # and taking a batch makes room for it
    assert batcher.next_batch() == [0, 1]
    putter.join(2.0)
    assert results == [True]

    # and once closed, a put that would block gives up (the broker keeps the message)
    batcher.put(3)
    batcher.close()
    assert batcher.put(4) is False


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"max_batch": 0, "max_wait_ms": 10, "capacity": 4}, "max_batch=0"),  # empty batches
        ({"max_batch": 4, "max_wait_ms": -1, "capacity": 4}, "max_wait_ms=-1"),  # negative wait
        ({"max_batch": 8, "max_wait_ms": 10, "capacity": 4}, "capacity=4"),  # can never fill
    ],
)
def test_impossible_settings_are_refused(kwargs: dict[str, int], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        Batcher(**kwargs)


def storage_error(cause: BaseException | None) -> StorageError:
    """A StorageError as ``raise StorageError(...) from cause`` makes it."""
    err = StorageError("could not save crop c1")
    err.__cause__ = cause
    return err


@pytest.mark.parametrize(
    ("cause", "transient"),
    [
        (OSError(28, "No space left on device"), True),  # disk full: wait, then retry
        (sa_exc.OperationalError("INSERT", {}, Exception("database is locked")), True),
        (sa_exc.IntegrityError("INSERT", {}, Exception("CHECK failed")), False),  # bad data
        (None, False),  # refused by the store itself: the data is at fault
    ],
)
def test_only_database_or_disk_outages_are_retried(
    cause: BaseException | None, transient: bool
) -> None:
    assert is_transient(storage_error(cause)) is transient
