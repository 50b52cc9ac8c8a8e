"""The supervision layer on real child processes: small ``python -c`` scripts.

Each script plays one kind of service: one that listens once it is up, one that dies while
starting, one that ignores SIGTERM, one that leaves a daemon behind.
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lensflow.services.process import (
    ManagedProcess,
    ProcessError,
    StopTimeoutError,
    free_port,
    read_log_tail,
)
from lensflow.services.readiness import http_200, log_line, tcp_open, tcp_port

ROOT = Path(__file__).resolve().parents[2]

# Listens on the port given as argv[1] after a short delay, like a service that loads first.
LISTENER = """
import socket, sys, time
time.sleep(0.2)
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
print("listening", flush=True)
while True:
    server.accept()[0].close()
"""

# Answers 200 on every GET (HTTP readiness).
HTTP_SERVER = """
import http.server, sys
class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Ok).serve_forever()
"""

DIES = "import sys; print('fatal: config file missing', file=sys.stderr); sys.exit(3)"

# Ignores SIGTERM, and says so once the handler is in place.
STUBBORN = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ignoring SIGTERM", flush=True)
time.sleep(60)
"""

# Starts a grandchild in a session of its own (as a daemon does), writes its pid, then idles.
DAEMONIZES = """
import subprocess, sys, time
daemon = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                          start_new_session=True)
open(sys.argv[1], "w").write(str(daemon.pid))
time.sleep(60)
"""

SLEEPS = "import time; time.sleep(60)"

# A parent that starts a sleeping child (with or without a parent-death signal), prints the
# child's pid and idles until it is killed.
PARENT = """
import signal, sys, time
from pathlib import Path
from lensflow.services.process import ManagedProcess
child = ManagedProcess(
    [sys.executable, "-c", "import time; time.sleep(60)"],
    name="child",
    log_file=Path(sys.argv[1]),
    parent_death_signal=signal.SIGTERM if sys.argv[2] == "on" else None,
)
child.start()
print(child.pid, flush=True)
time.sleep(60)
"""


