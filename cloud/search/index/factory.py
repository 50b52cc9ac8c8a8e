"""Build the configured :class:`VectorIndex`, importing only the backend it names."""

from __future__ import annotations

import logging

from lensflow.cloud.search.errors import VectorIndexError
from lensflow.cloud.search.index.base import VectorIndex
from lensflow.cloud.search.index.store import current_snapshot
from lensflow.shared.config.search import (
    ExactIndexConfig,
    FaissIndexConfig,
    IndexConfig,
    MilvusIndexConfig,
)

logger = logging.getLogger(__name__)


def open_index(config: IndexConfig) -> VectorIndex:
    """The index ``config`` describes, holding what was last saved at its path or URI.

    Args:
        config: One of the ``search.index`` configs (``type``: exact, faiss or milvus).

    Returns:
        The index; a folder index with no snapshot yet starts empty.

    Raises:
        VectorIndexError: If the backend's package is not installed, or the saved index
            cannot be read or does not match the config.

    """
    index: VectorIndex
    match config:
        case ExactIndexConfig():
            from lensflow.cloud.search.index.exact import ExactIndex

            index = ExactIndex(config.dim, path=config.path)
        case FaissIndexConfig():
            try:
                from lensflow.cloud.search.index.faiss_hnsw import FaissHnswIndex
            except ImportError as err:
                raise _missing("faiss-cpu", err) from err
            index = FaissHnswIndex(
                config.dim,
                m=config.m,
                ef_construction=config.ef_construction,
                ef_search=config.ef_search,
                exact_below=config.exact_below,
                path=config.path,
            )
        case MilvusIndexConfig():
            try:
                from lensflow.cloud.search.index.milvus import MilvusIndex
            except ImportError as err:
                raise _missing("pymilvus (and milvus-lite for a local file)", err) from err
            return MilvusIndex(
                config.dim,
                uri=config.uri,
                collection=config.collection,
                token=None if config.token is None else config.token.get_secret_value(),
                m=config.m,
                ef_construction=config.ef_construction,
                ef_search=config.ef_search,
                consistency_level=config.consistency_level,
                timeout_s=config.timeout_s,
            )
    if config.path is not None and current_snapshot(config.path) is not None:
        index.load()
    else:
        logger.info("search index %s starts empty path=%s", config.type, config.path)
    return index


def _missing(package: str, err: ImportError) -> VectorIndexError:
    return VectorIndexError(
        f"the configured index needs {package}, which is not importable here ({err}); "
        "install the cloud extra: pip install 'lensflow[cloud]'"
    )
