"""What OpenCV and FFmpeg write to the process's stderr, turned into log lines.

OpenCV's warnings (``[ WARN:0@0.015] global cap.cpp:212 open VIDEOIO(FFMPEG): ...``) and
libav's messages (``[mov,mp4,m4a,3gp,3g2,mj2 @ 0x5606...] moov atom not found``) are written
by C code straight to file descriptor 2, past Python's logging: they showed raw, outside the
log format (and inside JSON logs as non-JSON lines). Neither library offers Python a log
callback (``cv2.utils.logging`` only sets a level; OpenCV's ``OPENCV_FFMPEG_LOGLEVEL`` sends
libav to stdout), so while :class:`NativeStderr` is installed fd 2 is a pipe and a daemon
thread logs each line it reads (logger ``lensflow.edge.native``). Python's own stderr
(``sys.stderr`` and the logging handlers that wrote to fd 2) moves to a copy of the original
fd 2 for that time, so log lines still reach the terminal and never come back through the
pipe.

Sources mark their OpenCV calls with :meth:`NativeStderr.watch`: a line read while exactly
one watch is open is taken to be that camera's (fd 2 is the whole process's, so this is a
best guess; with several open, the line names them all). A watch that ends in a failure waits
for the pipe to be read up to that point and hands its lines to the failure's one warning
line (:attr:`Watch.said`); otherwise they are logged as they are, naming the camera.

The agent holds the capture while it runs (``capture_native_stderr`` in its config); sources
used alone only mark their calls.
"""

from __future__ import annotations

import faulthandler
import itertools
import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

logger = logging.getLogger("lensflow.edge.native")

SYNC_TIMEOUT_S = 0.5  # how long a failing watch waits for the reader to catch up
_SYNC = b"\x00lensflow-native-sync "  # a marker line written to the pipe by sync()
_MAX_SAID = 3  # native lines carried into a failure's warning line


class Watch:
    """One source's OpenCV call, as seen by :class:`NativeStderr`."""

    def __init__(self, camera: str, target: str) -> None:
        self.camera, self.target = camera, target
        self.lines: list[str] = []
        self.failing = False
        self.said = ""  # after a failing watch: what OpenCV/FFmpeg wrote during the call

    def fail(self) -> None:
        """The call failed: keep its native lines for the failure's warning (:attr:`said`)."""
        self.failing = True


