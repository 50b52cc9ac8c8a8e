"""A private, throwaway PostgreSQL cluster run as a child process, for tests and benchmarks.

:class:`PostgresCluster` runs ``initdb`` in a new folder under /tmp, starts the server with
``pg_ctl`` on a free loopback port and creates the ``lensflow`` database. The folder is under
/tmp because, when this runs as root, the server runs as user ``postgres`` (``initdb``
refuses root), who could not enter a 0700 folder such as pytest's ``tmp_path``. The server
runs with ``fsync=off``: its data is thrown away when it stops. It never touches a system
cluster (which may listen on 5432).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import psycopg

from lensflow.broker import free_port
from lensflow.shared.errors import LensflowError

DATABASE = "lensflow"
SUPERUSER = "postgres"
_START_ATTEMPTS = 3  # the free port can be taken between free_port() and the server's bind
_LOG_TAIL_CHARS = 4000


class PostgresError(LensflowError):
    """The private PostgreSQL cluster could not be found, created or started."""


def find_bindir() -> Path:
    """The folder of ``initdb``/``pg_ctl``: ``$PG_BINDIR``, PATH, or the newest Debian one.

    Raises:
        PostgresError: If no folder holds both programs.

    """
    candidates = [os.environ.get("PG_BINDIR", "")]
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(str(Path(on_path).resolve().parent))
    candidates += sorted((str(p) for p in Path("/usr/lib/postgresql").glob("*/bin")), reverse=True)
    for folder in candidates:
        if folder and (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    raise PostgresError(
        "expected PostgreSQL server binaries (initdb, pg_ctl) in $PG_BINDIR, on PATH or in "
        "/usr/lib/postgresql/*/bin, got none: apt-get install postgresql"
    )


class PostgresCluster:
    """A throwaway PostgreSQL cluster: data, socket and log in one folder under /tmp.

    Use it as a context manager (start on enter, stop and delete on exit), or call
    :meth:`start` and :meth:`stop`.

    Args:
        bindir: Folder of ``initdb`` and ``pg_ctl``; :func:`find_bindir` when None.
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
        self._as_postgres = os.geteuid() == 0  # initdb refuses to run as root
        if self._as_postgres:
            account = pwd.getpwnam("postgres")
            os.chown(self.root, account.pw_uid, account.pw_gid)

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a server program (as user postgres when we are root)."""
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        return subprocess.run(  # noqa: S603 - the server's own programs, no shell
            [*prefix, *args], capture_output=True, text=True, timeout=120, check=False
        )

    def _log_tail(self) -> str:
        """The end of the server log (where a failed start says why)."""
        return self.log.read_text(errors="replace")[-_LOG_TAIL_CHARS:] if self.log.exists() else ""

    def _checked(self, *args: str) -> None:
        """Run a server program; raise with its output if it fails."""
        done = self._run(*args)
        if done.returncode != 0:
            raise PostgresError(
                f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}\n"
                f"{self._log_tail()}"
            )

    def start(self) -> None:
        """initdb, then start the server on a free port (retried if the port was taken).

        Raises:
            PostgresError: If ``initdb`` or the server start fails.

        """
        self._checked(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
            "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        extra = "".join(f" -c {setting}" for setting in self.settings)
        for attempt in range(1, _START_ATTEMPTS + 1):
            self.port = free_port()
            options = (
                f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
                f"-c fsync=off -c synchronous_commit=off -c full_page_writes=off{extra}"
            )
            done = self._run(
                str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                "-o", options, "-w", "-t", "60", "start",
            )  # fmt: skip
            if done.returncode == 0:
                break
            if attempt == _START_ATTEMPTS:
                raise PostgresError(
                    f"pg_ctl start failed:\n{done.stdout}{done.stderr}\n{self._log_tail()}"
                )
        self.create_database(DATABASE)

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its folder."""
        if self.data.exists():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop")
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

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self.stop()
