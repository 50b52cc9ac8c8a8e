"""Engines, sessions and migrations for the results database (SQLite or PostgreSQL).

``migrate`` runs the Alembic migrations shipped inside this package
(``cloud/storage/migrations``) with a config built in code: no ``alembic.ini`` is needed at
run time. ``cloud/storage/alembic.ini`` is for the alembic CLI
(``alembic -c cloud/storage/alembic.ini -x url=... upgrade head``).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from lensflow.cloud.storage.errors import StorageError

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
"""The Alembic environment that ships with this package."""
DEFAULT_BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite writer waits for another one's lock before failing."""
_MIGRATION_LOCK = 0x6C656E73666C6F77  # "lensflow": the PostgreSQL advisory lock of migrate()


def create_engine_for(url: str, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> Engine:
    """Create an engine set up for lensflow's use of the database behind ``url``.

    SQLite: WAL journal, ``busy_timeout``, foreign keys on (set on every connection), usable
    from any thread; the folder of a database file is created if missing. PostgreSQL: a
    pool that pings connections before use; ``postgresql://`` means the psycopg 3 driver.

    Args:
        url: A SQLAlchemy URL: ``sqlite:///path/to/file.sqlite3`` (``sqlite://`` for an
            in-memory database) or ``postgresql+psycopg://user@host:port/db``.
        busy_timeout_ms: SQLite only: how long to wait for a lock held by another writer.

    Returns:
        The engine (connections are opened lazily).

    Raises:
        StorageError: If the URL cannot be parsed or names another database.

    """
    try:
        parsed = make_url(url)
    except ArgumentError as err:
        raise StorageError(f"expected a SQLAlchemy database URL, got {url!r}: {err}") from err
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed, busy_timeout_ms=busy_timeout_ms)
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(parsed, pool_pre_ping=True)
    shown = parsed.render_as_string(hide_password=True)
    raise StorageError(f"expected a sqlite:// or postgresql+psycopg:// URL, got {shown!r}")


def _sqlite_engine(url: URL, *, busy_timeout_ms: int) -> Engine:
    """A SQLite engine with WAL, a busy timeout and foreign keys on every connection."""
    connect_args: dict[str, Any] = {"check_same_thread": False}
    database = url.database or ""
    if database in ("", ":memory:"):
        # one shared connection, or each checkout would see a different empty database
        engine = create_engine(url, connect_args=connect_args, poolclass=StaticPool)
    else:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args=connect_args)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            _enable_wal(cursor, timeout_ms=busy_timeout_ms)
            cursor.execute("PRAGMA synchronous = NORMAL")  # durable enough under WAL
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    return engine


def _enable_wal(cursor: Any, *, timeout_ms: int) -> None:
    """Switch the database file to WAL (it stays so); retry while another connection locks it.

    SQLite does not call the busy handler for this switch: two connections opening a new
    database at once got "database is locked" without waiting.
    """
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        try:
            mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
            if mode in ("wal", "memory"):  # in-memory databases have no WAL
                return
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Return a session factory bound to ``engine``.

    Objects stay usable after commit (``expire_on_commit=False``), so a repository can hand
    loaded rows to callers after its session closed.

    Args:
        engine: An engine from :func:`create_engine_for`.

    Returns:
        A ``sessionmaker`` producing ORM sessions on ``engine``.

    """
    return sessionmaker(bind=engine, expire_on_commit=False)


def alembic_config(url: str | None = None) -> Config:
    """Build the Alembic config of the shipped migrations, without an ini file.

    Args:
        url: Database URL for the migration environment to connect to, if no connection is
            handed over in ``config.attributes["connection"]``.

    Returns:
        An Alembic ``Config`` whose ``script_location`` is this package's migrations folder.

    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _lock_for_migration(connection: Connection) -> None:
    """Serialise concurrent migrations (workers starting together) until the commit."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    elif connection.dialect.name == "sqlite":
        # pysqlite opens no transaction before DDL: take the write lock now, so the whole
        # upgrade is one transaction and a second migrator waits (busy_timeout), then finds
        # the schema at head
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def migrate(target: str | Engine, *, revision: str = "head") -> None:
    """Upgrade the database schema to ``revision`` (``alembic upgrade head`` by default).

    Running it again on an up-to-date database does nothing.

    Args:
        target: A database URL, or an engine (required for an in-memory SQLite database,
            whose schema would otherwise vanish with the migration's own connection).
        revision: The Alembic revision to upgrade to.

    Raises:
        StorageError: If the database cannot be reached or a migration fails.

    """
    engine = create_engine_for(target) if isinstance(target, str) else target
    try:
        with engine.begin() as connection:
            _lock_for_migration(connection)
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    except (SQLAlchemyError, CommandError) as err:
        shown = engine.url.render_as_string(hide_password=True)
        raise StorageError(f"could not migrate {shown} to {revision}: {err}") from err
    finally:
        if isinstance(target, str):
            engine.dispose()
    logger.info(
        "database %s migrated to %s", engine.url.render_as_string(hide_password=True), revision
    )
