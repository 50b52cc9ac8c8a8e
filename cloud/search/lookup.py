"""Product descriptions from an external HTTP provider, with the usual defences.

The provider contract: ``POST <url>`` with the JPEG as the body (``Content-Type: image/jpeg``,
``X-Content-SHA256: <hex>``, ``Authorization: Bearer <key>``) answers 200 with
``{"products": [{"title": ..., "description": ..., "url": ..., "score": ...}, ...]}``, or 404
when it knows no product. :class:`ProductLookup` wraps it in, from the outside in:

1. an answer cache by the JPEG's sha256, with a TTL (404s are cached too);
2. retries (tenacity): on timeouts, transport errors, 408 and 5xx, exponential backoff with
   full jitter; on 429, the server's ``Retry-After`` (seconds or an HTTP date), which also
   pauses every other request of this client; a ``Retry-After`` beyond ``max_retry_after_s``
   fails at once;
3. a circuit breaker (purgatory): ``breaker_failures`` failed attempts in a row open it, and
   then calls fail at once with :class:`LookupUnavailableError` (no network) until
   ``breaker_cooldown_s`` passed; the next call is the half-open trial that closes it again
   or re-opens it. 429s and 4xx answers are not failures of the provider;
4. a client-side token bucket (aiolimiter): ``rate_per_s`` requests per second, ``burst`` at
   once.

Errors reach the caller as :class:`ProductLookupError` subclasses; a search endpoint should
return its similar images without descriptions then, not fail.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import logging
import os
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType

import httpx
from aiolimiter import AsyncLimiter
from cachetools import TTLCache
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState
from pydantic import BaseModel, ConfigDict, ValidationError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from lensflow.cloud.search.errors import (
    LookupRejectedError,
    LookupThrottledError,
    LookupUnavailableError,
    ProductLookupError,
)
from lensflow.shared.config.search import ProductLookupConfig

logger = logging.getLogger(__name__)

_CIRCUIT = "product-lookup"


class Product(BaseModel):
    """One product the provider matched to an image."""

    model_config = ConfigDict(extra="ignore", frozen=True)  # a provider may add fields

    title: str
    description: str = ""
    url: str | None = None
    score: float | None = None


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    products: list[Product]


class _ProviderFailureError(Exception):
    """A failed attempt worth retrying that counts against the breaker (5xx, timeout, ...)."""


class _ThrottledError(Exception):
    """A 429: retried after ``retry_after`` seconds (or backoff); not a provider failure."""

    def __init__(self, retry_after: float | None) -> None:
        super().__init__(f"HTTP 429, Retry-After {retry_after}")
        self.retry_after = retry_after


def retry_after_s(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class ProductLookup:
    """Async client of the product provider: cache, retries, breaker, rate limit.

    Args:
        config: URL, key, timeouts and the limits of each defence.
        transport: An httpx transport to use instead of the network (tests, proxies).
        environ: Where ``config.api_key_env`` is read when ``config.api_key`` is null.

    """

    def __init__(
        self,
        config: ProductLookupConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._config = config
        key = (
            config.api_key.get_secret_value()
            if config.api_key is not None
            else (os.environ if environ is None else environ).get(config.api_key_env)
        )
        headers = {"Accept": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        else:
            logger.info("product lookup: no API key configured; requests are anonymous")
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s),
            headers=headers,
            transport=transport,
        )
        self._limiter = AsyncLimiter(config.burst, config.burst / config.rate_per_s)
        self._breakers = AsyncCircuitBreakerFactory(
            default_threshold=config.breaker_failures,
            default_ttl=config.breaker_cooldown_s,
            exclude=[_ThrottledError, LookupThrottledError, LookupRejectedError],
        )
        self._answers: TTLCache[str, tuple[Product, ...]] = TTLCache(
            maxsize=config.cache_max_entries, ttl=config.cache_ttl_s
        )
        self._backoff = wait_random_exponential(
            multiplier=config.backoff_s, max=config.backoff_max_s
        )
        self._paused_until = 0.0

    async def describe(self, jpeg: bytes) -> list[Product]:
        """Products the provider matches to ``jpeg`` (empty when it knows none).

        Raises:
            LookupUnavailableError: The provider failed every attempt, or the breaker is open.
            LookupThrottledError: It kept answering 429, or asked to wait too long.
            LookupRejectedError: It refused the request (bad key, bad image: 4xx).
            ProductLookupError: It answered something that is not the contract.

        """
        sha256 = hashlib.sha256(jpeg).hexdigest()
        cached = self._answers.get(sha256)
        if cached is not None:
            return list(cached)
        products = await self._with_retries(jpeg, sha256)
        self._answers[sha256] = tuple(products)
        return products

    async def describe_many(
        self, images: Sequence[bytes]
    ) -> list[list[Product] | ProductLookupError]:
        """:meth:`describe` for each image concurrently; a failure is returned in its place."""
        results = await asyncio.gather(
            *(self.describe(image) for image in images), return_exceptions=True
        )
        answers: list[list[Product] | ProductLookupError] = []
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, ProductLookupError):
                raise result
            answers.append(result)
        return answers

    async def breaker_state(self) -> str:
        """``closed``, ``opened`` or ``half-opened`` (for health checks and tests)."""
        return (await self._breakers.get_breaker(_CIRCUIT)).context.state

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._http.aclose()

    async def __aenter__(self) -> ProductLookup:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _with_retries(self, jpeg: bytes, sha256: str) -> list[Product]:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._config.max_attempts),
            wait=self._wait,
            retry=retry_if_exception_type((_ProviderFailureError, _ThrottledError)),
            before_sleep=_log_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._attempt(jpeg, sha256)
        except _ProviderFailureError as err:
            raise LookupUnavailableError(
                f"product provider failed {self._config.max_attempts} attempts: {err}"
            ) from err
        except _ThrottledError as err:
            raise LookupThrottledError(
                f"product provider still throttling after {self._config.max_attempts} attempts"
            ) from err
        raise AssertionError("tenacity ended without an outcome")  # pragma: no cover

    def _wait(self, state: RetryCallState) -> float:
        """Retry-After of a 429 when given, else jittered exponential backoff."""
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, _ThrottledError) and error.retry_after is not None:
            return error.retry_after
        return float(self._backoff(state))

    async def _attempt(self, jpeg: bytes, sha256: str) -> list[Product]:
        """One request through the breaker and the rate limiter."""
        delay = self._paused_until - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            breaker = await self._breakers.get_breaker(_CIRCUIT)
            async with breaker:
                async with self._limiter:
                    response = await self._post(jpeg, sha256)
                return self._read(response)
        except OpenedState as err:
            raise LookupUnavailableError(
                "product provider circuit breaker is open (recent attempts failed); "
                f"next trial after {self._config.breaker_cooldown_s:g} s"
            ) from err

    async def _post(self, jpeg: bytes, sha256: str) -> httpx.Response:
        headers = {"Content-Type": "image/jpeg", "X-Content-SHA256": sha256}
        try:
            return await self._http.post(self._config.url, content=jpeg, headers=headers)
        except httpx.TimeoutException as err:
            raise _ProviderFailureError(f"timed out ({type(err).__name__})") from err
        except httpx.TransportError as err:
            raise _ProviderFailureError(f"{type(err).__name__}: {err}") from err

    def _read(self, response: httpx.Response) -> list[Product]:
        """Products of a 200, nothing for a 404; anything else raises."""
        status = response.status_code
        if status == httpx.codes.OK:
            try:
                return _Answer.model_validate_json(response.content).products
            except ValidationError as err:
                raise ProductLookupError(
                    f"expected {{'products': [{{'title': ...}}]}} from the provider, but got "
                    f"{response.text[:200]!r}"
                ) from err
        if status == httpx.codes.NOT_FOUND:
            return []
        if status == httpx.codes.TOO_MANY_REQUESTS:
            wait = retry_after_s(response.headers.get("Retry-After"))
            if wait is not None and wait > self._config.max_retry_after_s:
                raise LookupThrottledError(
                    f"provider asks to wait {wait:.0f} s, more than max_retry_after_s "
                    f"{self._config.max_retry_after_s:g}"
                )
            if wait is not None:
                self._paused_until = max(self._paused_until, time.monotonic() + wait)
            raise _ThrottledError(wait)
        if status == httpx.codes.REQUEST_TIMEOUT or status >= 500:
            raise _ProviderFailureError(f"HTTP {status}")
        if 400 <= status < 500:
            raise LookupRejectedError(f"provider refused the request: HTTP {status}")
        raise ProductLookupError(f"unexpected HTTP {status} from the provider")


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    wait = state.next_action.sleep if state.next_action is not None else 0.0
    logger.warning(
        "product lookup attempt %s failed (%s); retrying in %.2f s",
        state.attempt_number,
        error,
        wait,
    )
