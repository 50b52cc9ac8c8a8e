"""Review calls of the API client: label schemas, statuses, bulk relabels, queue, facets.

:class:`ReviewCalls` is a mixin of :class:`~lensflow.desktop.client_http.HttpApi` like
:class:`~lensflow.desktop.client_search.SearchCalls`; on its own it is a client too::

    client = ReviewCalls("http://127.0.0.1:8000", key="lfk_...")
    schema = client.label_schema("detection")          # number keys: schema.by_key()
    batch = client.review(["c1", "c2"], "rejected")    # a status, not a class
    client.undo_batch(batch.batch_id)                   # labels and statuses restored
    preview = client.preview_similar("c1", label="truck", min_similarity=0.85)
    client.relabel_similar("c1", label="truck", expect=preview.crop_ids, min_similarity=0.85)
    page = client.review_queue(QueueQuery(sort="unreviewed_first"), limit=200)

The refusals an operator can act on are typed: :class:`LabelNotInSchema` (a relabel to a label
outside the node's schema; ``allowed`` parsed from the message), :class:`NearDuplicateLabel`
and :class:`LabelExists` (adding a label), :class:`PreviewChanged` (a bulk relabel whose
look-alikes changed since the preview). Routes and shapes: docs/labels.md.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypedDict

import httpx

from lensflow.desktop.api_review_types import (
    DecisionStatus,
    Facets,
    LabelSchema,
    LabelSchemaList,
    QueueQuery,
    ReviewBatch,
    ReviewPage,
    SimilarPreview,
)
from lensflow.desktop.api_types import DETECTION_NODE
from lensflow.desktop.client_http import HttpApi
from lensflow.desktop.errors import ApiError, Conflict, SearchUnavailable, ValidationFailed

__all__ = [
    "LabelExists",
    "LabelNotInSchema",
    "NearDuplicateLabel",
    "PreviewChanged",
    "ReviewCalls",
]

_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'")


class LabelNotInSchema(ValidationFailed):
    """422 ``label_not_in_schema``: the label is not one of the node's schema.

    Attributes:
        allowed: The allowed labels the API named (at most its first 30).

    """

    def __init__(self, message: str, *, allowed: Sequence[str] = (), **known: Any) -> None:
        """Describe the refusal; ``known`` are :class:`ValidationFailed`'s keywords."""
        super().__init__(message, **known)
        self.allowed = list(allowed)


class NearDuplicateLabel(ValidationFailed):
    """422 ``near_duplicate_label``: the new label differs from one only by case or spaces."""


class LabelExists(Conflict):
    """409 ``label_exists``: the node's schema has the label already."""


class PreviewChanged(Conflict):
    """409 ``preview_changed``: the bulk relabel would no longer change what was previewed."""


