"""Image search over stored crops: the index follows the database, queries go to the index.

Workers store each crop's embedding in ``crop_embeddings`` in the same transaction as its
results (the database is the source of truth). One process — the API — keeps the configured
vector index in step with that table: :meth:`SearchService.sync` reads the rows after the last
id it indexed (a *watermark*) and adds them, keyed by the crop's primary key, with the crop's
camera, class and capture time as filterable metadata. Adding an id that is already present
replaces it, so a sync that is repeated after a crash does no harm. The watermark is saved beside
a folder index (``lensflow-sync.json``, written after the index's own snapshot) or a Milvus Lite
file; an index without either is rebuilt from the table when the process starts.

Queries: by crop (its stored vector) or by an uploaded image (embedded by the pipeline node
that produces the stored vectors, read through the embedding cache).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from lensflow.cloud.search.cache import Embedding, EmbeddingCache, cached_embedding, open_cache
from lensflow.cloud.search.errors import SearchError, SearchInputError
from lensflow.cloud.search.index.base import Metadata, SearchFilter, VectorIndex
from lensflow.cloud.search.index.factory import open_index
from lensflow.cloud.storage.models import Crop, CropEmbedding
from lensflow.shared.config.search import MilvusIndexConfig, SearchConfig
from lensflow.shared.images import check_image_header

logger = logging.getLogger(__name__)

SYNC_FILE = "lensflow-sync.json"
"""Name of the watermark file saved beside a folder index."""
_SYNC_BATCH = 2_000
"""Rows read and added per step of a sync."""


class QueryEmbedder(Protocol):
    """Embeds JPEG bytes (L2-normalised) with the model that embedded the stored crops."""

    @property
    def model(self) -> str:
        """The model's identifier (the embedding cache's key prefix)."""
        ...

    def __call__(self, jpeg: bytes) -> Embedding:
        """The embedding of an image."""
        ...


class SearchUnavailableError(SearchError):
    """The search cannot answer this query (no embedding for the crop, no embedder)."""


@dataclass(frozen=True)
class Neighbour:
    """A similar crop: its primary key and cosine similarity to the query."""

    crop_pk: int
    score: float


class SearchService:
    """The configured vector index, kept in step with ``crop_embeddings``.

    Args:
        config: The ``search:`` section of the cloud config.
        engine: The results database.
        embedder: Embeds uploaded images; queries by image fail clearly without one.
        index: The index to use; :func:`open_index` of ``config.index`` when None.
        cache: The embedding cache; built from ``config.cache`` when None.

    Raises:
        VectorIndexError: If the configured index cannot be opened.

    """

    def __init__(
        self,
        config: SearchConfig,
        *,
        engine: Engine,
        embedder: QueryEmbedder | None = None,
        index: VectorIndex | None = None,
        cache: EmbeddingCache | None = None,
    ) -> None:
        self.config = config
        self.engine = engine
        self.index = index if index is not None else open_index(config.index)
        self.cache = cache if cache is not None else open_cache(config.cache)
        self.embedder = embedder
        self._sync_path = _sync_path(config)
        self.watermark = self._read_watermark()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_save = time.monotonic()
        self._unsaved = 0
        self._skipped_dims: set[int] = set()

    # --- keeping the index in step ------------------------------------------------------------

    def sync(self) -> int:
        """Add the embeddings stored since the last sync to the index.

        Returns:
            How many vectors were added.

        Raises:
            SearchError: If the database cannot be read or the index refuses the vectors.

        """
        added = 0
        with self._lock:
            while True:
                rows = self._read_after(self.watermark)
                if not rows:
                    break
                added += self._add(rows)
                self.watermark = rows[-1][0]
                if len(rows) < _SYNC_BATCH:
                    break
            self._unsaved += added
            if self._unsaved and time.monotonic() - self._last_save >= self.config.save_interval_s:
                self._save()
        if added:
            logger.info("search index: %d vectors added, watermark %d", added, self.watermark)
        return added

    def _read_after(self, watermark: int) -> list[tuple[int, int, bytes, int, str, str, object]]:
        query = (
            select(
                CropEmbedding.id,
                CropEmbedding.crop_pk,
                CropEmbedding.vector,
                CropEmbedding.dim,
                Crop.camera,
                Crop.class_name,
                Crop.captured_at,
            )
            .join(Crop, Crop.id == CropEmbedding.crop_pk)
            .where(CropEmbedding.node == self.config.node, CropEmbedding.id > watermark)
            .order_by(CropEmbedding.id)
            .limit(_SYNC_BATCH)
        )
        try:
            with self.engine.connect() as connection:
                return [tuple(row) for row in connection.execute(query)]  # type: ignore[misc]
        except SQLAlchemyError as err:
            raise SearchError(
                f"could not read crop embeddings after id {watermark}: {err}"
            ) from err

    def _add(self, rows: list[tuple[int, int, bytes, int, str, str, object]]) -> int:
        dim = self.index.dim
        usable = [row for row in rows if row[3] == dim]
        for row in rows:
            if row[3] != dim and row[3] not in self._skipped_dims:
                self._skipped_dims.add(row[3])
                logger.warning(
                    "search index expects %d-d vectors of node %r, got %d-d ones (crop_pk %d "
                    "and later): skipped; set search.index.dim to the embedding model's size",
                    dim,
                    self.config.node,
                    row[3],
                    row[1],
                )
        if not usable:
            return 0
        ids = np.asarray([row[1] for row in usable], dtype=np.int64)
        vectors = np.stack([np.frombuffer(row[2], dtype="<f4") for row in usable])
        metadata = Metadata.of((row[4], row[5], row[6]) for row in usable)  # type: ignore[misc]
        self.index.add(ids, vectors, metadata)
        return len(usable)

    def save(self) -> None:
        """Save the index, then the watermark (a crash between only repeats some adds)."""
        with self._lock:
            self._save()

    def _save(self) -> None:
        if self._sync_path is None:
            return
        self.index.save()
        temporary = self._sync_path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"watermark": self.watermark, "node": self.config.node}))
        temporary.replace(self._sync_path)
        self._last_save, self._unsaved = time.monotonic(), 0

    def _read_watermark(self) -> int:
        if self._sync_path is None or not self._sync_path.is_file():
            return 0
        try:
            state = json.loads(self._sync_path.read_text())
            if state.get("node") != self.config.node:
                logger.warning("search index was built from node %r: rebuilding", state.get("node"))
                return 0
            return int(state["watermark"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            logger.warning("unreadable %s (%s): rebuilding the index", self._sync_path, err)
            return 0

    def start(self) -> None:
        """Sync now and then every ``sync_interval_s`` on a background thread."""
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="search-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background sync and save what it added."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        try:
            self.save()
        except SearchError as err:
            logger.error("could not save the search index at shutdown: %s", err)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.sync()
            except Exception:  # a long-running loop: log, wait, try again
                logger.exception("search index sync failed; retrying")
            self._stopping.wait(self.config.sync_interval_s)

    # --- queries ----------------------------------------------------------------------------

    def vector_of(self, crop_pk: int) -> Embedding | None:
        """The stored embedding of a crop (of the configured node), or None."""
        query = select(CropEmbedding.vector).where(
            CropEmbedding.crop_pk == crop_pk, CropEmbedding.node == self.config.node
        )
        try:
            with self.engine.connect() as connection:
                blob = connection.scalar(query)
        except SQLAlchemyError as err:
            raise SearchError(f"could not read the embedding of crop {crop_pk}: {err}") from err
        return None if blob is None else np.frombuffer(blob, dtype="<f4")

    def similar_to_crop(
        self, crop_pk: int, *, k: int, filters: SearchFilter | None = None
    ) -> list[Neighbour]:
        """The ``k`` crops most similar to a stored crop (itself left out), best first.

        Raises:
            SearchUnavailableError: If the crop has no stored embedding.

        """
        vector = self.vector_of(crop_pk)
        if vector is None:
            raise SearchUnavailableError(
                f"crop {crop_pk} has no embedding from node {self.config.node!r} (crops stored "
                "before that node was in the pipeline, or where it failed, have none)"
            )
        self.sync()  # read-your-writes: a crop just stored is findable at once
        hits = self.index.search(vector, k=k + 1, filters=filters)
        return [Neighbour(int(pk), float(score)) for pk, score in hits if pk != crop_pk][:k]

    def similar_to_image(
        self, jpeg: bytes, *, k: int, filters: SearchFilter | None = None
    ) -> list[Neighbour]:
        """The ``k`` crops most similar to an uploaded image, best first.

        The image's header is checked (:func:`~lensflow.shared.images.check_image_header`,
        ``search.max_image_pixels``) before anything else: the embedder is not loaded, the
        cache not read and nothing decoded for an image that declares too many pixels.

        Raises:
            SearchUnavailableError: If no embedder is loaded.
            ImageError: If the bytes are not an image, or declare more than
                ``search.max_image_pixels``.

        """
        check_image_header(jpeg, what="query image", max_pixels=self.config.max_image_pixels)
        if self.embedder is None:
            raise SearchUnavailableError(
                f"search by image needs the pipeline node {self.config.node!r} to be loadable "
                "in the API process"
            )
        embedder = self.embedder
        vector = cached_embedding(self.cache, jpeg, model=embedder.model, compute=embedder)
        if vector.shape != (self.index.dim,):
            raise SearchInputError(
                f"expected a {self.index.dim}-d embedding from node {self.config.node!r}, got "
                f"shape {vector.shape}"
            )
        self.sync()
        return [
            Neighbour(int(pk), float(s))
            for pk, s in self.index.search(vector, k=k, filters=filters)
        ]


def _sync_path(config: SearchConfig) -> Path | None:
    """Where the watermark is saved: beside a folder index or a Milvus Lite file."""
    index = config.index
    if isinstance(index, MilvusIndexConfig):
        if index.uri.endswith(".db"):
            return Path(f"{index.uri}.{SYNC_FILE}")
        return None
    return None if index.path is None else Path(index.path) / SYNC_FILE
