"""The desktop app's client of the cloud API (httpx, synchronous; run it off the UI thread).

Every call returns typed answers (:mod:`lensflow.desktop.api_types`) or raises one of
:mod:`lensflow.desktop.errors` with a message an operator can act on::

    client = ApiClient("http://127.0.0.1:8000", key="lfk_...")
    page = client.results(ResultQuery(camera="cam01", reviewed=False), limit=200)
    more = client.results(ResultQuery(camera="cam01", reviewed=False), cursor=page.next_cursor)
    batch = client.relabel([item.crop_id for item in page.items[:3]], label="truck")
    client.undo(batch.batch_id)
    hits = client.similar(page.items[0].crop_id, k=12)

One client may be used from several threads at once (httpx's connection pool is
thread-safe); :meth:`ApiClient.close` releases its connections. The HTTP plumbing is in
:mod:`lensflow.desktop.client_http`, the search calls in :mod:`lensflow.desktop.client_search`, the
pipeline
DAG calls in :mod:`lensflow.desktop.client_pipelines`, the review calls (label schemas, statuses,
bulk relabels, the review queue, facets) in :mod:`lensflow.desktop.client_reviews`, the canary
rollouts in :mod:`lensflow.desktop.client_rollouts`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from pydantic import TypeAdapter

from lensflow.desktop.api_types import (
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
)
from lensflow.desktop.client_http import DEFAULT_TIMEOUT_S
from lensflow.desktop.client_pipelines import PipelineCalls
from lensflow.desktop.client_reviews import ReviewCalls
from lensflow.desktop.client_rollouts import RolloutCalls
from lensflow.desktop.client_search import SearchCalls
from lensflow.desktop.errors import (
    ApiError,
    ApiUnreachable,
    Conflict,
    Forbidden,
    NotEmbedded,
    NotFound,
    SearchUnavailable,
    Unauthorized,
    ValidationFailed,
)

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "PAGE_LIMIT",
    "ApiClient",
    "ApiError",
    "ApiUnreachable",
    "Conflict",
    "Forbidden",
    "NotEmbedded",
    "NotFound",
    "SearchUnavailable",
    "Unauthorized",
    "ValidationFailed",
]

PAGE_LIMIT = 200
"""Results per page by default (the API allows up to 500)."""
_VERSIONS = TypeAdapter(list[ConfigVersion])
_ASSIGNMENTS = TypeAdapter(list[Assignment])
_EDGES = TypeAdapter(list[EdgeInfo])


class ApiClient(SearchCalls, PipelineCalls, ReviewCalls, RolloutCalls):
    """A connection to one lensflow cloud API with one API key.

    Construct it with ``ApiClient(base_url, key=..., timeout_s=..., transport=...)`` (see
    :class:`lensflow.desktop.client_http.HttpApi`); nothing is sent until the first call.
    """

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
        """The crop's JPEG bytes (from the store's presigned URL where the API redirects)."""
        return self._request("GET", f"/v1/crops/{crop_id}.jpg", follow_redirects=True).content

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

    # -- plumbing ----------------------------------------------------------------------------

    def _issues_of(self, text: str) -> list[ConfigIssue]:
        """The validate answer's issues of ``text`` (none if it cannot be had)."""
        try:
            return self.validate_config(text).issues
        except ApiError:
            return []
