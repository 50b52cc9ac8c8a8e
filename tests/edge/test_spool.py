"""The on-disk spool: FIFO, bounded drop-oldest, persistence, exclusion, thread safety."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from lensflow.edge.spool import Spool, SpoolError

TOPIC = "lensflow/v1/site/cam/crops"


def open_spool(path: Path, **bounds: int | None) -> Spool:
    bounds.setdefault("max_bytes", 1_000_000)
    return Spool(path, **bounds)  # type: ignore[arg-type]


def put_many(spool: Spool, count: int, *, size: int = 10, start: int = 0) -> list[int]:
    return [
        spool.put(TOPIC, bytes([i % 256]) * size, key=f"k{i}") for i in range(start, start + count)
    ]


def test_peek_returns_oldest_first_and_keeps_rows(tmp_path: Path) -> None:
    spool = open_spool(tmp_path / "s.db")
    ids = put_many(spool, 5)

    first = spool.peek(3)
    again = spool.peek(3)

    assert [m.id for m in first] == ids[:3]
    assert [m.key for m in first] == ["k0", "k1", "k2"]
    assert first == again
    assert len(spool) == 5


def test_message_fields_round_trip(tmp_path: Path) -> None:
    spool = open_spool(tmp_path / "s.db")
    row_id = spool.put(TOPIC, b"\x00\xffjpeg", key="crop-1")

    (message,) = spool.peek(1)

    assert (message.id, message.topic, message.payload, message.key) == (
        row_id,
        TOPIC,
        b"\x00\xffjpeg",
        "crop-1",
    )
    assert message.attempts == 0
    assert message.created_at > 0


def test_remove_deletes_one_row_and_its_bytes(tmp_path: Path) -> None:
    spool = open_spool(tmp_path / "s.db")
    ids = put_many(spool, 3)
    before = spool.size_bytes

    assert spool.remove(ids[1]) is True
    assert spool.remove(ids[1]) is False  # already gone: a late duplicate PUBACK

    assert [m.id for m in spool.peek(10)] == [ids[0], ids[2]]
    assert spool.size_bytes == before * 2 // 3


def test_peek_skips_excluded_ids(tmp_path: Path) -> None:
    spool = open_spool(tmp_path / "s.db")
    ids = put_many(spool, 6)

    got = spool.peek(3, exclude={ids[0], ids[2]})

    assert [m.id for m in got] == [ids[1], ids[3], ids[4]]


def test_mark_attempted_counts_attempts(tmp_path: Path) -> None:
    spool = open_spool(tmp_path / "s.db")
    ids = put_many(spool, 2)

    spool.mark_attempted([ids[0]])
    spool.mark_attempted([ids[0], ids[1]])

    assert [m.attempts for m in spool.peek(2)] == [2, 1]


@pytest.mark.parametrize(
    ("bounds", "puts", "kept"),
    [
        # byte bound: each message is 10 payload + 26 topic + 2 key = 38 bytes; 4 fit in 160
        ({"max_bytes": 160}, 6, 4),
        # message bound: only the count matters
        ({"max_bytes": 1_000_000, "max_messages": 3}, 5, 3),
    ],
)
def test_full_spool_drops_oldest_and_counts(
    tmp_path: Path, bounds: dict[str, int], puts: int, kept: int
) -> None:
    spool = open_spool(tmp_path / "s.db", **bounds)

    put_many(spool, puts)

    assert len(spool) == kept
    assert spool.dropped == puts - kept
    assert [m.key for m in spool.peek(10)] == [f"k{i}" for i in range(puts - kept, puts)]


def test_message_larger_than_the_spool_is_refused(tmp_path: Path) -> None:
    spool = open_spool(tmp_path / "s.db", max_bytes=100)

    with pytest.raises(SpoolError, match="more than the spool's max_bytes 100"):
        spool.put(TOPIC, b"x" * 200, key="big")
    assert len(spool) == 0


def test_rows_and_drop_count_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    spool = open_spool(path, max_bytes=1_000_000, max_messages=3)
    put_many(spool, 5)
    spool.close()

    reopened = open_spool(path, max_bytes=1_000_000, max_messages=3)

    assert [m.key for m in reopened.peek(10)] == ["k2", "k3", "k4"]
    assert reopened.dropped == 2
    assert reopened.size_bytes == 3 * 38


def test_ids_are_never_reused_after_remove_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    spool = open_spool(path)
    last = put_many(spool, 2)[-1]
    spool.remove(last)
    spool.close()

    assert open_spool(path).put(TOPIC, b"x", key="new") > last


def test_a_put_survives_sigkill_of_the_process(tmp_path: Path) -> None:
    # given a process that puts 50 messages and then SIGKILLs itself (no close, no checkpoint)
    path = tmp_path / "s.db"
    script = textwrap.dedent(f"""
        import os, signal
        from lensflow.edge.spool import Spool
        spool = Spool({str(path)!r}, max_bytes=10_000_000)
        for i in range(50):
            spool.put("t", b"p" * 1000, key=f"k{{i}}")
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    result = subprocess.run([sys.executable, "-c", script], check=False, timeout=30)
    assert result.returncode == -9

    # then every put is in the file
    spool = open_spool(path)
    assert [m.key for m in spool.peek(100)] == [f"k{i}" for i in range(50)]


def test_corrupt_file_is_moved_aside_and_spool_starts_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"this is not an sqlite database" * 100)

    spool = open_spool(path)

    assert len(spool) == 0
    aside = list(tmp_path.glob("s.db.corrupt-*"))
    assert len(aside) == 1
    assert aside[0].read_bytes().startswith(b"this is not")
    assert "corrupt" in caplog.text


def test_corrupt_file_raises_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"garbage" * 1000)

    with pytest.raises(SpoolError, match=r"s\.db is not a readable SQLite database"):
        Spool(path, max_bytes=1_000_000, on_corrupt="raise")


def test_a_database_that_is_not_a_spool_is_refused(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE messages (something TEXT)")

    with pytest.raises(SpoolError, match="expected .* to be a lensflow spool"):
        open_spool(path)


def test_concurrent_puts_and_removes_keep_counts_consistent(tmp_path: Path) -> None:
    spool = open_spool(tmp_path / "s.db", max_bytes=10_000_000)
    errors: list[BaseException] = []

    def producer(start: int) -> None:
        try:
            put_many(spool, 200, start=start)
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    def consumer() -> None:
        try:
            for _ in range(100):
                for message in spool.peek(5):
                    spool.remove(message.id)
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=producer, args=(n * 1000,)) for n in range(4)]
    threads += [threading.Thread(target=consumer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    remaining = spool.peek(10_000)
    assert len(spool) == len(remaining)
    assert spool.size_bytes == sum(len(m.payload) + len(TOPIC) + len(m.key) for m in remaining)
    assert len({m.key for m in remaining}) == len(remaining)
