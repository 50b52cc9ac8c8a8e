"""Image search calls of :class:`lensflow.desktop.client.ApiClient` (``/v1/search``).

``GET /v1/search/similar/{crop_id}`` and ``POST /v1/search/image`` (multipart ``file``)
answer ``{"items": [<result item> + "similarity"], "k", "node"}``, best first. An API without
a ``search:`` config answers 503 ``search_unavailable`` (:class:`SearchUnavailable`; an API
too old to have the route answers 404, read the same way); a crop stored without an
embedding answers 409 ``not_embedded`` (:class:`NotEmbedded`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from lensflow.desktop.api_types import SearchResult
from lensflow.desktop.client_http import HttpApi
from lensflow.desktop.errors import ApiError, NotEmbedded, NotFound, SearchUnavailable


class SearchCalls(HttpApi):
    """The search part of the API client."""

    def similar(
        self,
        crop_id: str,
        *,
        k: int = 10,
        camera: str | None = None,
        class_name: str | None = None,
        captured_from: datetime | None = None,
        captured_to: datetime | None = None,
    ) -> SearchResult:
        """The ``k`` stored crops most similar to a stored one (itself left out), best first.

        Args:
            crop_id: The stored crop.
            k: How many, 1-100.
            camera: Only this camera.
            class_name: Only this edge class.
            captured_from: Captured at or after (inclusive).
            captured_to: Captured before (exclusive).

        Raises:
            SearchUnavailable: If this API has no image search.
            NotEmbedded: If the crop has no stored embedding.
            NotFound: If there is no such crop.

        """
        params = search_params(k, camera, class_name, captured_from, captured_to)
        response = self._search("GET", f"/v1/search/similar/{crop_id}", params=params)
        return self._model(SearchResult, response)

    def search_image(
        self,
        image: bytes,
        *,
        k: int = 10,
        camera: str | None = None,
        class_name: str | None = None,
        captured_from: datetime | None = None,
        captured_to: datetime | None = None,
    ) -> SearchResult:
        """The ``k`` stored crops most similar to an image (JPEG, PNG or WebP bytes).

        Raises:
            SearchUnavailable: If this API has no image search, or cannot embed images.
            ValidationFailed: If the image is empty.

        """
        params = search_params(k, camera, class_name, captured_from, captured_to)
        files = {"file": ("query.jpg", image, "application/octet-stream")}
        response = self._search("POST", "/v1/search/image", params=params, files=files)
        return self._model(SearchResult, response)

    def _search(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A search request; 503 ``search_unavailable``, 409 ``not_embedded`` made typed."""
        try:
            return self._request(method, path, **kwargs)
        except NotFound as err:
            if err.code not in ("", "not_found"):  # unknown_crop: a route that answered
                raise
            raise SearchUnavailable(
                f"Image search is not available on {self.base_url} (this API has no search).",
                status=err.status,
                code=err.code,
                detail=err.detail,
            ) from err
        except ApiError as err:
            if err.code == "search_unavailable":
                raise SearchUnavailable(
                    f"Image search is not available on {self.base_url}: {err.detail}.",
                    status=err.status,
                    code=err.code,
                    detail=err.detail,
                ) from err
            if err.code == "not_embedded":
                raise NotEmbedded(
                    "This crop has no embedding (stored before the embedding node ran, or it "
                    "failed), so no similar crops can be found.",
                    status=err.status,
                    code=err.code,
                    detail=err.detail,
                ) from err
            raise


def search_params(
    k: int,
    camera: str | None,
    class_name: str | None,
    captured_from: datetime | None,
    captured_to: datetime | None,
) -> dict[str, str]:
    """The query parameters of a search request."""
    params = {"k": str(k)}
    if camera:
        params["camera"] = camera
    if class_name:
        params["class_name"] = class_name
    if captured_from is not None:
        params["captured_from"] = captured_from.isoformat()
    if captured_to is not None:
        params["captured_to"] = captured_to.isoformat()
    return params
