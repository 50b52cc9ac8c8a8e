"""Product lookup against a real local HTTP server that is slow, fails, throttles or is down."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, TypeVar

import pytest

from lensflow.cloud.search.errors import (
    LookupRejectedError,
    LookupThrottledError,
    LookupUnavailableError,
    ProductLookupError,
)
from lensflow.cloud.search.lookup import Product, ProductLookup, retry_after_s
from lensflow.shared.config.search import ProductLookupConfig
from tests.search.provider import ProviderServer, Reply

T = TypeVar("T")

FAST = {
    "timeout_s": 0.2,
    "connect_timeout_s": 0.2,
    "max_attempts": 3,
    "backoff_s": 0.01,
    "backoff_max_s": 0.05,
    "rate_per_s": 1000,
    "burst": 100,
}


def lookup_for(provider: ProviderServer, **overrides: Any) -> ProductLookup:
    config = ProductLookupConfig(url=provider.url, **{**FAST, **overrides})
    return ProductLookup(config, environ={"LENSFLOW_PRODUCT_API_KEY": "k-123"})


def run(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(make())


def test_answer_is_parsed_sent_with_the_key_and_cached(provider: ProviderServer) -> None:
    async def scenario() -> tuple[list[Product], list[Product]]:
        async with lookup_for(provider) as lookup:
            return await lookup.describe(b"jpeg-1"), await lookup.describe(b"jpeg-1")

    first, second = run(scenario)
    assert first == second == [Product(title="Red bike", description="A city bike", score=0.9)]
    # one request: the second answer came from the cache
    assert provider.count() == 1
    request = provider.requests[0]
    assert request.body == b"jpeg-1"
    assert request.headers["Authorization"] == "Bearer k-123"
    assert request.headers["Content-Type"] == "image/jpeg"
    assert request.headers["X-Content-SHA256"] == hashlib.sha256(b"jpeg-1").hexdigest()


def test_not_found_is_no_product_and_is_cached(provider: ProviderServer) -> None:
    provider.script(Reply(status=404, body={"detail": "unknown"}))

    async def scenario() -> list[list[Product]]:
        async with lookup_for(provider) as lookup:
            return [await lookup.describe(b"x"), await lookup.describe(b"x")]

    assert run(scenario) == [[], []]
    assert provider.count() == 1


def test_slow_provider_times_out_on_every_attempt(provider: ProviderServer) -> None:
    provider.script(Reply(delay_s=1.0))
    start = time.monotonic()
    with pytest.raises(LookupUnavailableError, match="3 attempts: timed out"):
        run(lambda: lookup_for(provider).describe(b"x"))
    # three attempts of 0.2 s each and short backoffs, not three full server delays
    assert provider.count() == 3
    assert time.monotonic() - start < 1.5


def test_server_errors_are_retried_until_it_answers(provider: ProviderServer) -> None:
    provider.script(Reply(status=503), Reply(status=500), Reply())
    products = run(lambda: lookup_for(provider).describe(b"x"))
    assert [p.title for p in products] == ["Red bike"]
    assert provider.count() == 3


def test_429_waits_for_retry_after_then_succeeds(provider: ProviderServer) -> None:
    provider.script(Reply(status=429, headers=(("Retry-After", "1"),)), Reply())
    products = run(lambda: lookup_for(provider).describe(b"x"))
    assert len(products) == 1
    first, second = provider.requests
    # the client waited the second the server asked for, not its 10-50 ms backoff
    assert second.at - first.at >= 0.95


def test_retry_after_longer_than_allowed_fails_at_once(provider: ProviderServer) -> None:
    provider.script(Reply(status=429, headers=(("Retry-After", "120"),)))
    with pytest.raises(LookupThrottledError, match="wait 120 s"):
        run(lambda: lookup_for(provider, max_retry_after_s=30).describe(b"x"))
    assert provider.count() == 1


def test_persistent_throttling_ends_in_a_throttled_error(provider: ProviderServer) -> None:
    provider.script(Reply(status=429, headers=(("Retry-After", "0"),)))
    with pytest.raises(LookupThrottledError, match="after 3 attempts"):
        run(lambda: lookup_for(provider).describe(b"x"))
    assert provider.count() == 3


REFUSALS = [
    # a bad key: retrying cannot help
    (401, LookupRejectedError),
    # the provider does not take this image
    (422, LookupRejectedError),
]


@pytest.mark.parametrize(("status", "error"), REFUSALS)
def test_client_errors_are_not_retried(
    provider: ProviderServer, status: int, error: type[Exception]
) -> None:
    provider.script(Reply(status=status, body={"detail": "no"}))
    with pytest.raises(error, match=str(status)):
        run(lambda: lookup_for(provider).describe(b"x"))
    assert provider.count() == 1


def test_an_answer_outside_the_contract_is_an_error(provider: ProviderServer) -> None:
    provider.script(Reply(body={"items": []}))
    with pytest.raises(ProductLookupError, match="expected"):
        run(lambda: lookup_for(provider).describe(b"x"))


def test_breaker_opens_when_the_provider_is_down_then_recovers(provider: ProviderServer) -> None:
    provider.stop()

    async def scenario() -> None:
        lookup = lookup_for(provider, max_attempts=2, breaker_failures=3, breaker_cooldown_s=0.5)
        # two images, two attempts each: the third failed attempt opens the breaker
        for image in (b"a", b"b"):
            with pytest.raises(LookupUnavailableError):
                await lookup.describe(image)
        assert await lookup.breaker_state() == "opened"
        # while open, calls fail at once without a request, even with the provider back
        provider.start()
        start = time.monotonic()
        with pytest.raises(LookupUnavailableError, match="circuit breaker is open"):
            await lookup.describe(b"c")
        assert time.monotonic() - start < 0.1
        assert provider.count() == 0
        # after the cool-down, the half-open trial succeeds and closes it
        await asyncio.sleep(0.6)
        assert [p.title for p in await lookup.describe(b"c")] == ["Red bike"]
        assert await lookup.breaker_state() == "closed"
        await lookup.aclose()

    run(scenario)


def test_rate_limit_spaces_requests_beyond_the_burst(provider: ProviderServer) -> None:
    async def scenario() -> list[list[Product] | ProductLookupError]:
        async with lookup_for(provider, rate_per_s=10, burst=2) as lookup:
            return await lookup.describe_many([b"1", b"2", b"3", b"4", b"5", b"6"])

    results = run(scenario)
    assert all(isinstance(r, list) and len(r) == 1 for r in results)
    times = sorted(r.at for r in provider.requests)
    # 2 at once, then 1 every 0.1 s: the last of 6 about 0.4 s after the first
    assert times[-1] - times[0] >= 0.3


def test_describe_many_returns_failures_in_place(provider: ProviderServer) -> None:
    provider.script(Reply(), Reply(status=401))

    async def scenario() -> list[list[Product] | ProductLookupError]:
        async with lookup_for(provider, burst=1, rate_per_s=50) as lookup:
            return await lookup.describe_many([b"1", b"2"])

    ok, refused = run(scenario)
    assert isinstance(ok, list) and isinstance(refused, LookupRejectedError)


NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
RETRY_AFTER = [
    # delta-seconds
    ("3", 3.0),
    # an HTTP date 5 s ahead
    (format_datetime(NOW + timedelta(seconds=5), usegmt=True), 5.0),
    # a date in the past: no wait
    (format_datetime(NOW - timedelta(seconds=5), usegmt=True), 0.0),
    # garbage and absent: unknown, so backoff applies
    ("soon", None),
    (None, None),
]


@pytest.mark.parametrize(("header", "seconds"), RETRY_AFTER)
def test_retry_after_header_forms(header: str | None, seconds: float | None) -> None:
    assert retry_after_s(header, now=NOW) == seconds
