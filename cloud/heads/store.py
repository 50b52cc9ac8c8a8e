"""Heads stored in the results database, by the sha256 of their file."""

from __future__ import annotations

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from lensflow.cloud.storage.db import session_factory
from lensflow.cloud.storage.models_loop import HeadRow
from lensflow.shared.errors import ModelError


class DbHeadStore:
    """The :class:`~lensflow.shared.classifiers.head_store.HeadStore` of workers and replays.

    Args:
        engine: The results database.

    """

    def __init__(self, engine: Engine) -> None:
        self._sessions = session_factory(engine)

    def load(self, sha256: str) -> bytes:
        """The head file named ``sha256``.

        Raises:
            ModelError: No head has that digest, or the database cannot be read.

        """
        try:
            with self._sessions() as session:
                body = session.scalar(select(HeadRow.body).where(HeadRow.sha256 == sha256))
        except SQLAlchemyError as err:
            raise ModelError(f"cannot read head {sha256[:12]} from the database: {err}") from err
        if body is None:
            raise ModelError(f"expected a stored head with sha256 {sha256}, found none")
        return bytes(body)
