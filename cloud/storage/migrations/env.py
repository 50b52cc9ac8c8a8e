"""Alembic environment of the lensflow results database.

Run programmatically by :func:`lensflow.cloud.storage.db.migrate`, which hands over an open
connection in ``config.attributes["connection"]``; or by the alembic CLI with
``cloud/storage/alembic.ini``, where the URL comes from ``-x url=...`` or the ini's
``sqlalchemy.url``. SQLite runs in batch mode so that later migrations can alter tables.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from lensflow.cloud.storage.db import create_engine_for
from lensflow.cloud.storage.errors import StorageError
from lensflow.cloud.storage.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    """The database URL for the CLI: ``-x url=...`` first, then ``sqlalchemy.url``."""
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise StorageError("expected a database URL (-x url=... or sqlalchemy.url), got none")
    return url


def _run(connection: Connection) -> None:
    """Run the migrations on ``connection`` inside a transaction."""
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    """Write the migration SQL for ``--sql`` runs instead of executing it."""
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Run the migrations on the handed-over connection, or on a new engine."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine_for(_url())
    try:
        with engine.connect() as new_connection:
            _run(new_connection)
    finally:
        engine.dispose()


if config.config_file_name is not None:  # the CLI: logging as configured in alembic.ini
    fileConfig(config.config_file_name, disable_existing_loggers=False)

if context.is_offline_mode():
    run_offline()
else:
    run_online()
