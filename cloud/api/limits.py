"""Per-key rate limiting (slowapi) and a request body size limit, as ASGI middlewares.

Rate limit: one ``limits``-syntax budget (``ApiConfig.rate_limit``, e.g. ``600/minute``)
per API key across all routes (per client address for requests without a key); the health
routes are exempt. Over it: 429 with ``Retry-After`` (seconds) and the ``X-RateLimit-*``
headers; within it, responses carry the ``X-RateLimit-*`` headers. Counters live in the
process's memory: each API process counts on its own.

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
from collections.abc import Iterable

from slowapi import Limiter
from slowapi.errors import RateLimitExceeded
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lensflow.cloud.api.auth import presented_token
from lensflow.cloud.api.errors import ApiError, error_response


def rate_limit_key(request: Request) -> str:
    """The rate-limit bucket of a request: its API key's hash, else its client address."""
    token = presented_token(request)
    if token is not None:
        return "key:" + hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    host = request.client.host if request.client else "unknown"
    return f"addr:{host}"


def make_limiter(rate_limit: str) -> Limiter:
    """A slowapi limiter applying ``rate_limit`` per key across every route, in memory.

    Args:
        rate_limit: A ``limits`` string such as ``600/minute`` or ``10/second``.

    Returns:
        The limiter (headers enabled, ``Retry-After`` in seconds).

    """
    return Limiter(
        key_func=rate_limit_key,
        application_limits=[rate_limit],
        headers_enabled=True,
        storage_uri="memory://",
        key_style="endpoint",
    )


def every_route() -> None:
    """The endpoint slowapi charges each request to: one budget per key for all routes."""


class RateLimitMiddleware:
    """Check the app's slowapi limiter before each request; 429 when over the limit."""

    def __init__(self, app: ASGIApp, *, limiter: Limiter, exempt: Iterable[str] = ()) -> None:
        """Wrap ``app``.

        Args:
            app: The ASGI app.
            limiter: The limiter (see :func:`make_limiter`).
            exempt: Paths never limited (health checks, metrics).

        """
        self.app = app
        self.limiter = limiter
        self.exempt = frozenset(exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Count the request against its key; answer 429 or pass it on with the headers."""
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            self.limiter._check_request_limit(request, every_route, True)
        except RateLimitExceeded as err:
            response = error_response(
                429,
                code="rate_limited",
                message=f"expected at most {err.detail} requests per key, got more",
            )
            limited = self.limiter._inject_headers(response, request.state.view_rate_limit)
            await limited(scope, receive, send)
            return
        current = getattr(request.state, "view_rate_limit", None)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start" and current is not None:
                headers = MutableHeaders(scope=message)
                self.limiter._inject_asgi_headers(headers, current)
                del headers["Retry-After"]  # slowapi adds it to every answer; only 429s need it
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyTooLargeError(ApiError):
    """A request body over the limit (raised while it is read)."""

    def __init__(self, *, limit: int, got: str) -> None:
        """Describe the limit and what came."""
        super().__init__(
            413,
            "payload_too_large",
            f"expected a request body of at most {limit} bytes, got {got}",
        )


class BodySizeLimitMiddleware:
    """Refuse request bodies larger than ``max_bytes`` with 413."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        """Wrap ``app``.

        Args:
            app: The ASGI app.
            max_bytes: The largest request body accepted, in bytes.

        """
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check ``Content-Length`` first, then count the bytes actually received."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            error = BodyTooLargeError(limit=self.max_bytes, got=f"{declared} bytes")
            await _send_error(error, scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLargeError(limit=self.max_bytes, got=f"at least {received} bytes")
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
