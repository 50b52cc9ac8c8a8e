"""Worker processes of ``lensflow bench scale``: started, watched, killed, their logs read.

Each worker is the real command, ``python -m lensflow cloud worker --config ...``, in a child
process whose log is one JSON object per line. The benchmark reads the figures from those
lines (their timestamps come from the workers' own clocks): when each worker's AMQP consumer
came up, and when each crop was committed (``crop stored``) or found already stored
(``crop duplicate``, a re-delivery of a crop whose ack was lost). :class:`CpuSample` reads
from ``/proc`` (Linux) how much CPU the workers, the broker and the whole machine used, so a
ratio starved by other jobs on the machine shows as such.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from lensflow.bench import BenchError
from lensflow.services.process import ManagedProcess, ProcessError, StopTimeoutError

_UP = "amqp up consumer="
_RETRY = "storage failed for "
_COMMIT = re.compile(r"^crop (stored|duplicate) crop_id=(\S+) .*redelivered=(True|False)$")
_STOP_TIMEOUT_S = 45.0
_LOG_TAIL_CHARS = 3000

WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""One compute thread per worker process: numpy/OpenCV pools stay at one thread as well."""


@dataclass(frozen=True)
class Commit:
    """One crop a worker finished: committed (``stored``) or found stored (``duplicate``)."""

    at: float
    outcome: str
    crop_id: str
    redelivered: bool


@dataclass
class WorkerLog:
    """What a worker's log says: when its consumer came up and every crop it finished."""

    up_at: float | None = None
    commits: list[Commit] = field(default_factory=list)
    storage_retries: int = 0
    """Transient storage failures it retried (``storage failed``: e.g. SQLite locked)."""

    @property
    def stored(self) -> list[Commit]:
        """The crops this worker committed first."""
        return [commit for commit in self.commits if commit.outcome == "stored"]


def parse_log(text: str) -> WorkerLog:
    """Read a worker's JSON log lines (other lines, e.g. a traceback, are skipped).

    Args:
        text: The log file's content.

    Returns:
        The first ``amqp up`` time and every ``crop stored``/``crop duplicate`` line, with
        their times as POSIX seconds.

    """
    log = WorkerLog()
    for line in text.splitlines():
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
            message, at = str(entry["message"]), datetime.fromisoformat(entry["time"]).timestamp()
        except (ValueError, KeyError, TypeError):
            continue
        if message.startswith(_UP):
            log.up_at = at if log.up_at is None else log.up_at
        elif match := _COMMIT.match(message):
            outcome, crop_id, redelivered = match.groups()
            log.commits.append(Commit(at, outcome, crop_id, redelivered == "True"))
        elif message.startswith(_RETRY):
            log.storage_retries += 1
    return log


class WorkerProcess:
    """``python -m lensflow cloud worker --config CONFIG`` as a child process, logging to a file.

    It is started on creation.

    Args:
        name: Its name in the benchmark's table (``w1``, ``w2``).
        config: The cloud config YAML.
        log: Where its stdout and stderr go.
        cpu: Pin it (and the threads it starts) to this CPU; any CPU when None.

    Raises:
        BenchError: If the interpreter could not be run.

    """

    def __init__(self, name: str, *, config: Path, log: Path, cpu: int | None = None) -> None:
        self.name, self.config, self.log = name, config, log
        self.killed = False
        command = [sys.executable, "-m", "lensflow", "cloud", "worker", "--config", str(config)]
        self._process = ManagedProcess(
            command,
            name=f"worker {name}",
            log_file=log,
            cwd=log.parent,
            env={**os.environ, **WORKER_ENV},
            stop_timeout_s=_STOP_TIMEOUT_S,
            # set in the child before it runs Python: every thread it starts inherits it
            cpus=None if cpu is None else {cpu},
        )
        try:
            self._process.start(wait=False)
        except ProcessError as err:
            raise BenchError(f"could not start worker {name}: {err}") from err

    @property
    def pid(self) -> int | None:
        """Its process id."""
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        """Its exit code (negative: the signal that ended it); None while it runs."""
        return self._process.returncode

    def read(self) -> WorkerLog:
        """Parse its log as written so far."""
        return parse_log(self.log.read_text(encoding="utf-8", errors="replace"))

    def log_size(self) -> int:
        """Bytes in its log so far (it grows with every crop)."""
        return self.log.stat().st_size if self.log.exists() else 0

    def log_tail(self) -> str:
        """The end of its log, for an error message."""
        return self.log.read_text(encoding="utf-8", errors="replace")[-_LOG_TAIL_CHARS:]

    @property
    def alive(self) -> bool:
        """Whether the process is still running."""
        return self._process.is_running

    def kill(self) -> None:
        """SIGKILL it (a crash: nothing is flushed, nothing is acknowledged) and reap it."""
        self._process.kill()
        self.killed = True

    def stop(self) -> int:
        """SIGTERM it (finish the batch, send the acks) and wait; SIGKILL after 45 s.

        Returns:
            Its exit code (negative: the signal that ended it).

        """
        try:
            code = self._process.stop()
        except StopTimeoutError as err:
            code = err.returncode
        return -1 if code is None else code