class ReviewCalls(HttpApi):
    """The review part of the API client."""

    def label_schemas(self) -> LabelSchemaList:
        """The current schema of ``detection`` and of each labelled pipeline node."""
        return self._model(LabelSchemaList, self._get("/v1/label-schemas"))

    def label_schema(
        self, node: str = DETECTION_NODE, *, version: int | None = None
    ) -> LabelSchema:
        """A node's current label schema, or its stored ``version``.

        Raises:
            NotFound: If there is no such node (or version).

        """
        params = {"version": str(version)} if version is not None else None
        return self._model(LabelSchema, self._get(f"/v1/label-schemas/{node}", params=params))

    def add_label(self, node: str, name: str, *, color: str | None = None) -> LabelSchema:
        """Add a label to a node's schema; the new version (existing keys never move).

        Args:
            node: The node (``detection`` for the edge detection).
            name: The label (trimmed by the API; 1-64 characters).
            color: ``#rrggbb``; default: a palette colour.

        Raises:
            LabelExists: If the schema has it.
            NearDuplicateLabel: If it differs from an existing label only by case or spaces.
            Forbidden: If the key may not write.

        """
        body: dict[str, Any] = {"name": name} | ({"color": color} if color else {})
        response = self._reviews("POST", f"/v1/label-schemas/{node}/labels", json=body)
        return self._model(LabelSchema, response)

    def review(
        self, crop_ids: Sequence[str], status: DecisionStatus, *, node: str = DETECTION_NODE
    ) -> ReviewBatch:
        """Set a review status on crops, as one batch (``undo_batch`` reverts it).

        ``accepted``: the model's label is right; ``rejected``: a wrong detection;
        ``unsure``: skipped for now. Any human label of the node is cleared.

        Raises:
            NotFound: If a crop is unknown.
            ValidationFailed: If the node did not run on a crop.

        """
        body = {"crop_ids": list(crop_ids), "node": node, "status": status}
        return self._model(ReviewBatch, self._reviews("POST", "/v1/reviews", json=body))

    def relabel_checked(
        self, crop_ids: Sequence[str], *, label: str, node: str = DETECTION_NODE
    ) -> ReviewBatch:
        """Relabel crops (status ``relabelled``), as one batch, with statuses in the events.

        Raises:
            LabelNotInSchema: If ``label`` is not one of the node's schema.

        """
        body = {"crop_ids": list(crop_ids), "node": node, "label": label}
        return self._model(ReviewBatch, self._reviews("POST", "/v1/labels", json=body))

    def undo_batch(self, batch_id: str | None = None) -> ReviewBatch:
        """Undo a batch (relabel, review or bulk relabel): labels and statuses restored.

        Raises:
            Conflict: If a crop of it changed since, or it was undone already.

        """
        body = {"batch_id": batch_id} if batch_id else {}
        return self._model(ReviewBatch, self._reviews("POST", "/v1/labels/undo", json=body))

    def preview_similar(
        self,
        crop_id: str,
        *,
        label: str,
        node: str = DETECTION_NODE,
        k: int = 20,
        min_similarity: float = 0.8,
        include_human: bool = False,
    ) -> SimilarPreview:
        """What relabelling the crop and its look-alikes would change, grouped by label.

        Raises:
            LabelNotInSchema: If ``label`` is not one of the node's schema.
            SearchUnavailable: If this API has no image search.
            NotEmbedded: If the crop has no embedding (409 ``not_embedded``, a Conflict).

        """
        body = _similar(crop_id, label, node, k, min_similarity, include_human)
        response = self._reviews("POST", "/v1/labels/similar/preview", json=body)
        return self._model(SimilarPreview, response)

    def relabel_similar(
        self,
        crop_id: str,
        *,
        label: str,
        expect: Sequence[str],
        node: str = DETECTION_NODE,
        k: int = 20,
        min_similarity: float = 0.8,
        include_human: bool = False,
    ) -> ReviewBatch:
        """Apply a preview (same arguments, ``expect`` its ``crop_ids``) as one batch.

        Raises:
            PreviewChanged: If the crops it would change are not exactly ``expect`` any more.

        """
        body = _similar(crop_id, label, node, k, min_similarity, include_human)
        response = self._reviews("POST", "/v1/labels/similar", json=body | {"expect": [*expect]})
        return self._model(ReviewBatch, response)

    def review_queue(
        self, query: QueueQuery | None = None, *, limit: int = 200, cursor: str | None = None
    ) -> ReviewPage:
        """One page of results in a review queue's order, each crop with its reviews.

        Raises:
            ValidationFailed: If ``cursor`` comes from a page of another sort.

        """
        params = (query or QueueQuery()).params() | {"limit": str(limit)}
        if cursor:
            params["cursor"] = cursor
        return self._model(ReviewPage, self._get("/v1/results", params=params))

    def facets(
        self,
        *,
        site: str | None = None,
        captured_from: datetime | None = None,
        captured_to: datetime | None = None,
    ) -> Facets:
        """Cameras, edge classes, nodes, labels and statuses per node, with counts."""
        params: dict[str, str] = {}
        if site:
            params["site"] = site
        if captured_from is not None:
            params["captured_from"] = captured_from.isoformat()
        if captured_to is not None:
            params["captured_to"] = captured_to.isoformat()
        return self._model(Facets, self._get("/v1/facets", params=params))

    def _reviews(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A request whose refusals an operator acts on are raised as their own types."""
        try:
            return self._request(method, path, **kwargs)
        except ApiError as err:
            raise _typed(err, base_url=self.base_url) from err


def _similar(
    crop_id: str, label: str, node: str, k: int, min_similarity: float, include_human: bool
) -> dict[str, Any]:
    return {
        "crop_id": crop_id,
        "label": label,
        "node": node,
        "k": k,
        "min_similarity": min_similarity,
        "include_human": include_human,
    }


class _Known(TypedDict):
    """What an error answer said, as keyword arguments of :class:`ApiError`."""

    status: int
    code: str
    detail: str


def _typed(err: ApiError, *, base_url: str) -> ApiError:
    """The typed exception of a review refusal (``err`` itself when there is none)."""
    known = _Known(status=err.status, code=err.code, detail=err.detail)
    if err.code == "label_not_in_schema":
        listed = err.detail.split(": ", 1)[-1].split("; got", 1)[0]
        return LabelNotInSchema(
            f"That label is not in this node's label set: {err.detail}",
            allowed=_QUOTED.findall(listed),
            **known,
        )
    if err.code == "near_duplicate_label":
        return NearDuplicateLabel(f"A label like that exists already: {err.detail}", **known)
    if err.code == "label_exists":
        return LabelExists(f"That label exists already: {err.detail}", **known)
    if err.code == "preview_changed":
        return PreviewChanged(
            f"The similar crops changed since the preview; preview again: {err.detail}", **known
        )
    if err.code == "search_unavailable":
        return SearchUnavailable(
            f"Image search is not available on {base_url}: {err.detail}.", **known
        )
    return err
