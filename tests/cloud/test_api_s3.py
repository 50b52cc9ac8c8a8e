"""The API on an S3 crop store (a real moto_server): crops and bundles, streamed or redirected.

``serve: stream`` sends the bytes through the API (clients need no access to the store);
``serve: redirect`` answers 307 to a presigned URL, which httpx then fetches from moto itself.
moto does not verify the URL's signature or expiry: that they hold is for a real MinIO or S3.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from fastapi.testclient import TestClient

from lensflow.cloud.api import create_app
from lensflow.cloud.storage import ResultStore, create_engine_for, open_crop_store
from lensflow.cloud.storage.crops import S3CropStore
from lensflow.services.moto_s3 import MotoS3Server
from lensflow.shared.config.cloud import ApiConfig, CloudConfig, DatabaseConfig
from tests.cloud.test_api_model_bundles import packed
from tests.support.api import issue_keys, store_crop
from tests.support.protocol_samples import real_jpeg
from tests.support.s3 import moto_s3, s3_env, s3_store_config  # noqa: F401

TAR = {"Content-Type": "application/x-tar"}


@dataclass
class S3Api:
    """An app whose crop store is a bucket, a client on it, and a key per role."""

    client: TestClient
    results: ResultStore
    crops: S3CropStore
    tokens: dict[str, str] = field(default_factory=dict)

    def get(self, url: str, *, who: str = "viewer", **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} | kwargs.pop("headers", {})
        return self.client.get(url, headers=headers, follow_redirects=False, **kwargs)

    def push(self, body: bytes) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens['operator']}"} | TAR
        return self.client.post("/v1/models", content=body, headers=headers)

    def objects(self) -> list[str]:
        location = self.crops.location
        listing = location.client.list_objects_v2(Bucket=location.bucket)
        return sorted(item["Key"] for item in listing.get("Contents", []))


@contextlib.contextmanager
def running_s3_api(
    tmp_path: Path, server: MotoS3Server, *, serve: Literal["stream", "redirect"]
) -> Iterator[S3Api]:
    """The API on a fresh database and a fresh bucket of ``server``."""
    store_config = s3_store_config(server, serve=serve)
    url = f"sqlite:///{tmp_path / 'cloud.sqlite3'}"
    config = CloudConfig(
        database=DatabaseConfig(url=url),
        crop_store=store_config,
        api=ApiConfig(max_model_bytes=64 * 1024),
    )
    engine = create_engine_for(url)
    try:
        app = create_app(config, engine=engine)
        crops = open_crop_store(store_config)
        assert isinstance(crops, S3CropStore)
        with TestClient(app, raise_server_exceptions=False) as client:
            yield S3Api(client, ResultStore(engine), crops, tokens=issue_keys(engine))
    finally:
        engine.dispose()


@pytest.fixture(params=["stream", "redirect"])
def api(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    moto_s3: MotoS3Server,  # noqa: F811
    s3_env: dict[str, str],  # noqa: F811
) -> Iterator[S3Api]:
    """The API on the session's moto_server, serving both ways in turn."""
    with running_s3_api(tmp_path, moto_s3, serve=request.param) as harness:
        yield harness


def fetched(response: Any) -> httpx.Response:
    """The answer itself, or (307) what the presigned URL it names gives, fetched by httpx."""
    if response.status_code != 307:
        return httpx.Response(response.status_code, content=response.content)
    assert response.headers["cache-control"] == "no-store"  # the URL expires
    return httpx.get(response.headers["location"], timeout=10)


def test_a_crop_is_served_from_the_bucket_with_its_etag(api: S3Api) -> None:
    jpeg = real_jpeg()
    store_crop(api.results, api.crops, "c01", jpeg=jpeg)
    etag = f'"{hashlib.sha256(jpeg).hexdigest()}"'

    response = api.get("/v1/crops/c01.jpg")
    again = api.get("/v1/crops/c01.jpg", headers={"If-None-Match": etag})

    assert response.status_code in (200, 307)
    assert response.headers["etag"] == etag
    assert fetched(response).content == jpeg
    assert again.status_code == 304


def test_a_crop_whose_object_is_gone_is_404_crop_missing(api: S3Api) -> None:
    store_crop(api.results, api.crops, "c01")
    location = api.crops.location
    [key] = api.objects()
    location.client.delete_object(Bucket=location.bucket, Key=key)

    response = api.get("/v1/crops/c01.jpg")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "crop_missing"


def test_a_bundle_is_put_once_and_downloaded_whole_or_resumed(api: S3Api, tmp_path: Path) -> None:
    sha, body = packed(tmp_path)

    created, again = api.push(body), api.push(body)
    whole = api.get(f"/v1/models/{sha}/bundle")
    rest = api.get(f"/v1/models/{sha}/bundle", headers={"Range": "bytes=1000-"})

    assert (created.status_code, again.status_code) == (201, 200), created.text
    assert api.objects() == [f"models/{sha}.tar"]
    assert whole.headers["etag"] == f'"{sha}"'
    assert fetched(whole).content == body
    if rest.status_code == 206:  # streamed: the API answers the range itself
        assert rest.headers["content-range"] == f"bytes 1000-{len(body) - 1}/{len(body)}"
        assert rest.content == body[1000:]
    else:  # redirected: the client resumes against the store
        range_answer = httpx.get(
            rest.headers["location"], headers={"Range": "bytes=1000-"}, timeout=10
        )
        assert range_answer.status_code == 206 and range_answer.content == body[1000:]


def test_a_range_from_the_bundle_end_is_416_as_from_the_folder(
    tmp_path: Path,
    moto_s3: MotoS3Server,  # noqa: F811
    s3_env: dict[str, str],  # noqa: F811
) -> None:
    # given an edge resuming a download whose .part already holds every byte
    sha, body = packed(tmp_path)
    with running_s3_api(tmp_path, moto_s3, serve="stream") as api:
        assert api.push(body).status_code == 201
        url = f"/v1/models/{sha}/bundle"

        response = api.get(url, headers={"Range": f"bytes={len(body)}-"})
        inside = api.get(url, headers={"Range": f"bytes={len(body) - 1}-"})

    # then "nothing after what you have" (edge/model_fetch.py: complete), not 503
    assert response.status_code == 416, response.text
    assert response.headers["content-range"] == f"bytes */{len(body)}"
    assert inside.status_code == 206 and inside.content == body[-1:]


def test_a_refused_bundle_leaves_nothing_in_the_bucket(api: S3Api, tmp_path: Path) -> None:
    _sha, body = packed(tmp_path)

    response = api.push(body[: len(body) // 2])  # cut short: a model file is incomplete

    assert response.status_code == 400
    assert api.objects() == []


def test_the_store_down_answers_503_and_back_it_serves(
    tmp_path: Path,
    s3_env: dict[str, str],  # noqa: F811
) -> None:
    with (
        MotoS3Server(tmp_path / "moto") as server,
        running_s3_api(tmp_path, server, serve="stream") as api,
    ):
        jpeg = real_jpeg()
        store_crop(api.results, api.crops, "c01", jpeg=jpeg)
        server.stop()

        down = api.get("/v1/crops/c01.jpg")

        assert down.status_code == 503
        assert down.json()["error"]["code"] == "storage_unavailable"
        assert "127.0.0.1" not in down.text  # the store's address stays in the server log
        server.start()  # an empty moto: the bucket and the crop are put back
        api.crops.location.client.create_bucket(Bucket=api.crops.location.bucket)
        api.crops.put(jpeg)
        assert api.get("/v1/crops/c01.jpg").content == jpeg