def python(script: str, *args: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(script), *args]


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def gone_within(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


Spawn = Callable[..., ManagedProcess]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Make a ManagedProcess running a script (log in tmp_path); each is killed afterwards."""
    made: list[ManagedProcess] = []

    def make(script: str, *args: str, name: str = "child", **options: Any) -> ManagedProcess:
        options.setdefault("log_file", tmp_path / f"{name}.log")
        made.append(ManagedProcess(python(script, *args), name=name, **options))
        return made[-1]

    yield make
    for process in made:
        process.kill()


def test_start_returns_once_the_child_listens(spawn: Spawn) -> None:
    # given a service that listens only after loading for a while
    port = free_port()
    service = spawn(LISTENER, str(port), name="listener", ready=tcp_port(port))

    # when it is started
    service.start()

    # then it runs, listens, and its output is in its log
    assert service.is_running and service.pid is not None
    assert tcp_open(port)
    assert "listening" in service.log_tail()


def test_http_readiness_waits_for_a_200(spawn: Spawn) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/healthz"
    service = spawn(HTTP_SERVER, str(port), name="api", ready=http_200(url))

    service.start()

    assert http_200(url).check()


def test_a_child_that_dies_while_starting_is_reported_with_its_log_tail(spawn: Spawn) -> None:
    # given a service that exits with an error before it listens
    service = spawn(DIES, name="broken", ready=tcp_port(free_port()), start_timeout_s=30)

    # when it is started, then the error says what was expected, the code, and the log
    started = time.monotonic()
    with pytest.raises(ProcessError) as caught:
        service.start()
    message = str(caught.value)
    assert "expected broken to listen on 127.0.0.1:" in message
    assert "exited with code 3 while starting" in message
    assert "fatal: config file missing" in message
    # ... without waiting for the whole start timeout
    assert time.monotonic() - started < 10
    assert not service.is_running


def test_a_child_never_ready_is_killed_after_the_start_timeout(spawn: Spawn) -> None:
    service = spawn(SLEEPS, name="sleeper", ready=tcp_port(free_port()), start_timeout_s=0.5)

    with pytest.raises(ProcessError, match=r"expected sleeper to listen on .* within 0.5 s"):
        service.start()

    assert not service.is_running
    assert service.returncode == -signal.SIGKILL


def test_stop_ends_a_child_with_sigterm(spawn: Spawn) -> None:
    service = spawn(SLEEPS, name="sleeper")
    service.start()

    code = service.stop()

    assert code == -signal.SIGTERM
    assert not service.is_running


def test_a_child_ignoring_sigterm_is_killed_after_the_stop_timeout(
    tmp_path: Path, spawn: Spawn
) -> None:
    # given a child that ignores SIGTERM (once it says so)
    log = tmp_path / "stubborn.log"
    service = spawn(
        STUBBORN,
        name="stubborn",
        log_file=log,
        ready=log_line(log, "ignoring SIGTERM"),
        stop_timeout_s=0.5,
    )
    service.start()
    pid = service.pid
    assert pid is not None

    # when it is stopped, then it is SIGKILLed after the timeout and the error says so
    started = time.monotonic()
    with pytest.raises(StopTimeoutError, match=r"within 0.5 s of SIGTERM, but it did not") as err:
        service.stop()
    assert 0.5 <= time.monotonic() - started < 5
    assert err.value.returncode == -signal.SIGKILL
    assert not alive(pid)


def test_restart_keeps_the_port(spawn: Spawn) -> None:
    # given a running service on a port of its own
    port = free_port()
    service = spawn(LISTENER, str(port), name="listener", ready=tcp_port(port))
    service.start()
    first = service.pid

    # when it is restarted, then a new process listens on the same port
    service.restart()
    assert service.pid != first
    assert service.is_running and tcp_open(port)


def test_start_after_a_crash_starts_a_new_child(spawn: Spawn) -> None:
    port = free_port()
    service = spawn(LISTENER, str(port), name="listener", ready=tcp_port(port))
    service.start()
    first = service.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)  # a crash, not through the layer
    assert gone_within(first, 5) or service.returncode is not None

    service.start()

    assert service.pid != first and tcp_open(port)


def test_kill_also_ends_what_the_child_started_in_another_session(
    tmp_path: Path, spawn: Spawn
) -> None:
    # given a child that started a daemon outside its process group
    pid_file = tmp_path / "daemon.pid"
    service = spawn(DAEMONIZES, str(pid_file), name="parent", ready=log_line(pid_file, ""))
    service.start()
    deadline = time.monotonic() + 10
    while not pid_file.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    daemon = int(pid_file.read_text())
    assert alive(daemon)

    # when the child is killed, then the daemon is gone too
    assert service.kill() == -signal.SIGKILL
    assert gone_within(daemon, 5)


# Without the option a child outlives a parent killed with SIGKILL; with it, it does not.
@pytest.mark.parametrize(("option", "child_survives"), [("off", True), ("on", False)])
def test_parent_death_signal_ends_the_child_with_its_parent(
    tmp_path: Path, option: str, child_survives: bool
) -> None:
    # given a parent process whose supervised child runs
    parent = subprocess.Popen(
        python(PARENT, str(tmp_path / "child.log"), option),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert alive(child)

        # when the parent is SIGKILLed (no cleanup runs in it)
        parent.kill()
        parent.wait()

        # then the child ends too, only with the option
        assert gone_within(child, 5) is not child_survives
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)
        if parent.stdout is not None:
            parent.stdout.close()


def test_cpus_pin_the_child(tmp_path: Path, spawn: Spawn) -> None:
    cpu = min(os.sched_getaffinity(0))
    log = tmp_path / "pinned.log"
    script = "import os, time; print('cpus', sorted(os.sched_getaffinity(0)), flush=True)"
    script += "; time.sleep(60)"
    service = spawn(script, name="pinned", log_file=log, cpus={cpu}, ready=log_line(log, "cpus"))

    service.start()

    assert f"cpus [{cpu}]" in service.log_tail()


def test_the_child_gets_exactly_the_environment_given(
    tmp_path: Path, spawn: Spawn, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an environment without a variable this process has
    monkeypatch.setenv("LENSFLOW_TEST_DROPPED", "1")
    env = {k: v for k, v in os.environ.items() if k != "LENSFLOW_TEST_DROPPED"}
    env["LENSFLOW_TEST_GIVEN"] = "2"
    log = tmp_path / "env.log"
    script = "import os; print(os.environ.get('LENSFLOW_TEST_DROPPED'))"
    script += "; print(os.environ['LENSFLOW_TEST_GIVEN'])"
    service = spawn(script, name="env", log_file=log, env=env)

    # when the child runs to its end
    service.start()
    deadline = time.monotonic() + 10
    while service.is_running and time.monotonic() < deadline:
        time.sleep(0.05)

    # then it saw the given variable and not the dropped one
    assert service.returncode == 0
    assert read_log_tail([log]) == "None\n2"


@pytest.mark.skipif(os.geteuid() != 0, reason="switching user needs root")
def test_user_runs_the_child_as_that_user_without_roots_groups(tmp_path: Path) -> None:
    # given a child to run as nobody (PostgreSQL refuses root the same way)
    service = ManagedProcess(
        ["/bin/sh", "-c", "echo $(id -u) $(id -G)"],
        name="as-nobody",
        log_file=tmp_path / "as-nobody.log",
        user="nobody",
    )

    # when it runs to its end
    service.start()
    deadline = time.monotonic() + 10
    while service.is_running and time.monotonic() < deadline:
        time.sleep(0.05)

    # then it ran with nobody's ids and only nobody's group
    account = pwd.getpwnam("nobody")
    assert service.returncode == 0
    assert service.log_tail() == f"{account.pw_uid} {account.pw_gid}"


def test_the_child_tag_has_no_digits(spawn: Spawn) -> None:
    # mirakuru's exit handler kills every process whose tag contains the exiting pid as a
    # substring; a tag without digits is never killed by another process's exit
    service = spawn(SLEEPS, name="tagged")
    service.start()

    environ = Path(f"/proc/{service.pid}/environ").read_bytes().split(b"\0")
    [tag] = [entry.split(b"=", 1)[1] for entry in environ if entry.startswith(b"mirakuru_uuid=")]
    assert tag and not any(chr(byte).isdigit() for byte in tag)


def test_a_missing_program_cannot_be_run(tmp_path: Path) -> None:
    service = ManagedProcess(
        [str(tmp_path / "no-such-program")], name="ghost", log_file=tmp_path / "ghost.log"
    )

    with pytest.raises(ProcessError, match=r"could not run .*no-such-program"):
        service.start()


def test_log_tail_reads_the_last_lines_of_each_log(tmp_path: Path) -> None:
    first, second = tmp_path / "a.log", tmp_path / "b.log"
    first.write_text("".join(f"a{n}\n" for n in range(50)))
    second.write_text("b0\nb1\n")

    assert read_log_tail([first, second], lines=2) == "a48\na49\nb0\nb1"
    assert read_log_tail([tmp_path / "missing.log"]) == "(no log written)"


def test_free_port_can_be_bound() -> None:
    port = free_port()

    with socket.create_server(("127.0.0.1", port)):
        assert tcp_open(port)
