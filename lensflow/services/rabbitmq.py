"""A private RabbitMQ node with the MQTT plugin, run as a supervised child process.

:class:`RabbitNode` starts Debian's ``rabbitmq-server`` on four free loopback ports (AMQP,
MQTT, Erlang distribution, epmd) with its own data folder, cookie and node name, so it runs
beside a system node (which may own 5672, 1883 and epmd's 4369) without touching it. Edges
publish crops over MQTT 3.1.1; the plugin routes every publish into the ``amq.topic``
exchange with ``/`` turned into ``.``, where the cloud worker's quorum queue
(``lensflow.cloud.worker.amqp_queue``) holds them for the workers. The plugin of RabbitMQ
3.10 speaks MQTT 3.1.1 only: an MQTT 5 CONNECT gets no CONNACK.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from pathlib import Path

import pika
import pika.exceptions

from lensflow.services.process import (
    ManagedProcess,
    ProcessError,
    ServiceError,
    StopTimeoutError,
    distinct_free_ports,
    read_log_tail,
)
from lensflow.services.readiness import Readiness, tcp_open

logger = logging.getLogger(__name__)

SERVER_EXECUTABLE = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
"""The server script itself: the ``/usr/sbin`` wrappers switch to the rabbitmq user and cookie."""

_START_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 30.0
_LOG_TAIL_LINES = 30


class RabbitNodeError(ServiceError):
    """The private RabbitMQ node could not be found, started or stopped."""


def find_rabbitmq_server(executable: Path = SERVER_EXECUTABLE) -> Path:
    """Return the ``rabbitmq-server`` script, checking that it is installed.

    Args:
        executable: Where the script is expected (Debian's package location by default).

    Raises:
        RabbitNodeError: If the script is missing or not executable.

    """
    if executable.is_file() and os.access(executable, os.X_OK):
        return executable
    raise RabbitNodeError(
        f"expected the rabbitmq-server script at {executable}, but found none; "
        "install it with `apt-get install rabbitmq-server`"
    )


def _run(command: list[str], *, env: dict[str, str] | None = None) -> str:
    """Run a command to completion; return why it failed, or "" if it succeeded."""
    try:
        result = subprocess.run(  # noqa: S603 - fixed executables, arguments from this module
            command, env=env, capture_output=True, timeout=_STOP_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return str(err)
    output = (result.stderr or result.stdout).decode(errors="replace").strip()
    return f"exit code {result.returncode}: {output}" if result.returncode else ""


class RabbitNode:
    """A RabbitMQ node with the MQTT plugin, on private loopback ports and a private folder.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. The ports are chosen
    once, so :meth:`start` after :meth:`kill` brings the same node back on the same ports
    with its data (durable queues and their messages).

    Args:
        base_dir: Folder for the config, cookie, Mnesia data and logs; created if missing.
        executable: The ``rabbitmq-server`` script; ``rabbitmqctl`` is expected beside it.

    """

    def __init__(self, base_dir: Path | str, *, executable: Path = SERVER_EXECUTABLE) -> None:
        self.base_dir = Path(base_dir).resolve()
        self.executable = executable
        self._amqp_port, self._mqtt_port, self._dist_port, self._epmd_port = distinct_free_ports(4)
        self._process = ManagedProcess(
            [str(executable)],
            name=f"node {self.node_name}",
            log_file=self.base_dir / "console.log",
            log_files=[self._node_log],
            ready=Readiness(
                self._ready,
                f"to accept AMQP on port {self._amqp_port} and MQTT on port {self._mqtt_port}",
            ),
            cwd=self.base_dir,
            env=self._environment(),
            start_timeout_s=_START_TIMEOUT_S,
            stop_timeout_s=_STOP_TIMEOUT_S,
        )

    @property
    def node_name(self) -> str:
        """The Erlang node name, ``rmqtest-<amqp port>@localhost``."""
        return f"rmqtest-{self._amqp_port}@localhost"

    @property
    def amqp_port(self) -> int:
        """The AMQP 0-9-1 port on 127.0.0.1."""
        return self._amqp_port

    @property
    def mqtt_port(self) -> int:
        """The MQTT 3.1.1 port on 127.0.0.1."""
        return self._mqtt_port

    @property
    def amqp_url(self) -> str:
        """A pika URL for the default vhost as the ``guest`` user (allowed from loopback)."""
        return f"amqp://guest:guest@127.0.0.1:{self._amqp_port}/%2F"

    @property
    def pid(self) -> int | None:
        """The process id of the server script once started."""
        return self._process.pid

    @property
    def is_running(self) -> bool:
        """Whether the server process is alive."""
        return self._process.is_running

    @property
    def _node_log(self) -> Path:
        return self.base_dir / "log" / f"{self.node_name}.log"

    def _environment(self) -> dict[str, str]:
        """The process environment that points every RabbitMQ and Erlang path at base_dir."""
        base = self.base_dir
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            HOME=str(base),
            RABBITMQ_NODENAME=self.node_name,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self._amqp_port),
            RABBITMQ_DIST_PORT=str(self._dist_port),
            ERL_EPMD_PORT=str(self._epmd_port),
            ERL_EPMD_ADDRESS="127.0.0.1",
            RABBITMQ_MNESIA_BASE=str(base / "mnesia"),
            RABBITMQ_LOG_BASE=str(base / "log"),
            RABBITMQ_CONFIG_FILE=str(base / "rabbitmq.conf"),
            RABBITMQ_CONF_ENV_FILE=str(base / "rabbitmq-env.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(base / "enabled_plugins"),
            RABBITMQ_PID_FILE=str(base / "node.pid"),
        )
        return env

    def _write_files(self) -> None:
        """Write the config, plugin list, empty env file and the 0400 cookie."""
        base = self.base_dir
        base.mkdir(parents=True, exist_ok=True)
        (base / "enabled_plugins").write_text("[rabbitmq_mqtt].\n", encoding="ascii")
        (base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self._amqp_port}\n"
            f"mqtt.listeners.tcp.default = 127.0.0.1:{self._mqtt_port}\n",
            encoding="ascii",
        )
        # An empty env file keeps /etc/rabbitmq/rabbitmq-env.conf (the system node's) out.
        (base / "rabbitmq-env.conf").write_text("", encoding="ascii")
        cookie = base / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(f"LENSFLOWTEST{self._amqp_port}{os.getpid()}", encoding="ascii")
        cookie.chmod(0o400)  # Erlang refuses a cookie that others can read.

    def start(self, timeout_s: float = _START_TIMEOUT_S) -> None:
        """Start the node and wait until AMQP accepts a connection and MQTT listens.

        A cold start takes about 10 s. Does nothing if the node is already running.

        Args:
            timeout_s: How long to wait for the node to become ready.

        Raises:
            RabbitNodeError: If rabbitmq-server is missing, exits while starting, or is not
                ready within ``timeout_s`` (it is then killed); the message holds the log tail.

        """
        if self.is_running:
            return
        find_rabbitmq_server(self.executable)
        self._write_files()
        started_at = time.monotonic()
        try:
            self._process.start(timeout_s=timeout_s)
        except ProcessError as err:
            self._kill_epmd()  # the VM started it before failing (a port in use, say)
            raise RabbitNodeError(str(err)) from err
        logger.info(
            "rabbitmq started node=%s in %.1f s", self.node_name, time.monotonic() - started_at
        )

    def _ready(self) -> bool:
        """Whether the MQTT port listens and a full AMQP handshake succeeds."""
        if not (tcp_open(self._amqp_port) and tcp_open(self._mqtt_port)):
            return False
        params = pika.URLParameters(f"{self.amqp_url}?connection_attempts=1&socket_timeout=2")
        try:
            pika.BlockingConnection(params).close()
        except pika.exceptions.AMQPError:
            return False
        return True

    def stop(self) -> None:
        """Stop the node with ``rabbitmqctl stop``, wait for it, then stop its epmd.

        Safe to call when the node is not running (after :meth:`kill`, say).

        Raises:
            RabbitNodeError: If the node does not exit within 30 s (it is then killed).

        """
        pid = self._process.pid
        try:
            if self._process.is_running:
                self._process.stop(request=self._ctl_stop)
                logger.info("rabbitmq stopped node=%s", self.node_name)
            else:
                self._process.kill()  # what a node that died by itself left behind
        except StopTimeoutError as err:
            raise RabbitNodeError(
                f"expected node {self.node_name} (pid {pid}) to exit within "
                f"{_STOP_TIMEOUT_S:.0f} s of `rabbitmqctl stop`, but it did not; it was "
                f"killed; log tail:\n{self.log_tail()}"
            ) from err
        finally:
            self._kill_epmd()

    def _ctl_stop(self) -> None:
        """Ask the node to stop; fall back to SIGTERM of the server script if rabbitmqctl fails."""
        ctl = str(self.executable.parent / "rabbitmqctl")
        failure = _run([ctl, "-n", self.node_name, "stop"], env=self._environment())
        if failure:
            # The script traps SIGTERM and stops the VM gracefully itself.
            logger.warning("rabbitmqctl stop failed node=%s: %s", self.node_name, failure)
            self._process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the node, its epmd and every helper it started, and wait, like a crash.

        Unacknowledged MQTT publishes are lost; what the broker PUBACKed is in the quorum
        queue. Wait at least 1 s after declaring a quorum queue before killing: one killed
        sooner can come back without a leader. The ports are free on return, so
        :meth:`start` brings the node back on the same ports.
        """
        if self.is_running:
            self._process.kill()
            logger.info("rabbitmq killed node=%s", self.node_name)

    def _kill_epmd(self) -> None:
        """Stop the epmd daemon this node started (if it still runs) on its private port."""
        if failure := _run(["epmd", "-port", str(self._epmd_port), "-kill"]):
            logger.debug("epmd -kill on port %s: %s", self._epmd_port, failure)

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """Return the last lines of the node's log and console output."""
        return read_log_tail([self._node_log, self.base_dir / "console.log"], lines)

    def __enter__(self) -> RabbitNode:
        self.start()
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.stop()
