"""A private mosquitto broker run as a supervised child process, for tests and the demo.

:class:`MosquittoBroker` writes a config from :class:`MosquittoConfig` into its data folder,
starts ``mosquitto -c`` on a free loopback port (:class:`~lensflow.services.process.ManagedProcess`)
and waits until it accepts TCP connections. It never touches a system broker (which may listen
on 1883): every instance has its own port, config, persistence file and log.

By default such a broker lets anonymous clients in: it listens on 127.0.0.1 only and lives as
long as a test or the demo. That is *not* the shipped production config
(``configs/mosquitto.conf``: no anonymous clients, a password file and an ACL with one user per
edge agent); a test that needs those gives :class:`MosquittoConfig` ``allow_anonymous=False``,
a ``password_file`` and an ``acl_file`` (see :mod:`lensflow.services.mosquitto_auth`).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

from lensflow.services.process import (
    LOG_TAIL_LINES,
    ManagedProcess,
    ProcessError,
    ServiceError,
    free_port,
    read_log_tail,
)
from lensflow.services.readiness import tcp_port
from lensflow.shared.protocol.envelope import MAX_PACKET_BYTES

logger = logging.getLogger(__name__)

FALLBACK_EXECUTABLE = Path("/usr/sbin/mosquitto")
"""Where Debian's package installs mosquitto (``/usr/sbin`` is often not on a user's PATH)."""

_START_TIMEOUT_S = 5.0
_STOP_TIMEOUT_S = 10.0


class BrokerError(ServiceError):
    """The private broker could not be found, started or stopped."""


def find_mosquitto() -> Path:
    """Locate the mosquitto executable on PATH, or at ``/usr/sbin/mosquitto``.

    Raises:
        BrokerError: If mosquitto is not installed.

    """
    found = shutil.which("mosquitto")
    if found is not None:
        return Path(found)
    if FALLBACK_EXECUTABLE.is_file() and os.access(FALLBACK_EXECUTABLE, os.X_OK):
        return FALLBACK_EXECUTABLE
    raise BrokerError(
        f"expected the mosquitto executable on PATH or at {FALLBACK_EXECUTABLE}, but found "
        "neither; install it with `apt-get install mosquitto`"
    )


@dataclass(frozen=True)
class MosquittoConfig:
    """Settings of a private broker, rendered as a ``mosquitto.conf``.

    Attributes:
        port: TCP port of the loopback listener.
        data_dir: Folder holding the config, the persistence file and the log.
        max_queued_messages: Messages queued per client session beyond the in-flight ones.
            Mosquitto's default of 1000 silently drops the overflow of a disconnected
            persistent session (only ``$SYS/broker/publish/messages/dropped`` counts it), so a
            consumer that is away while edges keep publishing would lose crops: set high.
        max_queued_bytes: Byte bound of the same queue (0 is unlimited in mosquitto); 1 GiB
            keeps memory bounded while holding far more than the message bound in crops.
        max_inflight_messages: QoS 1/2 messages sent to one client and not yet acknowledged.
        autosave_interval_s: Seconds between persistence snapshots. A SIGKILL of the broker
            loses what arrived since the last one, so keep it short; SIGTERM always saves.
        sys_interval_s: Seconds between ``$SYS`` topic updates (drop counters, clients).
        run_as_root: Add ``user root``; mosquitto started as root otherwise switches to the
            ``mosquitto`` user, which cannot write a data folder owned by root.
        allow_anonymous: Let clients in without a user name. True for the private loopback
            brokers of tests and the demo; the shipped production config says false.
        password_file: A mosquitto ``password_file`` (users and password hashes), if any.
        acl_file: A mosquitto ``acl_file`` (what each user may publish and read), if any.

    Raises:
        ValueError: If anonymous clients are refused and there is no password file (no
            client could connect).

    """

    port: int
    data_dir: Path
    max_queued_messages: int = 100_000
    max_queued_bytes: int = 1 << 30
    max_inflight_messages: int = 100
    autosave_interval_s: int = 1
    sys_interval_s: int = 1
    run_as_root: bool = False
    allow_anonymous: bool = True
    password_file: Path | None = None
    acl_file: Path | None = None

    def __post_init__(self) -> None:
        if not self.allow_anonymous and self.password_file is None:
            raise ValueError(
                "allow_anonymous=False needs a password_file, but got none: "
                "the broker would refuse every client"
            )

    @property
    def config_file(self) -> Path:
        """Where the rendered config is written."""
        return self.data_dir / "mosquitto.conf"

    @property
    def log_file(self) -> Path:
        """The broker's log file."""
        return self.data_dir / "mosquitto.log"

    def render(self) -> str:
        """Return the text of the ``mosquitto.conf`` for these settings."""
        anonymous = "true" if self.allow_anonymous else "false"
        lines = [
            "# A private loopback broker that lensflow started (a test, the demo, a benchmark).",
            "# Not the production config: that is configs/mosquitto.conf (no anonymous clients,",
            "# one broker user per edge agent, an ACL).",
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {anonymous}",
            "persistence true",
            # mosquitto concatenates the location and the file name: the slash is required.
            f"persistence_location {self.data_dir}/",
            f"autosave_interval {self.autosave_interval_s}",
            f"max_queued_messages {self.max_queued_messages}",
            f"max_queued_bytes {self.max_queued_bytes}",
            f"max_inflight_messages {self.max_inflight_messages}",
            f"max_packet_size {MAX_PACKET_BYTES}",  # the protocol's crop limit plus headers
            f"log_dest file {self.log_file}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            f"sys_interval {self.sys_interval_s}",
        ]
        if self.password_file is not None:
            lines.append(f"password_file {self.password_file}")
        if self.acl_file is not None:
            lines.append(f"acl_file {self.acl_file}")
        if self.run_as_root:
            lines.append("user root")
        return "\n".join(lines) + "\n"


