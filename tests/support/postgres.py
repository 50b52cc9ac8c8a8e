"""A private PostgreSQL cluster for the whole test session.

Import the fixtures into a conftest (``from tests.support.postgres import postgres_cluster,
postgres_url``). ``initdb`` takes a few seconds, so there is one cluster per session, on a
free loopback port, in a folder under /tmp (see :mod:`lensflow.services.postgres`, which the
benchmarks share). Tests that need isolation create their own database
(:meth:`PostgresCluster.create_database`). Nothing is skipped: without the server binaries
the fixture fails with the install command.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator

import pytest

from lensflow.services.postgres import (
    DATABASE,
    SUPERUSER,
    PostgresCluster,
    PostgresError,
    find_bindir,
)

__all__ = [
    "DATABASE",
    "SUPERUSER",
    "PostgresCluster",
    "find_bindir",
    "postgres_cluster",
    "postgres_url",
]


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A running PostgreSQL cluster on a free loopback port; stopped at the session's end."""
    try:
        cluster = PostgresCluster(find_bindir())
    except PostgresError as err:
        pytest.fail(str(err), pytrace=False)
    try:
        cluster.start()
    except PostgresError as err:
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
