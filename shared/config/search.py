"""Schema of the ``search:`` section of the cloud config: vector index, embedding cache, lookup.

Only pydantic and :class:`lensflow.shared.config.base.StrictModel`: importing it loads no backend
(faiss, pymilvus, redis, httpx), so a config can be validated where none is installed.

Example::

    search:
      index: {type: faiss, dim: 1280, path: var/search/index, m: 32, ef_construction: 80}
      cache: {type: redis, url: redis://127.0.0.1:6379/0, ttl_s: 604800}
      lookup: {url: https://products.example.com/v1/describe, rate_per_s: 5}
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, model_validator

from lensflow.shared.config.base import StrictModel

DEFAULT_DIM = 1280
"""Embedding size of EfficientNet-Lite0's pooled features, the default embedder."""


class ExactIndexConfig(StrictModel):
    """Brute-force inner product over every vector: exact, the recall baseline, small sets."""

    type: Literal["exact"] = "exact"
    dim: int = Field(DEFAULT_DIM, ge=1, le=65536, description="Vector dimension.")
    path: Path | None = Field(
        None, description="Folder the index is saved to and loaded from; memory only when null."
    )


class FaissIndexConfig(StrictModel):
    """FAISS HNSW graph (inner product on L2-normalised vectors), saved to a folder."""

    type: Literal["faiss"] = "faiss"
    dim: int = Field(DEFAULT_DIM, ge=1, le=65536, description="Vector dimension.")
    path: Path | None = Field(
        None, description="Folder the index is saved to and loaded from; memory only when null."
    )
    m: int = Field(32, ge=4, le=256, description="HNSW links per node (memory vs recall).")
    ef_construction: int = Field(
        40, ge=8, le=4096, description="HNSW candidate list while building (build time vs recall)."
    )
    ef_search: int = Field(
        256, ge=1, le=32768, description="HNSW candidate list per query (latency vs recall)."
    )
    exact_below: int = Field(
        20_000,
        ge=0,
        description="A filtered query matching at most this many vectors is answered exactly.",
    )


class MilvusIndexConfig(StrictModel):
    """Milvus collection: Milvus Lite for a local file URI, a Milvus server for an http URI."""

    type: Literal["milvus"] = "milvus"
    dim: int = Field(DEFAULT_DIM, ge=1, le=32768, description="Vector dimension.")
    uri: str = Field(
        "var/search/milvus.db",
        min_length=1,
        description="A local '*.db' file (Milvus Lite) or http(s)://host:19530 (server).",
    )
    token: SecretStr | None = Field(
        None, description="Server credentials ('user:password' or an API key); set from env."
    )
    collection: str = Field(
        "lensflow_crops",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$",
        description="Collection name.",
    )
    m: int = Field(32, ge=4, le=256, description="HNSW links per node.")
    ef_construction: int = Field(40, ge=8, le=4096, description="HNSW build candidate list.")
    ef_search: int = Field(256, ge=1, le=32768, description="HNSW candidate list per query.")
    consistency_level: Literal["Strong", "Session", "Bounded", "Eventually"] = Field(
        "Session", description="Read-your-writes for this client by default."
    )
    timeout_s: float = Field(10.0, gt=0, description="Timeout of each call to Milvus.")


IndexConfig = Annotated[
    ExactIndexConfig | FaissIndexConfig | MilvusIndexConfig, Field(discriminator="type")
]


class MemoryCacheConfig(StrictModel):
    """In-process LRU of embeddings (per process: lost on restart)."""

    type: Literal["memory"] = "memory"
    max_entries: int = Field(50_000, ge=1, description="Embeddings kept; the least recent go.")
    ttl_s: float | None = Field(None, gt=0, description="Forget an embedding after this long.")


class RedisCacheConfig(StrictModel):
    """Embeddings in Redis, shared by every worker and API process."""

    type: Literal["redis"] = "redis"
    url: SecretStr = Field(
        SecretStr("redis://127.0.0.1:6379/0"), description="redis:// URL; set it from env."
    )
    key_prefix: str = Field("lensflow:emb:", description="Prefix of every key.")
    ttl_s: float | None = Field(
        7 * 86400.0, gt=0, description="Expiry of each embedding; none when null."
    )
    timeout_s: float = Field(0.2, gt=0, le=30, description="Connect and socket timeout.")
    retry_after_s: float = Field(
        5.0, ge=0, description="After a Redis error, compute without it for this long."
    )


CacheConfig = Annotated[MemoryCacheConfig | RedisCacheConfig, Field(discriminator="type")]


class ProductLookupConfig(StrictModel):
    """External product provider: descriptions for an image, over HTTP."""

    url: str = Field(pattern=r"^https?://", description="Endpoint that takes a JPEG by POST.")
    api_key: SecretStr | None = Field(
        None, description="Bearer key; when null, read from the variable named by api_key_env."
    )
    api_key_env: str = Field(
        "LENSFLOW_PRODUCT_API_KEY", description="Environment variable holding the key."
    )
    connect_timeout_s: float = Field(2.0, gt=0, description="TCP/TLS connect timeout.")
    timeout_s: float = Field(5.0, gt=0, description="Read/write timeout of one attempt.")
    max_attempts: int = Field(3, ge=1, le=10, description="Attempts per image, first included.")
    backoff_s: float = Field(0.2, gt=0, description="Base of the exponential backoff (jittered).")
    backoff_max_s: float = Field(5.0, gt=0, description="Longest backoff between attempts.")
    max_retry_after_s: float = Field(
        30.0, ge=0, description="A 429 asking to wait longer than this fails at once."
    )
    rate_per_s: float = Field(10.0, gt=0, description="Requests per second (token bucket).")
    burst: int = Field(10, ge=1, description="Requests allowed at once (bucket size).")
    breaker_failures: int = Field(
        5, ge=1, description="Consecutive failed attempts that open the circuit breaker."
    )
    breaker_cooldown_s: float = Field(
        30.0, gt=0, description="Open breaker lets a trial request through after this long."
    )
    cache_ttl_s: float = Field(3600.0, gt=0, description="How long an answer is reused.")
    cache_max_entries: int = Field(10_000, ge=1, description="Answers kept (LRU).")

    @model_validator(mode="after")
    def _backoff_order(self) -> ProductLookupConfig:
        if self.backoff_max_s < self.backoff_s:
            raise ValueError(
                f"backoff_max_s must be >= backoff_s, but got {self.backoff_max_s} < "
                f"{self.backoff_s}"
            )
        return self


class SearchConfig(StrictModel):
    """Image search: where vectors live, how embeddings are cached, optional product lookup."""

    index: IndexConfig = Field(
        default_factory=ExactIndexConfig, description="Vector index backend."
    )
    cache: CacheConfig = Field(default_factory=MemoryCacheConfig, description="Embedding cache.")
    lookup: ProductLookupConfig | None = Field(
        None, description="External product descriptions; off when null."
    )
    node: str = Field(
        "embedding",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="The pipeline node whose output `vector` is indexed and embeds query images.",
    )
    sync_interval_s: float = Field(
        2.0, gt=0, le=3600, description="How often the API adds newly stored embeddings."
    )
    save_interval_s: float = Field(
        60.0, ge=0, description="Least time between saves of a folder index while syncing."
    )
    max_image_pixels: int = Field(
        50_000_000,
        ge=1,
        description="A query image (POST /v1/search/image) declaring more pixels in its header "
        "is refused before decoding (400).",
    )
