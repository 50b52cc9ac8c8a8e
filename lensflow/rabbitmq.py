"""A private RabbitMQ node run as a child process, and the deploy step for the crops queue.

:class:`RabbitNode` starts Debian's ``rabbitmq-server`` with the MQTT plugin on four free
loopback ports (AMQP, MQTT, Erlang distribution, epmd) and its own data folder, cookie and
node name, so it runs beside a system node (which may own 5672, 1883 and epmd's 4369)
without touching it. Edges publish crops over MQTT 3.1.1; the plugin routes every publish
into the ``amq.topic`` exchange with ``/`` turned into ``.``, where a durable quorum queue
(:func:`declare_crops_queue`) makes a work queue that cloud workers consume over AMQP. The
plugin of RabbitMQ 3.10 speaks MQTT 3.1.1 only: an MQTT 5 CONNECT gets no CONNACK.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pika
import pika.exceptions

from lensflow.broker import free_port
from lensflow.shared.errors import LensflowError

logger = logging.getLogger(__name__)

SERVER_EXECUTABLE = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
"""The server script itself: the ``/usr/sbin`` wrappers switch to the rabbitmq user and cookie."""

CROPS_QUEUE = "lensflow.crops"
"""The work queue that holds crops published by edges."""

CROPS_BINDING_KEY = "lensflow.v1.*.*.crops"
"""``lensflow/v1/<site>/<camera>/crops`` as the MQTT plugin routes it into ``amq.topic``."""

_STOP_TIMEOUT_S = 30.0
_KILL_TIMEOUT_S = 10.0
_POLL_S = 0.1


class RabbitError(LensflowError):
    """The private RabbitMQ node could not be found, started or stopped, or a declare failed."""


def find_rabbitmq_server(executable: Path = SERVER_EXECUTABLE) -> Path:
    """Return the ``rabbitmq-server`` script, checking that it is installed.

    Args:
        executable: Where the script is expected (Debian's package location by default).

    Raises:
        RabbitError: If the script is missing or not executable.

    """
    if executable.is_file() and os.access(executable, os.X_OK):
        return executable
    raise RabbitError(
        f"expected the rabbitmq-server script at {executable}, but found none; "
        "install it with `apt-get install rabbitmq-server`"
    )


def _distinct_free_ports(count: int) -> list[int]:
    """Return ``count`` different ports that were free a moment ago."""
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


def _proc_stat(pid: str) -> tuple[str, int] | None:
    """State letter and parent pid of a process, from ``/proc`` (Linux); None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    state, ppid = stat.rsplit(")", 1)[-1].split()[:2]  # the name before ")" may hold spaces
    return state, int(ppid)


def _running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    stat = _proc_stat(str(pid))
    return stat is not None and stat[0] != "Z"


def _descendants(root: int) -> list[int]:
    """Every process below ``root`` in the process tree."""
    parents = {
        int(entry.name): stat[1]
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and (stat := _proc_stat(entry.name)) is not None
    }
    found, pending = [], [root]
    while pending:
        parent = pending.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found += children
        pending += children
    return found


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


def _tcp_open(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


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
        self._amqp_port, self._mqtt_port, self._dist_port, self._epmd_port = _distinct_free_ports(4)
        self._process: subprocess.Popen[bytes] | None = None

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
    def is_running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

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

    def start(self, timeout_s: float = 60.0) -> None:
        """Start the node and wait until AMQP accepts a connection and MQTT listens.

        A cold start takes about 10 s. Does nothing if the node is already running.

        Args:
            timeout_s: How long to wait for the node to become ready.

        Raises:
            RabbitError: If rabbitmq-server is missing, exits while starting, or is not ready
                within ``timeout_s`` (it is then killed); the message holds the log tail.

        """
        if self.is_running:
            return
        executable = find_rabbitmq_server(self.executable)
        self._write_files()
        started_at = time.monotonic()
        with (self.base_dir / "console.log").open("ab") as console:
            try:
                self._process = subprocess.Popen(  # noqa: S603 - fixed executable, no arguments
                    [str(executable)],
                    env=self._environment(),
                    cwd=self.base_dir,
                    stdout=console,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            except OSError as err:
                raise RabbitError(f"could not run {executable}: {err}") from err
        self._wait_ready(timeout_s)
        logger.info(
            "rabbitmq started node=%s in %.1f s", self.node_name, time.monotonic() - started_at
        )

    def _wait_ready(self, timeout_s: float) -> None:
        """Poll until AMQP connects and the MQTT port listens; raise with the log tail."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.is_running:
                code = None if self._process is None else self._process.returncode
                self._kill_epmd()  # the VM started it before failing (a port in use, say)
                raise RabbitError(
                    f"rabbitmq-server exited with code {code} while starting node "
                    f"{self.node_name}; log tail:\n{self.log_tail()}"
                )
            if _tcp_open(self._amqp_port) and _tcp_open(self._mqtt_port) and self._amqp_ok():
                return
            time.sleep(_POLL_S)
        self.kill()
        self._kill_epmd()
        raise RabbitError(
            f"expected node {self.node_name} to accept AMQP on port {self._amqp_port} and MQTT "
            f"on port {self._mqtt_port} within {timeout_s:.0f} s, but it did not; "
            f"log tail:\n{self.log_tail()}"
        )

    def _amqp_ok(self) -> bool:
        """Whether a full AMQP handshake succeeds."""
        params = pika.URLParameters(f"{self.amqp_url}?connection_attempts=1&socket_timeout=2")
        try:
            pika.BlockingConnection(params).close()
        except pika.exceptions.AMQPError:
            return False
        return True

    def stop(self) -> None:
        """Stop the node with ``rabbitmqctl stop``, wait for it, then stop its epmd.

        Safe to call when the node is not running (after :meth:`kill`, it only stops epmd).

        Raises:
            RabbitError: If the node does not exit within 30 s (it is then killed).

        """
        process = self._process
        if process is not None and process.poll() is None:
            self._ctl_stop()
            try:
                process.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired as err:
                self.kill()
                self._kill_epmd()
                raise RabbitError(
                    f"expected node {self.node_name} (pid {process.pid}) to exit within "
                    f"{_STOP_TIMEOUT_S:.0f} s of `rabbitmqctl stop`, but it did not; it was "
                    f"killed; log tail:\n{self.log_tail()}"
                ) from err
            logger.info("rabbitmq stopped node=%s", self.node_name)
        self._kill_epmd()

    def _ctl_stop(self) -> None:
        """Ask the node to stop; fall back to SIGTERM of the server script if rabbitmqctl fails."""
        ctl = str(self.executable.parent / "rabbitmqctl")
        failure = _run([ctl, "-n", self.node_name, "stop"], env=self._environment())
        if failure and self._process is not None:
            # The script traps SIGTERM and stops the VM gracefully itself.
            logger.warning("rabbitmqctl stop failed node=%s: %s", self.node_name, failure)
            self._process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the node (the server script's process group) and wait, like a crash.

        Unacknowledged MQTT publishes are lost; what the broker PUBACKed is in the quorum
        queue. Wait at least 1 s after declaring a quorum queue before killing: one killed
        sooner can come back without a leader. epmd keeps running (:meth:`stop` ends it), so
        :meth:`start` brings the node back on the same ports.
        """
        process = self._process
        if process is None or process.poll() is not None:
            return
        helpers = _descendants(process.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        # erl_child_setup, inet_gethost and the disk monitor run in sessions of their own and
        # exit some ms after the VM (its pipes close): wait, so the ports are free on return.
        deadline = time.monotonic() + _KILL_TIMEOUT_S
        while (helpers := [p for p in helpers if _running(p)]) and time.monotonic() < deadline:
            time.sleep(_POLL_S)
        for pid in helpers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        logger.info("rabbitmq killed node=%s", self.node_name)

    def _kill_epmd(self) -> None:
        """Stop the epmd daemon this node started (if it got that far) on its private port."""
        if failure := _run(["epmd", "-port", str(self._epmd_port), "-kill"]):
            logger.debug("epmd -kill on port %s: %s", self._epmd_port, failure)

    def log_tail(self, lines: int = 30) -> str:
        """Return the last lines of the node's log and console output."""
        parts: list[str] = []
        node_log = self.base_dir / "log" / f"{self.node_name}.log"
        for path in (node_log, self.base_dir / "console.log"):
            if path.is_file():
                text = path.read_text(encoding="utf-8", errors="replace").splitlines()
                parts.extend(text[-lines:])
        return "\n".join(parts) if parts else "(no log written)"

    def __enter__(self) -> RabbitNode:
        self.start()
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.stop()


def declare_crops_queue(
    amqp_url: str, *, queue: str = CROPS_QUEUE, binding_key: str = CROPS_BINDING_KEY
) -> None:
    """Declare the durable quorum queue of crops and bind it to ``amq.topic``; idempotent.

    This is the deploy-time step the product ships: run it before any edge publishes. The
    MQTT plugin PUBACKs a publish whose topic matches no binding and then drops it, so crops
    sent before this step are lost without an error at the edge.

    Args:
        amqp_url: pika URL of the broker, e.g. ``amqp://user:pass@host:5672/%2F``.
        queue: Queue name.
        binding_key: ``amq.topic`` binding; MQTT topic levels become ``.``-separated words.

    Raises:
        RabbitError: If the broker cannot be reached, or a queue of that name exists with
            other arguments (a classic queue, say).

    """
    params = pika.URLParameters(amqp_url)
    try:
        connection = pika.BlockingConnection(params)
    except pika.exceptions.AMQPError as err:
        raise RabbitError(
            f"expected a broker at {params.host}:{params.port}, but could not connect: {err!r}"
        ) from err
    try:
        channel = connection.channel()
        channel.queue_declare(queue=queue, durable=True, arguments={"x-queue-type": "quorum"})
        channel.queue_bind(queue=queue, exchange="amq.topic", routing_key=binding_key)
    except pika.exceptions.ChannelClosedByBroker as err:
        raise RabbitError(
            f"expected queue {queue!r} to be a durable quorum queue (or absent), but the broker "
            f"refused the declare: {err.reply_code} {err.reply_text}"
        ) from err
    except pika.exceptions.AMQPError as err:
        raise RabbitError(f"could not declare queue {queue!r}: {err!r}") from err
    finally:
        if connection.is_open:
            connection.close()
    logger.info("declared quorum queue=%s binding=amq.topic/%s", queue, binding_key)
