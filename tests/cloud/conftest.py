"""Cloud-tier fixtures: a database URL for each supported dialect."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.support.postgres import PostgresCluster, postgres_cluster, postgres_url

__all__ = ["db_url", "postgres_cluster", "postgres_url"]


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file in tmp_path, or a fresh database on the session cluster.

    The cluster is only started when a PostgreSQL case runs (``-k sqlite`` needs none).
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'lensflow.sqlite3'}"
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    url = cluster.create_database()
    try:
        yield url
    finally:
        cluster.drop_database(make_url(url).database or "")
