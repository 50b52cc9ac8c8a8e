"""The one layer for supervised child processes: services, workers and the demo's commands.

:class:`ManagedProcess` runs a command through mirakuru's
:class:`~mirakuru.base.SimpleExecutor`, which starts it in a session of its own
(``os.setsid``), tags it and everything it starts with an environment variable, and kills the
whole process group plus every tagged descendant (an ``epmd`` that daemonized itself, say).
On top of that it adds what lensflow's children share: their output in a log file, a
readiness check (:mod:`lensflow.services.readiness`) with a deadline that notices a child
dying while it starts (the error holds its log tail), stop with a signal then SIGKILL after a
timeout, and, set in the child before the command runs, a Linux parent-death signal, CPU
pinning and another user.
"""

from __future__ import annotations

import logging
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

from mirakuru.base import ENV_UUID
from mirakuru.base_env import processes_with_env

from lensflow.services.executor import LEFTOVERS, TaggedExecutor, child_setup
from lensflow.services.readiness import Readiness
from lensflow.shared.errors import LensflowError

logger = logging.getLogger(__name__)

_POLL_S = 0.05
_GONE_TIMEOUT_S = 5.0  # how long kill() waits for swept descendants to disappear
_TAIL_BYTES = 64 * 1024
LOG_TAIL_LINES = 20


class ServiceError(LensflowError):
    """Root of the errors of :mod:`lensflow.services`: a child or a service it runs failed."""


class ProcessError(ServiceError):
    """A child process could not be run, died while starting, or was not ready in time."""


class StopTimeoutError(ProcessError):
    """A child ignored its stop request for the whole timeout; it was SIGKILLed and reaped.

    Attributes:
        returncode: Its exit status after the SIGKILL (``-9``).

    """

    def __init__(self, message: str, *, returncode: int | None) -> None:
        super().__init__(message)
        self.returncode = returncode


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that was free a moment ago.

    The port is released before returning, so another process could take it in between; a
    child that then fails to bind dies while starting, which :meth:`ManagedProcess.start`
    reports with its log tail.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def distinct_free_ports(count: int) -> list[int]:
    """Return ``count`` different ports that were free a moment ago, in ascending order."""
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


