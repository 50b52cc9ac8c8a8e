"""Image search through the API: by stored crop and by uploaded image, filtered, persisted."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from lensflow.cloud.search.service import SYNC_FILE, SearchService
from lensflow.cloud.storage import create_engine_for
from lensflow.shared.config.search import ExactIndexConfig, SearchConfig
from tests.support.api import T0, ApiHarness, running_api, seed
from tests.support.bombs import BOMBS, jpeg_bomb
from tests.support.plugins import color_embedding

COLORS = {  # BGR: two reds, an orange, a blue, a green
    "red-1": (30, 30, 220),
    "red-2": (40, 20, 200),
    "orange": (20, 120, 230),
    "blue": (210, 40, 30),
    "green": (40, 190, 40),
}


def picture(bgr: tuple[int, int, int], seed_: int = 0) -> np.ndarray:
    """A 96x96 picture: a coloured figure on a grey background, with a little noise."""
    rng = np.random.default_rng(seed_)
    image = np.full((96, 96, 3), 110, np.uint8)
    image[16:88, 24:72] = bgr
    noise = rng.integers(-8, 9, image.shape)
    return np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8)


def jpeg(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    return data.tobytes()


def search_config(tmp_path: Path) -> SearchConfig:
    return SearchConfig(index=ExactIndexConfig(dim=12, path=tmp_path / "index"), node="emb")


def write_pipeline(tmp_path: Path) -> Path:
    path = tmp_path / "pipeline.yaml"
    document = {
        "version": 1,
        "name": "search-test",
        "pipeline": [{"name": "emb", "class": "color_embedding"}],
    }
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


@pytest.fixture
def api(db_url: str, tmp_path: Path) -> Iterator[ApiHarness]:
    with running_api(
        db_url, tmp_path, search=search_config(tmp_path), pipeline=write_pipeline(tmp_path)
    ) as harness:
        for i, (name, bgr) in enumerate(COLORS.items()):
            image = picture(bgr, i)
            data = jpeg(image)
            decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            assert decoded is not None
            vector = color_embedding(decoded.astype(np.uint8))
            seed(
                harness,
                name,
                camera="cam02" if name == "red-2" else "cam01",
                at=T0 + timedelta(minutes=i),
                jpeg=data,
                outputs={"emb": {"vector": vector.tolist(), "dim": 12, "model": "color-test-1"}},
            )
        seed(harness, "no-embedding", outputs={"color": {"color": "red"}})
        yield harness


def ids(response: object) -> list[str]:
    assert response.status_code == 200, response.text  # type: ignore[attr-defined]
    return [item["crop_id"] for item in response.json()["items"]]  # type: ignore[attr-defined]


def test_similar_to_a_crop_ranks_the_same_colour_first_and_leaves_it_out(api: ApiHarness) -> None:
    response = api.get("/v1/search/similar/red-1", params={"k": 3}, who="viewer")

    found = ids(response)
    assert found[:2] == ["red-2", "orange"]
    assert len(found) == 3
    assert "red-1" not in found
    body = response.json()
    assert (body["k"], body["node"]) == (3, "emb")
    first = body["items"][0]
    assert first["similarity"] > 0.95
    assert first["camera"] == "cam02"
    assert first["crop_url"] == "/v1/crops/red-2.jpg"
    similarities = [item["similarity"] for item in body["items"]]
    assert similarities == sorted(similarities, reverse=True)


def test_filters_by_camera_class_and_time(api: ApiHarness) -> None:
    assert "red-2" not in ids(api.get("/v1/search/similar/red-1", params={"camera": "cam01"}))
    assert ids(api.get("/v1/search/similar/red-1", params={"class_name": "person"})) == []
    window = {"captured_from": (T0 + timedelta(minutes=3)).isoformat()}
    assert set(ids(api.get("/v1/search/similar/red-1", params=window))) == {"blue", "green"}


def test_similar_to_an_uploaded_image(api: ApiHarness) -> None:
    upload = jpeg(picture((35, 25, 210), 99))

    response = api.post(
        "/v1/search/image",
        params={"k": 2},
        files={"file": ("query.jpg", upload, "image/jpeg")},
        who="viewer",
    )

    assert set(ids(response)) == {"red-1", "red-2"}


def test_clear_errors(api: ApiHarness) -> None:
    unknown = api.get("/v1/search/similar/nope")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "unknown_crop")
    bare = api.get("/v1/search/similar/no-embedding")
    assert (bare.status_code, bare.json()["error"]["code"]) == (409, "not_embedded")
    assert "no embedding from node 'emb'" in bare.json()["error"]["message"]
    junk = api.post("/v1/search/image", files={"file": ("x.jpg", b"not an image", "image/jpeg")})
    assert (junk.status_code, junk.json()["error"]["code"]) == (415, "unsupported_image")
    assert api.client.get("/v1/search/similar/red-1").status_code == 401


def test_without_a_search_section_search_is_unavailable(db_url: str, tmp_path: Path) -> None:
    with running_api(db_url, tmp_path) as harness:
        response = harness.get("/v1/search/similar/anything")
    assert (response.status_code, response.json()["error"]["code"]) == (503, "search_unavailable")


def test_the_index_and_its_watermark_persist_and_resume(api: ApiHarness, tmp_path: Path) -> None:
    config = search_config(tmp_path)
    first = SearchService(config, engine=api.engine)
    assert first.sync() == 5
    first.save()
    assert (tmp_path / "index" / SYNC_FILE).is_file()

    # a new process resumes: nothing re-added, and new rows are picked up
    engine = create_engine_for(api.engine.url.render_as_string(hide_password=False))
    second = SearchService(config, engine=engine)
    assert (second.index.count(), second.watermark) == (5, first.watermark)
    assert second.sync() == 0
    seed(
        api, "red-3", outputs={"emb": {"vector": color_embedding(picture((30, 30, 220))).tolist()}}
    )
    assert second.sync() == 1
    assert second.index.count() == 6
    engine.dispose()


# Decompression bombs: files of a few bytes to a few hundred KB whose headers declare a canvas
# far over search.max_image_pixels (50 MP by default). Each is refused from its header alone,
# with the ingest route's status, before the embedder is loaded or anything is decoded.
@pytest.mark.parametrize("name", sorted(BOMBS))
def test_an_image_bomb_is_400_naming_the_limit_and_the_declared_size(
    api: ApiHarness, name: str
) -> None:
    build, media_type = BOMBS[name]

    response = api.post(
        "/v1/search/image",
        files={"file": ("query", build(16000, 12000), media_type)},
        who="viewer",
    )

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "undecodable_image"
    assert "expected at most 50,000,000 pixels, got a 16000x12000 image" in error["message"]


def test_the_pixel_limit_is_search_max_image_pixels(db_url: str, tmp_path: Path) -> None:
    config = search_config(tmp_path).model_copy(update={"max_image_pixels": 5_000})
    blue = picture(COLORS["blue"])
    with running_api(db_url, tmp_path, search=config, pipeline=write_pipeline(tmp_path)) as api:
        within = api.post("/v1/search/image", files={"file": ("q.jpg", jpeg(blue[:64, :64]))})
        over = api.post("/v1/search/image", files={"file": ("q.jpg", jpeg(blue))})

    assert within.status_code == 200, within.text  # 64x64: 4,096 pixels
    assert over.status_code == 400
    assert "expected at most 5,000 pixels, got a 96x96 image" in over.json()["error"]["message"]


def test_a_bomb_is_refused_before_the_embedder_loads(db_url: str, tmp_path: Path) -> None:
    # the pipeline has no node "emb": loading the embedder fails (503) for any image it sees
    pipeline = tmp_path / "other.yaml"
    document = {
        "version": 1,
        "name": "other",
        "pipeline": [{"name": "x", "class": "color_embedding"}],
    }
    pipeline.write_text(yaml.safe_dump(document), encoding="utf-8")
    with running_api(db_url, tmp_path, search=search_config(tmp_path), pipeline=pipeline) as api:
        photo = api.post(
            "/v1/search/image", files={"file": ("q.jpg", jpeg(picture(COLORS["blue"])))}
        )
        bomb = api.post("/v1/search/image", files={"file": ("q.jpg", jpeg_bomb(30000, 30000))})

    assert (photo.status_code, photo.json()["error"]["code"]) == (503, "search_failed")
    assert (bomb.status_code, bomb.json()["error"]["code"]) == (400, "undecodable_image")