class MosquittoBroker:
    """A mosquitto child process with its own port and data folder.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. :meth:`restart` keeps
    the port and the data folder, so persistent sessions and retained messages survive it.

    Args:
        data_dir: Folder for the config, persistence and log; created if missing.
        port: TCP port on 127.0.0.1; a free one when not given.
        config: Full settings; when given, ``data_dir`` and ``port`` must match it.

    """

    def __init__(
        self,
        data_dir: Path | str,
        port: int | None = None,
        *,
        config: MosquittoConfig | None = None,
    ) -> None:
        folder = Path(data_dir).resolve()
        if config is None:
            config = MosquittoConfig(
                port=free_port() if port is None else port,
                data_dir=folder,
                run_as_root=hasattr(os, "geteuid") and os.geteuid() == 0,
            )
        elif config.data_dir.resolve() != folder or (port is not None and port != config.port):
            raise ValueError(
                f"config must use data_dir {folder} and port {port}, but got "
                f"{config.data_dir} and {config.port}"
            )
        self.config = config
        self._process: ManagedProcess | None = None

    @property
    def host(self) -> str:
        """The address the broker listens on."""
        return "127.0.0.1"

    @property
    def port(self) -> int:
        """The TCP port the broker listens on."""
        return self.config.port

    @property
    def pid(self) -> int | None:
        """The broker's process id once started."""
        return None if self._process is None else self._process.pid

    @property
    def is_running(self) -> bool:
        """Whether the child process is alive."""
        return self._process is not None and self._process.is_running

    def _managed(self) -> ManagedProcess:
        """The supervised child, made on first start (when mosquitto is looked up)."""
        if self._process is None:
            self._process = ManagedProcess(
                [str(find_mosquitto()), "-c", str(self.config.config_file)],
                name="mosquitto",
                log_file=self.config.data_dir / "mosquitto.out",
                log_files=[self.config.log_file],
                ready=tcp_port(self.port, host=self.host),
                start_timeout_s=_START_TIMEOUT_S,
                stop_timeout_s=_STOP_TIMEOUT_S,
            )
        return self._process

    def start(self) -> None:
        """Start the broker and wait until it accepts TCP connections.

        Raises:
            BrokerError: If mosquitto is missing, exits, or does not listen within 5 s
                (it is then killed); the message holds the log tail.

        """
        if self.is_running:
            return
        process = self._managed()
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        self.config.config_file.write_text(self.config.render(), encoding="utf-8")
        try:
            process.start()
        except ProcessError as err:
            raise BrokerError(str(err)) from err
        logger.info("mosquitto started pid=%s port=%s", process.pid, self.port)

    def stop(self) -> None:
        """Stop with SIGTERM (mosquitto then saves its persistence file) and wait.

        Raises:
            BrokerError: If the broker does not exit within 10 s (it is then SIGKILLed).

        """
        if self._process is None:
            return
        try:
            self._process.stop()
        except ProcessError as err:
            raise BrokerError(str(err)) from err

    def kill(self) -> None:
        """Kill with SIGKILL (what arrived since the last autosave is lost) and wait."""
        if self._process is not None:
            self._process.kill()

    def reload(self) -> None:
        """Send SIGHUP: mosquitto re-reads its password file and ACL (clients stay connected).

        Raises:
            BrokerError: If the broker is not running.

        """
        if self._process is None or not self.is_running:
            raise BrokerError("expected a running broker to reload, but it is not running")
        self._process.send_signal(signal.SIGHUP)

    def restart(self) -> None:
        """Stop (SIGTERM) and start again on the same port with the same data folder."""
        self.stop()
        self.start()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """Return the last lines of the broker's log and console output."""
        return read_log_tail([self.config.log_file, self.config.data_dir / "mosquitto.out"], lines)

    def __enter__(self) -> MosquittoBroker:
        self.start()
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.stop()