def wait_until_up(workers: list[WorkerProcess], timeout_s: float) -> None:
    """Wait until every worker's AMQP consumer is up (its model loaded and warmed up).

    Raises:
        BenchError: If a worker exits, or is not up within ``timeout_s``; with its log tail.

    """
    deadline = time.monotonic() + timeout_s
    pending = list(workers)
    while pending:
        for worker in list(pending):
            if worker.read().up_at is not None:
                pending.remove(worker)
            elif not worker.alive:
                raise BenchError(
                    f"worker {worker.name} exited with code {worker.returncode} before "
                    f"consuming; its log ends:\n{worker.log_tail()}"
                )
        if pending and time.monotonic() > deadline:
            names = ", ".join(worker.name for worker in pending)
            raise BenchError(
                f"expected every worker to consume within {timeout_s:g} s, but {names} did not; "
                f"log of {pending[0].name} ends:\n{pending[0].log_tail()}"
            )
        time.sleep(0.1)


def steady_rate(logs: list[WorkerLog]) -> tuple[int, float]:
    """Crops committed while every worker was consuming, and the length of that window.

    The window opens when the last worker's consumer came up and closes at the earliest
    among the workers' last commits, so it holds neither a worker's start nor the tail where
    one worker finishes its last prefetched crops while the other has run out.

    Returns:
        ``(crops, seconds)``; ``(0, 0.0)`` without logs, or if a worker committed nothing.

    """
    if not logs or any(log.up_at is None or not log.stored for log in logs):
        return 0, 0.0
    start = max(log.up_at for log in logs if log.up_at is not None)
    end = min(log.stored[-1].at for log in logs)
    crops = sum(start < commit.at <= end for log in logs for commit in log.stored)
    return crops, max(0.0, end - start)


_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user nice system irq softirq steal (not idle, iowait)


def process_cpu_s(pid: int | None) -> float:
    """User + system CPU seconds a process has used (all its threads); 0.0 if it is gone."""
    if pid is None:
        return 0.0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[-1].split()  # the name before ")" may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_s() -> tuple[float, float]:
    """CPU seconds every core has spent busy, and waiting for I/O, since boot (``/proc/stat``)."""
    try:
        line = Path("/proc/stat").read_text(encoding="ascii").splitlines()[0]
    except OSError:
        return 0.0, 0.0
    values = [int(value) for value in line.split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    busy = sum(values[i] for i in _BUSY_FIELDS if i < len(values))
    return busy / tick, (values[4] if len(values) > 4 else 0) / tick


def broker_pid(home: Path) -> int | None:
    """The pid of the Erlang VM (``beam.smp``) of the RabbitMQ node whose home is ``home``.

    :class:`~lensflow.services.rabbitmq.RabbitNode` runs its node with ``HOME`` at its base folder,
    which the VM's command line carries as ``-home``.
    """
    wanted = str(home).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if command[0].endswith(b"beam.smp") and wanted in command:
            return int(entry.name)
    return None


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds used so far by the workers, the broker, this process and the machine."""

    at: float
    workers: float
    broker: float
    bench: float
    machine: float
    iowait: float

    @classmethod
    def take(cls, workers: list[WorkerProcess], broker: int | None) -> CpuSample:
        """Read the counters now (a dead worker counts 0: sample it before it is reaped)."""
        used = sum(process_cpu_s(worker.pid) for worker in workers if worker.alive)
        bench, (machine, iowait) = process_cpu_s(os.getpid()), machine_cpu_s()
        return cls(time.monotonic(), used, process_cpu_s(broker), bench, machine, iowait)
