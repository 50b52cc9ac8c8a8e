"""A private PostgreSQL cluster for the whole test session.

Import the fixtures into a conftest (``from tests.support.postgres import postgres_cluster,
postgres_url``). ``initdb`` takes a few seconds, so there is one cluster per session, on a
free loopback port, in a folder under /tmp (pytest's tmp_path is 0700: when the tests run as
root, the server runs as user ``postgres``, who could not enter it). It runs with
``fsync=off``: its data is thrown away at the end. Tests that need isolation create their own
database (:meth:`PostgresCluster.create_database`). Nothing is skipped: without the server
binaries the fixture fails with the install command.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from lensflow.broker import free_port

DATABASE = "lensflow"
SUPERUSER = "postgres"
_START_ATTEMPTS = 3  # the free port can be taken between free_port() and the server's bind


def find_bindir() -> Path:
    """The folder of ``initdb``/``pg_ctl``: ``$PG_BINDIR``, PATH, or the newest Debian one."""
    candidates = [os.environ.get("PG_BINDIR", "")]
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(str(Path(on_path).resolve().parent))
    candidates += sorted((str(p) for p in Path("/usr/lib/postgresql").glob("*/bin")), reverse=True)
    for folder in candidates:
        if folder and (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    raise RuntimeError(
        "expected PostgreSQL server binaries (initdb, pg_ctl) in $PG_BINDIR, on PATH or in "
        "/usr/lib/postgresql/*/bin, got none: apt-get install postgresql"
    )


class PostgresCluster:
    """A throwaway PostgreSQL cluster: data, socket and log in one folder under /tmp."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="lensflow-pg-", dir="/tmp"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self._as_postgres = os.geteuid() == 0  # initdb refuses to run as root
        if self._as_postgres:
            account = pwd.getpwnam("postgres")
            os.chown(self.root, account.pw_uid, account.pw_gid)

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        return subprocess.run(
            [*prefix, *args], capture_output=True, text=True, timeout=120, check=False
        )

    def _checked(self, *args: str) -> None:
        done = self._run(*args)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}\n{log}"
            )

    def start(self) -> None:
        """initdb, then start the server on a free port; retry if the port was taken."""
        self._checked(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
            "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        for attempt in range(1, _START_ATTEMPTS + 1):
            self.port = free_port()
            options = (
                f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            done = self._run(
                str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                "-o", options, "-w", "-t", "60", "start",
            )  # fmt: skip
            if done.returncode == 0:
                break
            if attempt == _START_ATTEMPTS:
                log = self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
                raise RuntimeError(f"pg_ctl start failed:\n{done.stdout}{done.stderr}\n{log}")
        self.create_database(DATABASE)

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its folder."""
        if self.data.exists():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = DATABASE) -> str:
        """SQLAlchemy URL of a database of this cluster."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres", autocommit=True
        )

    def create_database(self, name: str | None = None) -> str:
        """Create a database (a unique name if none is given); return its URL."""
        name = name or f"t_{uuid.uuid4().hex[:16]}"
        with self._admin() as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, closing connections a test left open."""
        with self._admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A running PostgreSQL cluster on a free loopback port; stopped at the session's end."""
    try:
        cluster = PostgresCluster(find_bindir())
    except RuntimeError as err:
        pytest.fail(str(err), pytrace=False)
    try:
        cluster.start()
    except RuntimeError as err:
        cluster.stop()
        pytest.fail(f"could not start the test PostgreSQL cluster: {err}", pytrace=False)
    try:
        yield cluster
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            cluster.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """URL of the session cluster's ``lensflow`` database (shared by the whole session)."""
    return postgres_cluster.url()
