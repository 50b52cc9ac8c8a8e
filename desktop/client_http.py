"""The HTTP plumbing of :class:`lensflow.desktop.client.ApiClient`: one httpx client, typed errors.

:class:`HttpApi` sends a request and either returns the successful answer or raises the
:mod:`lensflow.desktop.errors` exception of its status, with a message for the operator; it parses
JSON answers into the :mod:`lensflow.desktop.api_types` models. The calls themselves live in
:mod:`lensflow.desktop.client` and :mod:`lensflow.desktop.client_search`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypedDict, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from lensflow.desktop.api_types import ConfigIssue
from lensflow.desktop.errors import (
    ApiError,
    ApiUnreachable,
    Conflict,
    Forbidden,
    NotFound,
    Unauthorized,
    ValidationFailed,
)

DEFAULT_TIMEOUT_S = 15.0
_M = TypeVar("_M", bound=BaseModel)
_T = TypeVar("_T")


class HttpApi:
    """A connection to one lensflow cloud API with one API key (no calls of its own)."""

    def __init__(
        self,
        base_url: str,
        *,
        key: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """Prepare a client; nothing is sent until the first call.

        Args:
            base_url: The API's root, e.g. ``http://127.0.0.1:8000`` (no ``/v1``).
            key: The API key (``lfk_...``), sent as ``Authorization: Bearer``.
            timeout_s: Connect/read timeout of each request.
            transport: An httpx transport (tests); the default opens real connections.

        Raises:
            ValueError: If ``base_url`` is not an http(s) URL.

        """
        url = base_url.strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"expected an http:// or https:// API URL, got {base_url!r}")
        self.base_url = url
        headers = {"Authorization": f"Bearer {key.strip()}"} if key.strip() else {}
        self._http = httpx.Client(
            base_url=url, headers=headers, timeout=timeout_s, transport=transport
        )

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def _get(self, path: str, *, params: Mapping[str, str] | None = None) -> httpx.Response:
        return self._request("GET", path, params=params)

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request; raise the matching :class:`ApiError` unless it succeeded."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as err:
            raise ApiUnreachable(
                f"The API at {self.base_url} did not answer in time ({method} {path}). "
                "The server may be overloaded or the network slow; try again.",
                detail=str(err),
            ) from err
        except httpx.HTTPError as err:
            raise ApiUnreachable(
                f"Cannot reach the API at {self.base_url}: {err or type(err).__name__}. "
                "Check the URL and that the server is running.",
                detail=str(err),
            ) from err
        if response.is_success:
            return response
        raise self._error(response, what=f"{method} {path}")

    def _error(self, response: httpx.Response, *, what: str) -> ApiError:
        """The exception for an error answer, with a message for the operator."""
        code, detail = error_body(response)
        status = response.status_code
        known = _Known(status=status, code=code, detail=detail)
        if status == 401:
            return Unauthorized(
                f"The API at {self.base_url} did not accept the API key ({detail}). "
                "Enter a valid key under File > Connect.",
                **known,
            )
        if status == 403:
            return Forbidden(
                f"Your API key may not do this ({detail}). Ask an admin for an operator key.",
                **known,
            )
        if status == 404:
            return NotFound(f"Not found: {detail}.", **known)
        if status == 409:
            return Conflict(f"Not done, it conflicts with a newer change: {detail}.", **known)
        if status in (400, 422):
            issues = [ConfigIssue(message=part) for part in detail.split("; ") if part]
            return ValidationFailed(
                f"The API refused the request: {detail}", issues=issues, **known
            )
        if status == 429:
            wait = response.headers.get("retry-after", "a few")
            return ApiError(f"Too many requests; retry in {wait} seconds.", **known)
        if status == 503:
            return ApiError(f"The API's storage is unavailable: {detail}. Try again.", **known)
        return ApiError(f"The API answered {status} to {what}: {detail}", **known)

    def _model(self, model: type[_M], response: httpx.Response) -> _M:
        """Parse a JSON answer into ``model``."""
        return self._adapt(TypeAdapter(model), response)

    def _adapt(self, adapter: TypeAdapter[_T], response: httpx.Response) -> _T:
        """Parse a JSON answer with ``adapter``; an unexpected shape is an :class:`ApiError`."""
        try:
            return adapter.validate_json(response.content)
        except ValidationError as err:
            raise ApiError(
                f"The API at {self.base_url} answered {response.request.url.path} in an "
                f"unexpected shape (is it a lensflow API of another version?): "
                f"{err.error_count()} problems, first: {err.errors()[0]['msg']}",
                status=response.status_code,
                detail=str(err),
            ) from err


class _Known(TypedDict):
    """What an error answer said, as keyword arguments of :class:`ApiError`."""

    status: int
    code: str
    detail: str


def error_body(response: httpx.Response) -> tuple[str, str]:
    """The API's ``(code, message)`` of an error answer; the raw text when not JSON."""
    try:
        error = response.json().get("error", {})
        return str(error.get("code", "")), str(error.get("message", "")) or response.reason_phrase
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError):
        text = response.text.strip()[:200]
        return "", text or response.reason_phrase
