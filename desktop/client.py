"""The desktop app's client of the cloud API (httpx, synchronous; run it off the UI thread).

Every call returns typed answers (:mod:`desktop.api_types`) or raises one of
:mod:`desktop.errors` with a message an operator can act on::

    client = ApiClient("http://127.0.0.1:8000", key="lfk_...")
    page = client.results(ResultQuery(camera="cam01", reviewed=False), limit=200)
    more = client.results(ResultQuery(camera="cam01", reviewed=False), cursor=page.next_cursor)
    batch = client.relabel([item.crop_id for item in page.items[:3]], label="truck")
    client.undo(batch.batch_id)

One client may be used from several threads at once (httpx's connection pool is
thread-safe); :meth:`ApiClient.close` releases its connections.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, TypedDict, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from desktop.api_types import (
    DETECTION_NODE,
    Aggregates,
    Assignment,
    ConfigIssue,
    ConfigValidation,
    ConfigVersion,
    EdgeInfo,
    LabelBatch,
    ResultDetail,
    ResultPage,
    ResultQuery,
    SearchResult,
)
from desktop.errors import (
    ApiError,
    ApiUnreachable,
    Conflict,
    Forbidden,
    NotFound,
    SearchUnavailable,
    Unauthorized,
    ValidationFailed,
)

__all__ = [
    "ApiClient",
    "ApiError",
    "ApiUnreachable",
    "Conflict",
    "Forbidden",
    "NotFound",
    "SearchUnavailable",
    "Unauthorized",
    "ValidationFailed",
]

DEFAULT_TIMEOUT_S = 15.0
PAGE_LIMIT = 200
"""Results per page by default (the API allows up to 500)."""
_M = TypeVar("_M", bound=BaseModel)
_T = TypeVar("_T")
_VERSIONS = TypeAdapter(list[ConfigVersion])
_ASSIGNMENTS = TypeAdapter(list[Assignment])
_EDGES = TypeAdapter(list[EdgeInfo])


class ApiClient:
    """A connection to one lensflow cloud API with one API key."""

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

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- connection ---------------------------------------------------------------------------

    def check(self) -> None:
        """Check that the API answers and accepts the key (a one-row results request).

        Raises:
            ApiUnreachable: If the API does not answer.
            Unauthorized: If the key is missing or unknown.
            Forbidden: If the key may not read results.

        """
        self._get("/v1/results", params={"limit": "1"})

    # -- results ------------------------------------------------------------------------------

    def results(
        self,
        query: ResultQuery | None = None,
        *,
        cursor: str | None = None,
        limit: int = PAGE_LIMIT,
    ) -> ResultPage:
        """One page of results matching ``query``; pass ``next_cursor`` back for the next.

        Args:
            query: Filters and sort (all results, newest first, when None).
            cursor: The previous page's ``next_cursor``.
            limit: Results per page, 1-500.

        Returns:
            The page; its ``next_cursor`` is None on the last one.

        """
        params = (query or ResultQuery()).params() | {"limit": str(limit)}
        if cursor is not None:
            params["cursor"] = cursor
        return self._model(ResultPage, self._get("/v1/results", params=params))

    def result(self, crop_id: str) -> ResultDetail:
        """A crop in full: provenance, every classifier output, labels and their history."""
        return self._model(ResultDetail, self._get(f"/v1/results/{crop_id}"))

    def crop_jpeg(self, crop_id: str) -> bytes:
        """The crop's JPEG bytes."""
        return self._get(f"/v1/crops/{crop_id}.jpg").content

    def aggregates(
        self,
        *,
        by: Literal["camera", "class", "label"],
        bucket: Literal["hour", "day"] = "day",
        start: datetime | None = None,
        end: datetime | None = None,
        node: str = DETECTION_NODE,
    ) -> Aggregates:
        """Crop counts per time bucket and camera, class or label."""
        params = {"by": by, "bucket": bucket, "node": node}
        if start is not None:
            params["from"] = start.isoformat()
        if end is not None:
            params["to"] = end.isoformat()
        return self._model(Aggregates, self._get("/v1/aggregates", params=params))

    # -- labels -------------------------------------------------------------------------------

    def relabel(
        self, crop_ids: Sequence[str], *, label: str, node: str = DETECTION_NODE
    ) -> LabelBatch:
        """Set ``label`` as the human label of ``node`` on every crop (one audited batch).

        Args:
            crop_ids: 1-1000 crop ids.
            label: The new label.
            node: ``detection`` (the edge class) or a classifier node.

        Returns:
            The batch; pass its ``batch_id`` to :meth:`undo`.

        Raises:
            ValueError: If ``crop_ids`` is empty.

        """
        if not crop_ids:
            raise ValueError("expected at least one crop id to relabel, got none")
        body = {"crop_ids": list(crop_ids), "label": label, "node": node}
        return self._model(LabelBatch, self._request("POST", "/v1/labels", json=body))

    def undo(self, batch_id: str | None = None) -> LabelBatch:
        """Undo a relabel batch: ``batch_id``, or this key's last one not yet undone.

        Raises:
            Conflict: If some of its crops were relabelled since, or it was undone already.
            NotFound: If there is no such batch (or nothing left to undo).

        """
        body = {"batch_id": batch_id} if batch_id else {}
        return self._model(LabelBatch, self._request("POST", "/v1/labels/undo", json=body))

    # -- configs and edges --------------------------------------------------------------------

    def configs(self, *, before: int | None = None, limit: int = 50) -> list[ConfigVersion]:
        """Edge config versions, newest first (older than ``before`` when given)."""
        params = {"limit": str(limit)} | ({"before": str(before)} if before else {})
        return self._adapt(_VERSIONS, self._get("/v1/configs", params=params))

    def config(self, version_id: int) -> ConfigVersion:
        """One config version with its text."""
        return self._model(ConfigVersion, self._get(f"/v1/configs/{version_id}"))

    def validate_config(self, text: str) -> ConfigValidation:
        """Check a config text as the agents will: its hash, or each issue at its line."""
        response = self._request("POST", "/v1/configs/validate", json={"text": text})
        return self._model(ConfigValidation, response)

    def create_config(self, text: str, *, comment: str | None = None) -> ConfigVersion:
        """Store a config text as a new version.

        Raises:
            ValidationFailed: If the text is invalid; ``issues`` carry the lines (the API's
                validate answer is asked for them).

        """
        try:
            response = self._request("POST", "/v1/configs", json={"text": text, "comment": comment})
        except ValidationFailed as err:
            if err.code == "invalid_config":
                err.issues = self._issues_of(text) or err.issues
            raise
        return self._model(ConfigVersion, response)

    def assign_config(self, version_id: int, edges: Sequence[tuple[str, str]]) -> list[Assignment]:
        """Make a version the desired config of each ``(site, agent_id)``; the cloud pushes it."""
        body = {"edges": [{"site": site, "agent_id": agent} for site, agent in edges]}
        response = self._request("POST", f"/v1/configs/{version_id}/assign", json=body)
        return self._adapt(_ASSIGNMENTS, response)

    def edges(self) -> list[EdgeInfo]:
        """Every known edge with its online state, counters and config ack."""
        return self._adapt(_EDGES, self._get("/v1/edges"))

    def edge(self, site: str, agent_id: str) -> EdgeInfo:
        """One edge."""
        return self._model(EdgeInfo, self._get(f"/v1/edges/{site}/{agent_id}"))

    # -- search -------------------------------------------------------------------------------

    def similar(
        self,
        crop_id: str,
        *,
        k: int = 10,
        camera_id: str | None = None,
        class_name: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> SearchResult:
        """The ``k`` crops most similar to a stored one, best first.

        Raises:
            SearchUnavailable: If this API offers no search (404) or it is down (503).

        """
        params = _search_params(k, camera_id, class_name, since, until)
        response = self._search("GET", f"/v1/search/similar/{crop_id}", params=params)
        return self._model(SearchResult, response)

    def search_image(
        self,
        jpeg: bytes,
        *,
        k: int = 10,
        camera_id: str | None = None,
        class_name: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> SearchResult:
        """The ``k`` crops most similar to an image (JPEG or PNG bytes), best first.

        Raises:
            SearchUnavailable: If this API offers no search (404) or it is down (503).

        """
        params = _search_params(k, camera_id, class_name, since, until)
        files = {"file": ("query.jpg", jpeg, "image/jpeg")}
        response = self._search("POST", "/v1/search/image", params=params, files=files)
        return self._model(SearchResult, response)

    # -- plumbing -----------------------------------------------------------------------------

    def _search(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A search request; 404 of the route itself and 503 become :class:`SearchUnavailable`."""
        try:
            return self._request(method, path, **kwargs)
        except NotFound as err:
            if err.code in ("unknown_crop", "crop_missing"):
                raise
            raise SearchUnavailable(
                f"Similar-crop search is not available on {self.base_url} "
                "(this API has no search).",
                status=err.status,
                code=err.code,
                detail=err.detail,
            ) from err
        except ApiError as err:
            if err.status != 503:
                raise
            raise SearchUnavailable(
                f"Similar-crop search is unavailable right now: {err.detail or 'server busy'}.",
                status=503,
                code=err.code,
                detail=err.detail,
            ) from err

    def _issues_of(self, text: str) -> list[ConfigIssue]:
        """The validate answer's issues of ``text`` (none if it cannot be had)."""
        try:
            return self.validate_config(text).issues
        except ApiError:
            return []

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
        code, detail = _error_body(response)
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


def _error_body(response: httpx.Response) -> tuple[str, str]:
    """The API's ``(code, message)`` of an error answer; the raw text when not JSON."""
    try:
        error = response.json().get("error", {})
        return str(error.get("code", "")), str(error.get("message", "")) or response.reason_phrase
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError):
        text = response.text.strip()[:200]
        return "", text or response.reason_phrase


def _search_params(
    k: int,
    camera_id: str | None,
    class_name: str | None,
    since: datetime | None,
    until: datetime | None,
) -> dict[str, str]:
    """The query parameters of a search request."""
    params = {"k": str(k)}
    if camera_id:
        params["camera_id"] = camera_id
    if class_name:
        params["class_name"] = class_name
    if since is not None:
        params["since"] = since.isoformat()
    if until is not None:
        params["until"] = until.isoformat()
    return params
