"""Image search of the cloud tier: vector index, embedding cache, product lookup.

Public API (each module imports its backend only when imported itself):

- :mod:`lensflow.shared.config.search` — :class:`~lensflow.shared.config.search.SearchConfig`, the
  ``search:``
  section of the cloud config.
- :mod:`lensflow.cloud.search.index` — the :class:`~lensflow.cloud.search.index.base.VectorIndex`
  contract with
  :class:`~lensflow.cloud.search.index.base.Metadata` and
  :class:`~lensflow.cloud.search.index.base.SearchFilter`;
  backends ``exact`` (numpy), ``faiss`` (HNSW) and ``milvus`` (Milvus Lite or a server);
  :func:`~lensflow.cloud.search.index.factory.open_index` builds the configured one.
- :mod:`lensflow.cloud.search.cache` — embeddings by the sha256 of their JPEG: in-process LRU or
  Redis.
- :mod:`lensflow.cloud.search.lookup` — :class:`~lensflow.cloud.search.lookup.ProductLookup`,
  product
  descriptions from an external HTTP provider (retries, rate limit, circuit breaker, cache).
- :mod:`lensflow.cloud.search.errors` — :class:`~lensflow.cloud.search.errors.SearchError` and its
  subclasses.
"""
