"""A real API process over a seeded database, for the review app's benchmark and tests.

:class:`ReviewApi` serves ``lensflow cloud api`` (a child process) over a fresh SQLite
database and crop store, issues keys of every role, and seeds it with synthetic crops
(:func:`tests.support.review_data.seed_crops`) or with real detected ones
(:func:`tests.support.review_real.seed_detected_crops`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from lensflow.bench.cloud_api import ApiServer, api_config
from lensflow.cloud.api import KeyStore
from lensflow.cloud.api.keys import ROLES
from lensflow.cloud.storage import FolderCropStore, ResultStore, create_engine_for, migrate
from tests.support.review_data import (
    SEARCH_NODE,
    SYNC_INTERVAL_S,
    CropEmbedder,
    SeededCrop,
    default_embedder,
    seed_crops,
)
from tests.support.review_real import seed_detected_crops


@dataclass
class ReviewApi:
    """``lensflow cloud api`` serving a database in a child process, with a key per role.

    Use as a context manager; ``tokens`` maps ``viewer``/``operator``/``admin`` to keys.
    With ``search`` on (the default), the API gets a ``search:`` section (an exact index of
    the embedder's dimension over ``search_node``) and :meth:`seed` stores a real
    embedding per crop; the embedder is :func:`default_embedder`'s unless one is given.
    """

    folder: Path
    database_url: str | None = None
    search: bool = True
    search_node: str = SEARCH_NODE
    embedder: CropEmbedder | None = None
    tokens: dict[str, str] = field(default_factory=dict)
    base_url: str = ""
    _server: ApiServer | None = None

    @property
    def url(self) -> str:
        """The database URL (a SQLite file in ``folder`` unless one was given)."""
        return self.database_url or f"sqlite:///{self.folder / 'review.sqlite3'}"

    @property
    def crops(self) -> FolderCropStore:
        """The crop store the API serves JPEGs from."""
        return FolderCropStore(self.folder / "api-crops")

    def seed(self, count: int, **options: Any) -> list[SeededCrop]:
        """Store ``count`` crops while the API runs (see :func:`seed_crops` for ``options``).

        With search on, each crop also gets its embedding; the API indexes it within
        :data:`SYNC_INTERVAL_S`.
        """
        if self.search:
            options.setdefault("embedder", self.embedder)
        engine = create_engine_for(self.url)
        try:
            return seed_crops(ResultStore(engine), self.crops, count=count, **options)
        finally:
            engine.dispose()

    def seed_detected(self, **options: Any) -> list[SeededCrop]:
        """Store real crops while the API runs: the demo's detector and DAG over its inputs.

        See :func:`tests.support.review_real.seed_detected_crops` for ``options``; the
        embeddings go under the DAG's ``embedding`` node, so serve with ``search_node`` set
        to it (:data:`tests.support.review_real.EMBEDDING_NODE`) to search them.
        """
        engine = create_engine_for(self.url)
        try:
            return seed_detected_crops(ResultStore(engine), self.crops, **options)
        finally:
            engine.dispose()

    def search_section(self) -> dict[str, Any] | None:
        """The ``search:`` section of the served config (None with search off)."""
        if not self.search:
            return None
        if self.embedder is None:
            self.embedder = default_embedder()
        index = {"type": "exact", "dim": self.embedder.dim, "path": str(self.folder / "index")}
        return {"index": index, "node": self.search_node, "sync_interval_s": SYNC_INTERVAL_S}

    def __enter__(self) -> ReviewApi:
        self.folder.mkdir(parents=True, exist_ok=True)
        engine = create_engine_for(self.url)
        try:
            migrate(engine)
            keys = KeyStore(engine)
            keys.ensure_table()
            for role in ROLES:
                self.tokens[role] = keys.create(name=f"review-{role}", role=role).token
        finally:
            engine.dispose()
        config = api_config(self.folder, url=self.url, search=self.search_section())
        self._server = ApiServer(config, folder=self.folder)
        self._server.__enter__()
        self.base_url = self._server.base_url
        return self

    def stop(self) -> None:
        """Stop the API process (SIGTERM): requests fail until :meth:`start`."""
        if self._server is not None:
            self._server.__exit__()

    def start(self) -> None:
        """Start the stopped API again on the same port, over the same database."""
        if self._server is not None:
            self._server.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.__exit__()
