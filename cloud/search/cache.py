"""Embeddings cached by the content hash of the JPEG they were computed from.

The same crop bytes always give the same embedding for a given model, so the key is
``<model>:<sha256 of the JPEG>`` (:func:`cache_key`): a new model version never reads the
old one's vectors. Two caches share the :class:`EmbeddingCache` interface:

- :class:`MemoryEmbeddingCache` — an in-process LRU (optionally with a TTL), the default.
- :class:`RedisEmbeddingCache` — Redis, shared by every process; vectors are stored as raw
  little-endian float32 bytes (5 KiB for 1280 floats), with an optional expiry. When Redis
  fails, it logs once, answers "not cached" and skips Redis for ``retry_after_s``: callers
  compute the embedding instead, nothing raises.

:func:`cached_embedding` is the read-through helper callers use.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np
import redis
from cachetools import Cache, LRUCache, TTLCache
from numpy.typing import NDArray
from redis.backoff import NoBackoff
from redis.retry import Retry

from lensflow.shared.config.search import CacheConfig, MemoryCacheConfig, RedisCacheConfig

logger = logging.getLogger(__name__)

Embedding = NDArray[np.float32]


def cache_key(jpeg: bytes, *, model: str) -> str:
    """``<model>:<sha256 hex of jpeg>``: the key of an embedding of ``jpeg`` by ``model``."""
    return f"{model}:{hashlib.sha256(jpeg).hexdigest()}"


class EmbeddingCache(Protocol):
    """Embeddings by key; a miss is ``None``, never an error."""

    def get(self, key: str) -> Embedding | None:
        """The cached embedding (read-only), or ``None``."""
        ...

    def put(self, key: str, vector: Embedding) -> None:
        """Cache ``vector`` under ``key`` (stored as float32)."""
        ...


def cached_embedding(
    cache: EmbeddingCache,
    jpeg: bytes,
    *,
    model: str,
    compute: Callable[[bytes], Embedding],
) -> Embedding:
    """The embedding of ``jpeg`` from ``cache``, or from ``compute`` (then cached).

    Args:
        cache: Where embeddings are kept.
        jpeg: The image bytes (their sha256 is the key).
        model: Name and version of the embedding model (part of the key).
        compute: Computes the embedding of the bytes on a miss.

    Returns:
        A 1-d float32 vector.

    """
    key = cache_key(jpeg, model=model)
    found = cache.get(key)
    if found is not None:
        return found
    vector = np.ascontiguousarray(compute(jpeg), dtype=np.float32).reshape(-1)
    cache.put(key, vector)
    return vector


def _frozen(vector: Embedding) -> Embedding:
    """A read-only float32 copy of ``vector`` as a 1-d array."""
    copy = np.array(vector, dtype=np.float32).reshape(-1)
    copy.flags.writeable = False
    return copy


class MemoryEmbeddingCache:
    """An in-process LRU of embeddings; thread-safe.

    Args:
        max_entries: Embeddings kept; adding one more evicts the least recently used.
        ttl_s: Forget an embedding this long after it was put; never when ``None``.
        clock: Monotonic seconds (tests pass a fake one to expire entries).

    """

    def __init__(
        self,
        *,
        max_entries: int = 50_000,
        ttl_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries: Cache[str, Embedding] = (
            LRUCache(maxsize=max_entries)
            if ttl_s is None
            else TTLCache(maxsize=max_entries, ttl=ttl_s, timer=clock)
        )
        self._lock = threading.Lock()

    def get(self, key: str) -> Embedding | None:
        """The cached embedding (read-only), or ``None``."""
        with self._lock:
            return self._entries.get(key)

    def put(self, key: str, vector: Embedding) -> None:
        """Cache a read-only float32 copy of ``vector``."""
        with self._lock:
            self._entries[key] = _frozen(vector)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


class RedisEmbeddingCache:
    """Embeddings in Redis as raw float32 bytes; degrades to "always miss" when Redis fails.

    Args:
        client: A redis-py client (its own timeouts apply; see :meth:`from_url`).
        key_prefix: Prefix of every key.
        ttl_s: Expiry of each embedding; none when ``None``.
        retry_after_s: After an error, skip Redis (miss, don't store) for this long.

    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        key_prefix: str = "lensflow:emb:",
        ttl_s: float | None = None,
        retry_after_s: float = 5.0,
    ) -> None:
        self._client = client
        self._prefix = key_prefix
        self._ttl_ms = None if ttl_s is None else max(1, round(ttl_s * 1000))
        self._retry_after_s = retry_after_s
        self._down_until: float | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        timeout_s: float = 0.2,
        key_prefix: str = "lensflow:emb:",
        ttl_s: float | None = None,
        retry_after_s: float = 5.0,
    ) -> RedisEmbeddingCache:
        """A cache on a new client for ``url``, with short timeouts and no client retries.

        redis-py retries a failed command itself by default; here a failure should cost one
        timeout and fall back to computing, so its retries are off.
        """
        client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        return cls(client, key_prefix=key_prefix, ttl_s=ttl_s, retry_after_s=retry_after_s)

    def get(self, key: str) -> Embedding | None:
        """The cached embedding (read-only), or ``None`` on a miss or a Redis failure."""
        if self._skipping():
            return None
        try:
            raw = self._client.get(self._prefix + key)
        except redis.RedisError as err:
            self._failed("get", err)
            return None
        self._recovered()
        if raw is None:
            return None
        data = raw if isinstance(raw, bytes) else b""
        if not data or len(data) % 4:
            logger.warning("embedding cache: bad value of %s bytes for %s, ignored", len(data), key)
            return None
        return np.frombuffer(data, dtype="<f4").astype(np.float32, copy=False)

    def put(self, key: str, vector: Embedding) -> None:
        """Store ``vector`` as float32 bytes with the configured expiry; failures are logged."""
        if self._skipping():
            return
        payload = np.ascontiguousarray(vector, dtype="<f4").tobytes()
        try:
            self._client.set(self._prefix + key, payload, px=self._ttl_ms)
        except redis.RedisError as err:
            self._failed("set", err)
            return
        self._recovered()

    def close(self) -> None:
        """Close the client's connections."""
        self._client.close()

    def _skipping(self) -> bool:
        with self._lock:
            return self._down_until is not None and time.monotonic() < self._down_until

    def _failed(self, action: str, err: redis.RedisError) -> None:
        with self._lock:
            first = self._down_until is None
            self._down_until = time.monotonic() + self._retry_after_s
        if first:
            logger.warning(
                "embedding cache: redis %s failed (%s: %s); computing embeddings without it, "
                "retrying in %.1f s",
                action,
                type(err).__name__,
                err,
                self._retry_after_s,
            )

    def _recovered(self) -> None:
        with self._lock:
            was_down, self._down_until = self._down_until is not None, None
        if was_down:
            logger.info("embedding cache: redis is back")


def open_cache(config: CacheConfig) -> EmbeddingCache:
    """The embedding cache ``config`` describes (no connection is made yet for Redis)."""
    match config:
        case MemoryCacheConfig():
            return MemoryEmbeddingCache(max_entries=config.max_entries, ttl_s=config.ttl_s)
        case RedisCacheConfig():
            return RedisEmbeddingCache.from_url(
                config.url.get_secret_value(),
                timeout_s=config.timeout_s,
                key_prefix=config.key_prefix,
                ttl_s=config.ttl_s,
                retry_after_s=config.retry_after_s,
            )
