"""The API's error type and its one JSON error body: ``{"error": {"code", "message"}}``.

Every failure leaves the API in that shape: errors raised by routes (:class:`ApiError`),
FastAPI's request validation, Starlette's HTTP errors (404 for an unknown path, 405), the
middlewares' 413 and 429, storage and inference service outages (503) and unexpected errors
(500, logged).

A message says what the client sent and what was expected of it. What failed inside the
server — file paths, SQL, a library's or the OS's own words, tracebacks — goes to the log only:
:func:`server_fault` builds the answer to such a failure, and the storage and 500 handlers
answer without the exception's text.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from lensflow.cloud.storage.errors import StorageError
from lensflow.shared.errors import ServiceUnavailableError

logger = logging.getLogger(__name__)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    422: "invalid_request",
    429: "rate_limited",
    503: "unavailable",
}


class ApiError(StarletteHTTPException):
    """An error a route (or dependency) answers with: a status, a stable code and a message.

    It is a Starlette ``HTTPException``, so FastAPI passes it through untouched (also while it
    reads a request body) and the app's handler renders it.
    """

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Describe the error.

        Args:
            status_code: The HTTP status.
            code: A stable, machine-readable code (``invalid_cursor``, ``unknown_crop``...).
            message: What was expected and what was got.
            headers: Extra response headers (``WWW-Authenticate``, ``Retry-After``...).

        """
        super().__init__(status_code=status_code, detail=message, headers=dict(headers or {}))
        self.code = code
        self.message = message


_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])(?:/[^/\s'\"():,;]+)+/([^/\s'\"():,;]+)")


def without_paths(text: str) -> str:
    """``text`` with each absolute path cut to its last part (``.../x.onnx``).

    For reports the API relays from other processes (a worker's load error, a replay's
    failure): what is missing stays named, where it is on a server does not.
    """
    return _ABSOLUTE_PATH.sub(lambda match: f".../{match.group(1)}", text)


def server_fault(status_code: int, code: str, summary: str, err: BaseException) -> ApiError:
    """The answer to a failure of the server's own state (a file, a model, the database).

    ``err`` (which may name server paths, SQL or a library's internals) is logged; the client
    gets ``summary`` only.

    Args:
        status_code: The HTTP status (503 for a part that is unavailable).
        code: The stable error code.
        summary: What failed, in words that name no server path.
        err: The underlying error, for the log.

    Returns:
        The error to raise.

    """
    logger.error("%s: %s", summary, err)
    return ApiError(status_code, code, f"{summary}; the server log has the details")


def error_response(
    status_code: int, *, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """Build the JSON error response.

    Args:
        status_code: The HTTP status.
        code: The stable error code.
        message: The human-readable message.
        headers: Extra response headers.

    Returns:
        A response whose body is ``{"error": {"code": code, "message": message}}``.

    """
    body = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status_code, headers=dict(headers or {}))


def method_not_allowed_message(method: str, path: str, allow: str | None) -> str:
    """What a 405 says: the methods the path has and the one that came."""
    return f"expected {allow or 'another method'} on {path}, got {method}"


def describe_validation_errors(errors: Sequence[Any]) -> str:
    """One line per pydantic/FastAPI validation error: where, what was expected, what was got."""
    parts = []
    for error in errors:
        location = ".".join(str(item) for item in error.get("loc", ()))
        message = error.get("msg", "invalid value")
        if "input" in error and error.get("type") != "missing":
            shown = repr(error["input"])
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            parts.append(f"{location}: {message}, got {shown}")
        else:
            parts.append(f"{location}: {message}")
    return "; ".join(parts) or "invalid request"


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    """Render ApiError and Starlette/FastAPI HTTP errors."""
    assert isinstance(exc, StarletteHTTPException)
    code = exc.code if isinstance(exc, ApiError) else _CODES.get(exc.status_code, "error")
    message = exc.message if isinstance(exc, ApiError) else str(exc.detail)
    if exc.status_code == 405 and not isinstance(exc, ApiError):
        allow = (exc.headers or {}).get("Allow")
        message = method_not_allowed_message(request.method, request.url.path, allow)
    return error_response(exc.status_code, code=code, message=message, headers=exc.headers)


async def _on_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """Render request validation errors as 422 ``invalid_request``."""
    assert isinstance(exc, RequestValidationError)
    message = describe_validation_errors(exc.errors())
    return error_response(422, code="invalid_request", message=message)


async def _on_storage_error(request: Request, exc: Exception) -> JSONResponse:
    """A database or crop store outage: 503, logged."""
    logger.error("storage unavailable on %s %s: %s", request.method, request.url.path, exc)
    return error_response(
        503,
        code="storage_unavailable",
        message="the results storage is unavailable; the server log has the details",
    )


async def _on_service_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """An inference server a pipeline node needs is down (the input is not at fault): 503."""
    logger.error(
        "inference service unavailable on %s %s: %s", request.method, request.url.path, exc
    )
    return error_response(
        503,
        code="inference_unavailable",
        message=(
            "an inference service the pipeline needs is unavailable; nothing was stored, "
            "send the request again later (the server log has the details)"
        ),
    )


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    """Anything else: 500 with no internals in the body, the traceback in the log."""
    logger.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(
        500, code="internal", message="internal server error; the server log has the details"
    )


def install_error_handlers(app: FastAPI) -> None:
    """Make every error of ``app`` answer with the JSON error body.

    Args:
        app: The application.

    """
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StorageError, _on_storage_error)
    app.add_exception_handler(OperationalError, _on_storage_error)
    app.add_exception_handler(ServiceUnavailableError, _on_service_unavailable)
    app.add_exception_handler(Exception, _on_unexpected)
