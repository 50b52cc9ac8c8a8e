"""Embedding caches: in-process LRU, a real Redis, and Redis going away."""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import pytest
import redis

from lensflow.cloud.search.cache import (
    MemoryEmbeddingCache,
    RedisEmbeddingCache,
    cache_key,
    cached_embedding,
    open_cache,
)
from lensflow.shared.config.search import RedisCacheConfig
from tests.support.redis import RedisServer

MODEL = "efficientnet-lite0@1"


class CountingEmbedder:
    """A deterministic embedder that counts its calls."""

    def __init__(self, dim: int = 1280) -> None:
        self.dim = dim
        self.calls = 0

    def __call__(self, jpeg: bytes) -> np.ndarray:
        self.calls += 1
        seed = int.from_bytes(jpeg[:8].ljust(8, b"\0"), "little")
        return np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)


def test_key_is_the_model_and_the_sha256_of_the_bytes() -> None:
    key = cache_key(b"jpeg", model=MODEL)
    assert key == f"{MODEL}:{hashlib.sha256(b'jpeg').hexdigest()}"
    # another model version never reads this one's vectors
    assert cache_key(b"jpeg", model="efficientnet-lite0@2") != key


def test_memory_cache_computes_each_image_once() -> None:
    cache, embed = MemoryEmbeddingCache(max_entries=10), CountingEmbedder()
    first = cached_embedding(cache, b"image-a", model=MODEL, compute=embed)
    second = cached_embedding(cache, b"image-a", model=MODEL, compute=embed)
    assert embed.calls == 1
    np.testing.assert_array_equal(first, second)
    assert second.dtype == np.float32 and not second.flags.writeable


def test_memory_cache_evicts_the_least_recently_used() -> None:
    cache = MemoryEmbeddingCache(max_entries=2)
    vector = np.ones(4, np.float32)
    cache.put("a", vector)
    cache.put("b", vector)
    assert cache.get("a") is not None  # a is now more recent than b
    cache.put("c", vector)
    assert cache.get("b") is None
    assert cache.get("a") is not None and cache.get("c") is not None
    assert len(cache) == 2


def test_memory_cache_forgets_after_its_ttl() -> None:
    now = [100.0]
    cache = MemoryEmbeddingCache(max_entries=10, ttl_s=60, clock=lambda: now[0])
    cache.put("a", np.ones(4, np.float32))
    now[0] += 59
    assert cache.get("a") is not None
    now[0] += 2
    assert cache.get("a") is None


def test_redis_cache_stores_compact_float32_with_a_ttl(redis_server: RedisServer) -> None:
    cache = open_cache(RedisCacheConfig(url=redis_server.url, ttl_s=120, key_prefix="t:"))
    embed = CountingEmbedder(dim=1280)
    vector = cached_embedding(cache, b"image-a", model=MODEL, compute=embed)
    again = cached_embedding(cache, b"image-a", model=MODEL, compute=embed)
    assert embed.calls == 1
    np.testing.assert_array_equal(vector, again)
    # stored as 1280 raw float32 bytes with a TTL, under the prefix
    raw = redis.Redis.from_url(redis_server.url)
    name = "t:" + cache_key(b"image-a", model=MODEL)
    assert raw.strlen(name) == 1280 * 4
    assert 0 < raw.pttl(name) <= 120_000
    raw.close()


def test_redis_cache_is_shared_between_processes(redis_server: RedisServer) -> None:
    writer = RedisEmbeddingCache.from_url(redis_server.url)
    reader = RedisEmbeddingCache.from_url(redis_server.url)
    writer.put("k", np.arange(8, dtype=np.float32))
    np.testing.assert_array_equal(reader.get("k"), np.arange(8, dtype=np.float32))


def test_redis_down_falls_back_to_computing_and_logs_once(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    cache = RedisEmbeddingCache.from_url(redis_server.url, timeout_s=0.2, retry_after_s=0.0)
    embed = CountingEmbedder(dim=16)
    cached_embedding(cache, b"image-a", model=MODEL, compute=embed)
    # when Redis goes away
    redis_server.stop()
    with caplog.at_level(logging.INFO, logger="lensflow.cloud.search.cache"):
        vectors = [
            cached_embedding(cache, b"image-a", model=MODEL, compute=embed) for _ in range(3)
        ]
    # then every call computes, none raises, and the outage is logged once
    assert embed.calls == 4
    assert all(v.shape == (16,) for v in vectors)
    assert sum("failed" in r.getMessage() for r in caplog.records) == 1
    # when it comes back (empty: it saves nothing), the cache works again
    redis_server.start()
    with caplog.at_level(logging.INFO, logger="lensflow.cloud.search.cache"):
        cached_embedding(cache, b"image-a", model=MODEL, compute=embed)
        cached_embedding(cache, b"image-a", model=MODEL, compute=embed)
    assert embed.calls == 5
    assert any("back" in r.getMessage() for r in caplog.records)


def test_redis_unreachable_from_the_start_never_raises() -> None:
    cache = RedisEmbeddingCache.from_url("redis://127.0.0.1:1/0", retry_after_s=60)
    embed = CountingEmbedder(dim=4)
    for _ in range(5):
        cached_embedding(cache, b"x", model=MODEL, compute=embed)
    assert embed.calls == 5
