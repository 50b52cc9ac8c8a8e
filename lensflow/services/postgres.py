"""A private, throwaway PostgreSQL cluster run as a supervised child, for tests and benchmarks.

:class:`PostgresCluster` runs ``initdb`` in a new folder under /tmp, runs ``postgres -D`` in
the foreground as a :class:`~lensflow.services.process.ManagedProcess` on a free loopback
port and creates the ``lensflow`` database. The folder is under /tmp because, when this runs
as root, the server runs as user ``postgres`` (it refuses root), who could not enter a 0700
folder such as pytest's ``tmp_path``. The server runs with ``fsync=off``: its data is thrown
away when it stops. It never touches a system cluster (which may listen on 5432).
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path

import psycopg

from lensflow.services.process import (
    ManagedProcess,
    ProcessError,
    ServiceError,
    free_port,
    user_popen_kwargs,
)
from lensflow.services.readiness import Readiness

logger = logging.getLogger(__name__)

DATABASE = "lensflow"
SUPERUSER = "postgres"
_START_ATTEMPTS = 3  # the free port can be taken between free_port() and the server's bind
_START_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 60.0
_LOG_TAIL_LINES = 40


class PostgresError(ServiceError):
    """The private PostgreSQL cluster could not be found, created or started."""


def find_bindir() -> Path:
    """The folder of ``initdb``/``postgres``: ``$PG_BINDIR``, PATH, or the newest Debian one.

    Raises:
        PostgresError: If no folder holds both programs.

    """
    candidates = [os.environ.get("PG_BINDIR", "")]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).resolve().parent))
    candidates += sorted((str(p) for p in Path("/usr/lib/postgresql").glob("*/bin")), reverse=True)
    for folder in candidates:
        if folder and (Path(folder) / "initdb").is_file() and (Path(folder) / "postgres").is_file():
            return Path(folder)
    raise PostgresError(
        "expected PostgreSQL server binaries (initdb, postgres) in $PG_BINDIR, on PATH or in "
        "/usr/lib/postgresql/*/bin, got none: apt-get install postgresql"
    )


class PostgresCluster:
    """A throwaway PostgreSQL cluster: data, socket and log in one folder under /tmp.

    Use it as a context manager (start on enter, stop and delete on exit), or call
    :meth:`start` and :meth:`stop`.

    Args:
        bindir: Folder of ``initdb`` and ``postgres``; :func:`find_bindir` when None.
        settings: Extra server settings (``name=value``), e.g. ``shared_buffers=256MB``.

    Raises:
        PostgresError: If no server binaries are found.

    """

    def __init__(self, bindir: Path | None = None, *, settings: Sequence[str] = ()) -> None:
        self.bindir = bindir or find_bindir()
        self.settings = tuple(settings)
        self.root = Path(tempfile.mkdtemp(prefix="lensflow-pg-", dir="/tmp"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self._user = SUPERUSER if os.geteuid() == 0 else None  # initdb and postgres refuse root
        if self._user is not None:
            account = pwd.getpwnam(self._user)
            os.chown(self.root, account.pw_uid, account.pw_gid)
        self._server: ManagedProcess | None = None

    @property
    def is_running(self) -> bool:
        """Whether the server process is alive."""
        return self._server is not None and self._server.is_running

    def _initdb(self) -> None:
        """Create the cluster's data folder (as user postgres when we are root)."""
        user = {} if self._user is None else user_popen_kwargs(self._user)
        command = [
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
            "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync",
        ]  # fmt: skip
        try:
            done = subprocess.run(  # noqa: S603 - the server's own program, no shell
                command, cwd=self.root, capture_output=True, text=True, timeout=120,
                check=False, **user,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError) as err:
            raise PostgresError(f"could not run {command[0]}: {err}") from err
        if done.returncode != 0:
            raise PostgresError(
                f"expected initdb to create {self.data}, but it exited {done.returncode}:\n"
                f"{done.stdout}{done.stderr}"
            )

    def _server_for(self, port: int) -> ManagedProcess:
        """The ``postgres`` child for a port: loopback only, socket in root, no fsync."""
        command = [
            str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(port),
            "-k", str(self.root), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
            "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
        ]  # fmt: skip
        for setting in self.settings:
            command += ["-c", setting]
        return ManagedProcess(
            command,
            name="postgres",
            log_file=self.log,
            ready=Readiness(
                lambda: self._accepts(port), f"to accept connections on 127.0.0.1:{port}"
            ),
            cwd=self.root,
            start_timeout_s=_START_TIMEOUT_S,
            stop_timeout_s=_STOP_TIMEOUT_S,
            stop_signal=signal.SIGINT,  # fast shutdown: roll back open sessions, then exit
            user=self._user,
        )

    def _accepts(self, port: int) -> bool:
        """Whether the server on ``port`` takes a connection (not "starting up")."""
        try:
            psycopg.connect(
                host="127.0.0.1", port=port, user=SUPERUSER, dbname="postgres", connect_timeout=2
            ).close()
        except psycopg.OperationalError:
            return False
        return True

    def start(self) -> None:
        """initdb, then start the server on a free port (retried if the port was taken).

        Raises:
            PostgresError: If ``initdb`` or the server start fails; with the server log tail.

        """
        self._initdb()
        for attempt in range(1, _START_ATTEMPTS + 1):
            self.port = free_port()
            self._server = server = self._server_for(self.port)
            try:
                server.start()
                break
            except ProcessError as err:
                if attempt == _START_ATTEMPTS:
                    raise PostgresError(f"postgres did not start: {err}") from err
                logger.warning("postgres start attempt %s failed: %s", attempt, err)
        logger.info("postgres started pid=%s port=%s", server.pid, self.port)
        self.create_database(DATABASE)

    def stop(self) -> None:
        """Stop the server (fast shutdown; SIGKILL after 60 s) and delete its folder."""
        try:
            if self._server is not None:
                self._server.stop()
        except ProcessError as err:
            logger.warning("postgres on port %s: %s", self.port, err)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = DATABASE) -> str:
        """SQLAlchemy URL of a database of this cluster."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = DATABASE) -> psycopg.Connection[tuple[object, ...]]:
        """A psycopg connection (autocommit) to a database of this cluster, as the superuser."""
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user=SUPERUSER, dbname=database, autocommit=True
        )

    def create_database(self, name: str | None = None) -> str:
        """Create a database (a unique name if none is given); return its URL."""
        name = name or f"t_{uuid.uuid4().hex[:16]}"
        with self.connect("postgres") as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, closing connections left open to it."""
        with self.connect("postgres") as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def __enter__(self) -> PostgresCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.stop()