def user_popen_kwargs(user: str) -> dict[str, Any]:
    """:class:`subprocess.Popen` arguments that run the child as ``user`` (needs root).

    The child gets that user's primary group and no supplementary groups (not root's).

    Raises:
        ProcessError: If there is no such user.

    """
    try:
        account = pwd.getpwnam(user)
    except KeyError as err:
        raise ProcessError(f"expected a user {user!r} to run a child as, but found none") from err
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def read_log_tail(paths: Sequence[Path], lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of each existing file in ``paths``, in that order."""
    parts: list[str] = []
    for path in paths:
        try:
            with path.open("rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(0, size - _TAIL_BYTES))
                text = handle.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            continue
        parts.extend(text.splitlines()[-lines:])
    return "\n".join(parts) if parts else "(no log written)"


class ManagedProcess:
    """One supervised child: its command, log file, readiness and how it stops.

    :meth:`start` spawns it (stdin from /dev/null, stdout and stderr appended to
    ``log_file``) and waits for ``ready``; :meth:`stop` sends ``stop_signal`` to its process
    group and SIGKILLs it after ``stop_timeout_s``; :meth:`kill` SIGKILLs it at once. Both
    also SIGKILL every descendant it left behind, found by mirakuru's environment tag. A
    child still running when the interpreter exits is killed then; one whose object is
    garbage-collected is killed by mirakuru, so keep a reference while it should run.

    Args:
        command: The program and its arguments (no shell).
        name: How logs and errors name it (``mosquitto``, ``worker w1``).
        log_file: Where its stdout and stderr are appended; its folder is created.
        ready: When it counts as started; at once when None.
        cwd: Its working folder; this process's when None.
        env: Its whole environment (not merged into this one); ``os.environ`` when None.
        start_timeout_s: How long :meth:`start` waits for ``ready``.
        stop_timeout_s: How long :meth:`stop` waits before SIGKILL.
        stop_signal: What :meth:`stop` sends (PostgreSQL's fast shutdown is SIGINT).
        parent_death_signal: Linux only: the signal the child gets when the thread that
            started it dies, even by SIGKILL (``prctl(PR_SET_PDEATHSIG)``); ignored elsewhere.
        cpus: Linux only: pin it (and every thread it starts) to these CPUs before the
            command runs.
        user: Run it as this user, with that user's group and no other groups (needs root).
        log_files: Other logs it writes, shown before ``log_file`` in :meth:`log_tail`.

    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        name: str,
        log_file: Path,
        ready: Readiness | None = None,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        start_timeout_s: float = 30.0,
        stop_timeout_s: float = 10.0,
        stop_signal: signal.Signals = signal.SIGTERM,
        parent_death_signal: signal.Signals | None = None,
        cpus: Collection[int] | None = None,
        user: str | None = None,
        log_files: Sequence[Path] = (),
    ) -> None:
        if not command:
            raise ValueError(f"expected a command for {name}, but got an empty one")
        self.command = list(command)
        self.name = name
        self.log_file = log_file
        self.ready = ready
        self.cwd = cwd
        self.env = None if env is None else dict(env)
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.stop_signal = stop_signal
        self.parent_death_signal = parent_death_signal
        self.cpus = None if cpus is None else frozenset(cpus)
        self.user = user
        self.log_files = tuple(log_files)
        self._executor: TaggedExecutor | None = None
        self._popen: subprocess.Popen[Any] | None = None

    @property
    def pid(self) -> int | None:
        """The process id of the last child started (None before the first start)."""
        return None if self._popen is None else self._popen.pid

    @property
    def returncode(self) -> int | None:
        """The last child's exit status (negative: the signal that ended it); None while it runs."""
        return None if self._popen is None else self._popen.poll()

    @property
    def is_running(self) -> bool:
        """Whether the child has been started and has not exited."""
        return self._popen is not None and self._popen.poll() is None

    def start(self, *, wait: bool = True, timeout_s: float | None = None) -> None:
        """Start the child and, with ``wait``, wait until it is ready; no-op if it runs.

        Args:
            wait: Wait for readiness (see :meth:`wait_ready`); return at once otherwise.
            timeout_s: How long to wait; ``start_timeout_s`` when None.

        Raises:
            ProcessError: It could not be run, exited while starting, or was not ready in
                time (it is then killed); the message holds its log tail.

        """
        if self.is_running:
            return
        self._discard()  # a previous run that exited: sweep what it left, forget it
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as output:
            executor = TaggedExecutor(
                self.command,
                env=os.environ if self.env is None else self.env,
                cwd=self.cwd,
                output=output,
                setup=child_setup(death_signal=self.parent_death_signal, cpus=self.cpus),
                popen_kwargs={} if self.user is None else user_popen_kwargs(self.user),
            )
            try:
                executor.start()
            except (OSError, subprocess.SubprocessError) as err:
                raise ProcessError(f"could not run {self.command[0]}: {err}") from err
        self._executor, self._popen = executor, executor.process
        LEFTOVERS.add(self)
        logger.info("%s started pid=%s", self.name, self.pid)
        if wait:
            self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Poll the readiness check until it passes, the child exits, or the time is up.

        Raises:
            ProcessError: It was never started, exited first, or was not ready within
                ``timeout_s`` (``start_timeout_s`` when None; it is then killed).

        """
        if self._popen is None:
            raise ProcessError(f"expected {self.name} to be started before waiting for it")
        timeout = self.start_timeout_s if timeout_s is None else timeout_s
        what = "to start" if self.ready is None else self.ready.description
        deadline = time.monotonic() + timeout
        while True:
            code = self.returncode
            if code is not None:
                self._discard()
                raise ProcessError(
                    f"expected {self.name} {what}, but it exited with code {code} while "
                    f"starting; log tail:\n{self.log_tail()}"
                )
            if self.ready is None or self.ready.check():
                return
            if time.monotonic() >= deadline:
                pid = self.pid
                self.kill()
                raise ProcessError(
                    f"expected {self.name} {what} within {timeout:g} s, but it was not "
                    f"(pid {pid}, now killed); log tail:\n{self.log_tail()}"
                )
            time.sleep(_POLL_S)

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the child's process group (nothing if it is not running)."""
        if self._popen is not None and self.is_running:
            try:
                os.killpg(self._popen.pid, sig)
            except ProcessLookupError:
                logger.debug("%s pid=%s exited before signal %s", self.name, self.pid, sig)

    def stop(
        self, timeout_s: float | None = None, *, request: Callable[[], None] | None = None
    ) -> int | None:
        """Ask the child to stop, wait, and SIGKILL it (and its group) if it does not.

        Args:
            timeout_s: How long to wait; ``stop_timeout_s`` when None.
            request: How to ask (e.g. run ``rabbitmqctl stop``); sends ``stop_signal`` to
                the process group when None.

        Returns:
            Its exit status (negative: the signal that ended it); None if never started.

        Raises:
            StopTimeoutError: It did not exit within the timeout; it was killed and reaped.

        """
        popen = self._popen
        if popen is None:
            return None
        if popen.poll() is None:
            timeout = self.stop_timeout_s if timeout_s is None else timeout_s
            (request or (lambda: self.send_signal(self.stop_signal)))()
            try:
                popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired as err:
                self.kill()
                how = (
                    signal.Signals(self.stop_signal).name if request is None else "its stop request"
                )
                raise StopTimeoutError(
                    f"expected {self.name} (pid {popen.pid}) to exit within {timeout:g} s of "
                    f"{how}, but it did not; it was killed; log tail:\n{self.log_tail()}",
                    returncode=popen.returncode,
                ) from err
            logger.info("%s stopped pid=%s code=%s", self.name, popen.pid, popen.returncode)
        self._discard()
        return popen.returncode

    def kill(self) -> int | None:
        """SIGKILL the child's process group and every descendant it started; reap it.

        Returns once the descendants are gone (their ports are free), or after 5 s.

        Returns:
            Its exit status (``-9`` when this killed it); None if never started.

        """
        popen = self._popen
        if popen is None:
            return None
        running = popen.poll() is None
        self._discard()
        if running:
            logger.info("%s killed pid=%s", self.name, popen.pid)
        return popen.returncode

    def restart(self) -> None:
        """:meth:`stop`, then :meth:`start` with the same command (the same ports)."""
        self.stop()
        self.start()

    def _discard(self) -> None:
        """SIGKILL whatever of the last run is left (group, tagged descendants) and reap it."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        pids = set(processes_with_env(ENV_UUID, executor.tag))
        if self._popen is not None:
            pids.add(self._popen.pid)
        try:
            executor.kill()  # killpg(SIGKILL) if it runs, reap, SIGKILL every tagged process
        except ProcessLookupError:
            executor.kill()  # it exited between mirakuru's check and its killpg: sweep again
        deadline = time.monotonic() + _GONE_TIMEOUT_S
        while time.monotonic() < deadline and (
            processes_with_env(ENV_UUID, executor.tag) or not all(map(_gone, pids))
        ):
            time.sleep(_POLL_S)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of each of its logs (``log_files``, then ``log_file``)."""
        return read_log_tail([*self.log_files, self.log_file], lines)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.stop()


def _gone(pid: int) -> bool:
    """Whether ``pid`` holds nothing any more (no socket, no port): gone, or a bare zombie.

    A SIGKILLed process's main thread can exit (and its environment become unreadable, so the
    tag no longer finds it) while another of its threads, slow to die, still holds the
    listening sockets: a zombie with threads left is not gone yet. Without ``/proc`` the
    answer is yes (the tag sweep is all there is).
    """
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii", errors="replace")
    except OSError:
        return True
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    state = fields.get("State", "").strip()
    threads = fields.get("Threads", "1").strip()
    return state.startswith(("Z", "X")) and (not threads.isdigit() or int(threads) <= 1)
