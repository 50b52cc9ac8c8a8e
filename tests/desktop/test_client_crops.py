"""The desktop client fetches crop JPEGs from the API, or from the store the API redirects to."""

from __future__ import annotations

import httpx

from lensflow.desktop.client import ApiClient

JPEG = b"\xff\xd8 a crop \xff\xd9"
PRESIGNED = "http://store.example:9000/crops/c01.jpg?X-Amz-Signature=abc"


def test_a_redirected_crop_is_fetched_from_the_store_without_the_api_key() -> None:
    # given an API with `serve: redirect` (307 to a presigned URL on another host)
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "api.example":
            return httpx.Response(307, headers={"Location": PRESIGNED})
        return httpx.Response(200, content=JPEG, headers={"Content-Type": "image/jpeg"})

    client = ApiClient(
        "http://api.example:8000", key="lfk_secret", transport=httpx.MockTransport(answer)
    )

    # when the desktop asks for the crop: it follows the redirect
    with client:
        assert client.crop_jpeg("c01") == JPEG

    # then the presigned URL is fetched as given, and the API key stays with the API
    assert [str(r.url) for r in seen] == ["http://api.example:8000/v1/crops/c01.jpg", PRESIGNED]
    assert seen[0].headers["authorization"] == "Bearer lfk_secret"
    assert "authorization" not in seen[1].headers
