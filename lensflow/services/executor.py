"""The mirakuru executor adapted to lensflow: full environment, set-up in the child, exit cleanup.

Internal to :mod:`lensflow.services.process`. mirakuru starts the child with
``preexec_fn=os.setsid``; :class:`TaggedExecutor` chains its own function in its place
(``setsid``, CPU pinning, a Linux parent-death signal), passes the environment it is given
instead of merging it into this one's, and tags children with a value that mirakuru's exit
handler cannot mistake for another process's (see :func:`letters_tag`).
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import os
import subprocess
import sys
import threading
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

from mirakuru import SimpleExecutor
from mirakuru.base import ENV_UUID

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def letters_tag() -> str:
    """A random tag without digits for mirakuru's environment variable.

    mirakuru's exit handler kills every process whose tag *contains* the exiting process's
    pid as a substring: with its default ``<pid>:<uuid>`` tag, a process with pid 123 would
    kill children of pid 1234 (or of any tag whose uuid holds "123"). A tag without digits
    is never matched there; :data:`LEFTOVERS` does that cleanup exactly instead.
    """
    return "lensflow-" + uuid.uuid4().hex.translate(str.maketrans("0123456789", "ghijklmnop"))


def child_setup(*, death_signal: int | None, cpus: frozenset[int] | None) -> Callable[[], None]:
    """The function the child runs between fork and exec (after a change of user)."""
    prctl = None
    if death_signal is not None and sys.platform.startswith("linux"):
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here, not in the child
    parent = os.getpid()

    def setup() -> None:  # pragma: no cover - runs in the child
        os.setsid()  # what mirakuru's own preexec_fn does
        if cpus:
            os.sched_setaffinity(0, cpus)
        if prctl is not None and death_signal is not None:
            prctl(_PR_SET_PDEATHSIG, death_signal)
            if os.getppid() != parent:  # the parent died before prctl: no signal would come
                os.kill(os.getpid(), death_signal)

    return setup


class TaggedExecutor(SimpleExecutor):
    """The mirakuru executor with a complete environment and lensflow's set-up in the child."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path | None,
        output: IO[bytes],
        setup: Callable[[], None],
        popen_kwargs: dict[str, Any],
    ) -> None:
        super().__init__(
            list(command),
            cwd=None if cwd is None else str(cwd),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            popen_kwargs=popen_kwargs,
        )
        self._env = dict(env)
        self._setup = setup
        self._uuid = letters_tag()

    @property
    def tag(self) -> str:
        """The value of mirakuru's environment variable in this child and its descendants."""
        return self._uuid

    @property
    def envvars(self) -> dict[str, str]:
        """The given environment (not merged into ours: callers drop variables) plus the tag."""
        return {**self._env, ENV_UUID: self._uuid}

    @property
    def _popen_kwargs(self) -> dict[str, Any]:
        """Popen arguments as mirakuru makes them, our set-up in place of its ``os.setsid``."""
        kwargs = super()._popen_kwargs
        kwargs["preexec_fn"] = self._setup
        return kwargs


class Supervised(Protocol):
    """What the exit cleanup needs of a supervised child."""

    name: str

    @property
    def pid(self) -> int | None:
        """Its process id."""

    @property
    def is_running(self) -> bool:
        """Whether it runs."""

    def kill(self) -> int | None:
        """SIGKILL it and what it started."""


class Leftovers:
    """Children still running when the interpreter exits, SIGKILLed then (a crashed caller)."""

    def __init__(self) -> None:
        self._live: weakref.WeakSet[Supervised] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._registered = False

    def add(self, process: Supervised) -> None:
        """Track ``process``; the exit handler is registered on first use, not on import."""
        with self._lock:
            if not self._registered:
                atexit.register(self.kill_all)
                self._registered = True
            self._live.add(process)

    def kill_all(self) -> None:
        """SIGKILL every tracked child that still runs."""
        for process in list(self._live):
            if process.is_running:
                logger.warning("%s pid=%s still running at exit: killed", process.name, process.pid)
                process.kill()


LEFTOVERS = Leftovers()
"""The one registry of this interpreter."""
