"""Image search of the cloud tier: vector index, embedding cache, product lookup.

Public API (each module imports its backend only when imported itself):

- :mod:`shared.config.search` — :class:`~shared.config.search.SearchConfig`, the ``search:``
  section of the cloud config.
- :mod:`cloud.search.index` — the :class:`~cloud.search.index.base.VectorIndex` contract with
  :class:`~cloud.search.index.base.Metadata` and :class:`~cloud.search.index.base.SearchFilter`;
  backends ``exact`` (numpy), ``faiss`` (HNSW) and ``milvus`` (Milvus Lite or a server);
  :func:`~cloud.search.index.factory.open_index` builds the configured one.
- :mod:`cloud.search.cache` — embeddings by the sha256 of their JPEG: in-process LRU or Redis.
- :mod:`cloud.search.lookup` — :class:`~cloud.search.lookup.ProductLookup`, product
  descriptions from an external HTTP provider (retries, rate limit, circuit breaker, cache).
- :mod:`cloud.search.errors` — :class:`~cloud.search.errors.SearchError` and its subclasses.
"""
