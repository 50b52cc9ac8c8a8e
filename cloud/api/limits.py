"""Rate limits (slowapi) and a request body size limit, as ASGI middlewares.

Rate limits, in ``limits`` syntax (e.g. ``600/minute``), across all routes but the health ones:

- a request with a valid API key counts against that key's budget (``api.rate_limit``);
- any other request (no key, a malformed one, both credential headers, an unknown or revoked
  key) counts against its client address's budget (``api.unauthenticated_rate_limit``), so a
  client inventing a fresh key per request is limited like one sending none.

The key is looked up before the request is counted (in a worker thread, once per request: the
routes' :func:`~lensflow.cloud.api.auth.require` reuses the answer). Over a budget: 429 with
``Retry-After`` (seconds) and the ``X-RateLimit-*`` headers; within it, responses carry the
``X-RateLimit-*`` headers. The client address is the connection's peer (``lensflow cloud api``
does not trust ``X-Forwarded-For``): behind a proxy, requests without a valid key share the
proxy's budget. Counters live in the process's memory: each API process counts on its own.

slowapi's own middlewares find the endpoint by matching ``app.routes``, which on FastAPI
0.165 holds included routers that never match (every request would be exempt), and
``SlowAPIASGIMiddleware`` resends the response start before every body chunk (a crop larger
than one chunk breaks). So :class:`RateLimitMiddleware` drives slowapi's
:class:`~slowapi.Limiter` itself, charging every request to one application-wide limit.

Body limit: a request whose ``Content-Length`` exceeds ``ApiConfig.max_request_bytes`` gets
413 before its body is read; a chunked body is counted as it is read and cut at the limit.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from typing import Literal

import anyio.to_thread
from slowapi import Limiter
from slowapi.errors import RateLimitExceeded
from sqlalchemy.exc import SQLAlchemyError
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lensflow.cloud.api.auth import authenticated, presented_token
from lensflow.cloud.api.errors import ApiError, error_response

logger = logging.getLogger(__name__)


def key_bucket(request: Request) -> str:
    """The rate-limit bucket of a request with a valid key: the key's hash."""
    token = presented_token(request) or ""
    return "key:" + hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def address_bucket(request: Request) -> str:
    """The rate-limit bucket of a request without a valid key: its client address."""
    return f"addr:{request.client.host if request.client else 'unknown'}"


def make_limiter(rate_limit: str, *, per: Literal["key", "address"]) -> Limiter:
    """A slowapi limiter applying ``rate_limit`` per bucket across every route, in memory.

    Args:
        rate_limit: A ``limits`` string such as ``600/minute`` or ``10/second``.
        per: ``key`` (buckets by API key) or ``address`` (by client address).

    Returns:
        The limiter (headers enabled, ``Retry-After`` in seconds).

    """
    return Limiter(
        key_func=address_bucket if per == "address" else key_bucket,
        application_limits=[rate_limit],
        headers_enabled=True,
        storage_uri="memory://",
        key_style="endpoint",
    )


def every_route() -> None:
    """The endpoint slowapi charges each request to: one budget per bucket for all routes."""


class RateLimitMiddleware:
    """Count each request against its key's or its address's budget; 429 when over it."""

    def __init__(
        self, app: ASGIApp, *, keyed: Limiter, anonymous: Limiter, exempt: Iterable[str] = ()
    ) -> None:
        """Wrap ``app``.

        Args:
            app: The ASGI app.
            keyed: The limiter of requests with a valid key (``make_limiter(..., per="key")``).
            anonymous: The limiter of all other requests (``per="address"``).
            exempt: Paths never limited (health checks, metrics).

        """
        self.app = app
        self.keyed = keyed
        self.anonymous = anonymous
        self.exempt = frozenset(exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Count the request; answer 429 or pass it on with the headers."""
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            principal = (
                await anyio.to_thread.run_sync(authenticated, request)
                if presented_token(request) is not None
                else None
            )
        except SQLAlchemyError as err:  # the route answers 503 when it looks the key up
            logger.warning("rate limit: key lookup failed on %s: %s", scope["path"], err)
            await self.app(scope, receive, send)
            return
        limiter = self.keyed if principal is not None else self.anonymous
        try:
            limiter._check_request_limit(request, every_route, True)
        except RateLimitExceeded as err:
            whose = "per API key" if principal is not None else _ANONYMOUS
            response = error_response(
                429,
                code="rate_limited",
                message=f"expected at most {err.detail} requests {whose}, got more",
            )
            limited = limiter._inject_headers(response, request.state.view_rate_limit)
            await limited(scope, receive, send)
            return
        current = getattr(request.state, "view_rate_limit", None)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start" and current is not None:
                headers = MutableHeaders(scope=message)
                limiter._inject_asgi_headers(headers, current)
                del headers["Retry-After"]  # slowapi adds it to every answer; only 429s need it
            await send(message)

        await self.app(scope, receive, send_with_headers)


_ANONYMOUS = "from one client address without a valid API key"


class BodyTooLargeError(ApiError):
    """A request body over the limit (raised while it is read)."""

    def __init__(self, *, limit: int, got: str, setting: str = "api.max_request_bytes") -> None:
        """Describe the limit (and the setting that holds it) and what came."""
        super().__init__(
            413,
            "payload_too_large",
            f"expected a request body of at most {limit} bytes ({setting}), got {got}",
        )


class BodySizeLimitMiddleware:
    """Refuse request bodies larger than ``max_bytes`` with 413."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        per_path: Mapping[str, tuple[int, str]] | None = None,
    ) -> None:
        """Wrap ``app``.

        Args:
            app: The ASGI app.
            max_bytes: The largest request body accepted, in bytes.
            per_path: Exact paths with a limit of their own (and the setting naming it),
                such as model bundle uploads.

        """
        self.app = app
        self.max_bytes = max_bytes
        self.per_path = dict(per_path or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check ``Content-Length`` first, then count the bytes actually received."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = self.per_path.get(scope["path"], (self.max_bytes, "api.max_request_bytes"))
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            error = BodyTooLargeError(limit=limit, got=f"{declared} bytes", setting=setting)
            await _send_error(error, scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(
                        limit=limit, got=f"at least {received} bytes", setting=setting
                    )
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLargeError as err:
            if started:
                raise
            await _send_error(err, scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    """The request's declared ``Content-Length``, or None if absent or malformed."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_error(error: ApiError, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer with ``error``'s JSON body."""
    response = error_response(error.status_code, code=error.code, message=error.message)
    await response(scope, receive, send)