class NativeStderr:
    """Routes what C libraries write to fd 2 into the log, while installed (reference counted).

    Nothing happens on construction; :meth:`acquire` installs the pipe at the first holder and
    :meth:`release` restores fd 2 at the last.
    """

    def __init__(self) -> None:
        self._state_lock = threading.Lock()  # install, uninstall, writes of sync markers
        self._lock = threading.Lock()  # the open watches (the reader takes only this one)
        self._holders = 0
        self._terminal: int | None = None  # a copy of the original fd 2
        self._stream: TextIO | None = None  # Python's stderr on that copy
        self._pipe: os.stat_result | None = None  # identifies the pipe while it is fd 2
        self._moved: list[tuple[logging.StreamHandler[TextIO], TextIO]] = []
        self._sys_stderr: TextIO | None = None
        self._reader: threading.Thread | None = None
        self._watches: dict[int, Watch] = {}
        self._ids = itertools.count()
        self._synced: dict[bytes, threading.Event] = {}

    @property
    def installed(self) -> bool:
        """Whether the capture is held (fd 2 is the pipe, unless redirected since)."""
        return self._holders > 0

    def acquire(self) -> None:
        """Install the pipe (first holder) or count one more holder."""
        with self._state_lock:
            self._holders += 1
            if self._holders == 1:
                self._install()

    def release(self) -> None:
        """Count one holder less; the last one restores fd 2 and ends the reader."""
        with self._state_lock:
            if self._holders == 0:
                return
            self._holders -= 1
            if self._holders > 0:
                return
            reader = self._uninstall()
        if reader is not None:
            reader.join(1.0)  # it ends at end-of-file, after logging what was left

    @contextmanager
    def captured(self) -> Iterator[NativeStderr]:
        """Hold the capture for a ``with`` block."""
        self.acquire()
        try:
            yield self
        finally:
            self.release()

    @contextmanager
    def watch(self, *, camera: str, target: str, settle: bool = False) -> Iterator[Watch]:
        """Mark an OpenCV call of ``camera`` on ``target`` (a no-op while not installed).

        Args:
            camera: Named in the lines read during the call.
            target: The source, named with the camera.
            settle: Wait for the reader at the end even when the call did not fail, so
                every line it wrote is named (opens: rare and talkative; reads need not).
        """
        watch, key = Watch(camera, target), next(self._ids)
        with self._lock:
            self._watches[key] = watch
        try:
            yield watch
        finally:
            if watch.failing or settle:
                self.sync()
            with self._lock:
                del self._watches[key]
                lines, watch.lines = watch.lines, []
            if watch.failing:
                watch.said = "; ".join(lines[-_MAX_SAID:])
            else:
                for line in lines:
                    logger.log(_level(line), "camera %s: %s: %s", camera, target, line)

    def sync(self) -> None:
        """Wait until the reader has read everything written to fd 2 before this call."""
        token = _SYNC + str(next(self._ids)).encode()
        event = self._synced.setdefault(token, threading.Event())
        try:
            with self._state_lock:  # so the marker never reaches a restored terminal
                if not self._fd2_is_pipe():
                    return
                os.write(2, b"\n" + token + b"\n")
            event.wait(SYNC_TIMEOUT_S)
        except OSError:
            return
        finally:
            self._synced.pop(token, None)

    def _install(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        read_end, write_end = os.pipe()
        self._terminal = os.dup(2)
        os.dup2(write_end, 2)
        os.close(write_end)
        self._pipe = os.fstat(2)
        self._stream = open(  # noqa: SIM115 - lives until uninstall
            self._terminal,
            "w",
            buffering=1,
            encoding="utf-8",
            errors="backslashreplace",
            closefd=False,
        )
        self._move_python_stderr(self._stream)
        self._reader = threading.Thread(
            target=self._read, args=(read_end,), name="native-stderr", daemon=True
        )
        self._reader.start()

    def _fd2_is_pipe(self) -> bool:
        """Whether fd 2 is still this capture's pipe (nobody has redirected it since)."""
        if self._pipe is None:
            return False
        now = os.fstat(2)
        return (now.st_dev, now.st_ino) == (self._pipe.st_dev, self._pipe.st_ino)

    def _uninstall(self) -> threading.Thread | None:
        if self._terminal is None or self._stream is None:
            return None
        if self._fd2_is_pipe():
            os.dup2(self._terminal, 2)  # the pipe's last writer gone: the reader sees its end
        self._restore_python_stderr(self._stream)
        self._stream.close()
        os.close(self._terminal)
        self._terminal, self._stream, self._pipe = None, None, None
        reader, self._reader = self._reader, None
        return reader

    def _move_python_stderr(self, stream: TextIO) -> None:
        """Point Python's writers to fd 2 (sys.stderr, stream handlers) at ``stream``."""
        if _writes_to_fd2(sys.stderr):
            self._sys_stderr, sys.stderr = sys.stderr, stream
            if faulthandler.is_enabled():  # PYTHONFAULTHANDLER: a crash report must not be lost
                faulthandler.enable(file=stream)
        loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
        for each in loggers:
            for handler in getattr(each, "handlers", []):
                if isinstance(handler, logging.StreamHandler) and _writes_to_fd2(handler.stream):
                    self._moved.append((handler, handler.stream))
                    handler.setStream(stream)

    def _restore_python_stderr(self, stream: TextIO) -> None:
        for handler, original in self._moved:
            if handler.stream is stream:  # unless someone pointed it elsewhere since
                handler.setStream(original)
        self._moved.clear()
        if self._sys_stderr is not None and sys.stderr is stream:
            sys.stderr = self._sys_stderr
            if faulthandler.is_enabled():
                faulthandler.enable(file=sys.stderr)
        self._sys_stderr = None

    def _read(self, fd: int) -> None:
        """The reader thread: log each line until every writer of the pipe is gone."""
        pending = b""
        try:
            while chunk := os.read(fd, 65536):
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    self._line(line)
            if pending:
                self._line(pending)
        finally:
            os.close(fd)

    def _line(self, raw: bytes) -> None:
        if raw.startswith(_SYNC):
            event = self._synced.get(raw)
            if event is not None:
                event.set()
            return
        text = raw.decode("utf-8", errors="backslashreplace").strip()
        if not text:
            return
        with self._lock:
            watches = list(self._watches.values())
            if len(watches) == 1:
                watches[0].lines.append(text)
                return
        if watches:
            cameras = ", ".join(sorted({w.camera for w in watches}))
            logger.log(_level(text), "one of cameras %s: %s", cameras, text)
        else:
            logger.log(_level(text), "%s", text)


def _level(line: str) -> int:
    """The log level a native line states (``[ INFO:0@..]``, ``ERROR: ...``), else WARNING."""
    head = line.lstrip("[ ").upper()
    if head.startswith(("INFO", "DEBUG", "VERBOSE")):
        return logging.INFO
    if head.startswith(("ERROR", "FATAL")):
        return logging.ERROR
    return logging.WARNING  # OpenCV's WARN, and libav's lines (OpenCV lets only errors out)


def _writes_to_fd2(stream: object) -> bool:
    """Whether ``stream`` is a file object on fd 2."""
    try:
        return int(stream.fileno()) == 2  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return False


native_stderr = NativeStderr()
"""The process's one capture (fd 2 is per process): sources watch through it."""
