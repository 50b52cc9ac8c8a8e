"""Crop images in the review app: every decode passes the header gate; a bomb is a placeholder.

The crop bytes come from the API, so they are not trusted: a small file declaring a huge
canvas must be refused before OpenCV (or Qt) decodes it. ``cv2.imdecode`` is replaced by a
recorder in these tests: any call means a bomb got through to a decoder.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from lensflow.desktop import thumbs
from lensflow.desktop.api_types import Detection, ResultItem, SearchResult
from lensflow.desktop.errors import ApiError
from lensflow.desktop.inspector import Inspector
from lensflow.desktop.workers import Runner
from tests.support.bomb_headers import BOMB_KINDS, bomb_header

SHA = "ab" * 32


@pytest.fixture
def decoder_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """``cv2.imdecode`` replaced by a recorder (of the buffer sizes) that decodes nothing."""
    calls: list[int] = []

    def record(buffer: np.ndarray, flags: int) -> None:
        calls.append(len(buffer))

    monkeypatch.setattr(cv2, "imdecode", record)
    return calls


@pytest.mark.parametrize("kind", BOMB_KINDS)
def test_a_bomb_is_refused_before_any_decoder_sees_it(kind: str, decoder_calls: list[int]) -> None:
    with pytest.raises(Exception, match="20000x20000") as refused:
        thumbs.decode(bomb_header(kind), size=thumbs.THUMB_SIZE, what="crop c1")

    assert decoder_calls == []
    assert isinstance(refused.value, thumbs.ImageRefusedError)
    assert refused.value.short == "20000x20000: too large"
    assert "crop c1" in str(refused.value)


def test_a_small_real_crop_still_decodes_and_fits_the_thumbnail(
    sample_images: dict[str, np.ndarray],
) -> None:
    ok, jpeg = cv2.imencode(".jpg", sample_images["bus"])  # 810x1080
    assert ok

    image = thumbs.decode(jpeg.tobytes(), size=thumbs.THUMB_SIZE)

    assert (image.width(), image.height()) == (96, 128)


@pytest.mark.parametrize("kind", BOMB_KINDS)
def test_a_bomb_thumbnail_is_a_placeholder_that_says_why(
    qtbot, tmp_path: Path, decoder_calls: list[int], kind: str
) -> None:
    # given an API whose crop JPEG is a bomb
    loader = thumbs.ThumbnailLoader(
        lambda _crop_id: bomb_header(kind), cache=thumbs.DiskCache(tmp_path)
    )

    # when the grid asks for its thumbnail
    with qtbot.waitSignal(loader.failed, timeout=5000) as failed:
        assert loader.request("c1", SHA) is None

    # then nothing was decoded, and the thumbnail is a placeholder with the reason
    assert decoder_calls == []
    assert failed.args[0] == "c1" and "20000x20000" in failed.args[1]
    pixmap = loader.get("c1")
    assert pixmap is not None and pixmap.size() == thumbs.THUMB_SIZE
    assert "20000x20000" in loader.refused["c1"]
    assert loader.request("c1", SHA) is pixmap  # not fetched again
    loader.runner.wait(2000)


class BombApi:
    """An API client whose crop image is a bomb; details and search are not the subject."""

    def __init__(self, jpeg: bytes) -> None:
        self.jpeg = jpeg

    def crop_jpeg(self, crop_id: str) -> bytes:
        return self.jpeg

    def result(self, crop_id: str) -> None:
        raise ApiError("no details in this test")

    def similar(self, crop_id: str, *, k: int) -> SearchResult:
        raise ApiError("no search in this test")


def test_the_inspector_refuses_a_bomb_and_says_why(
    qtbot, tmp_path: Path, decoder_calls: list[int]
) -> None:
    # given the inspector on an API serving a JPEG bomb
    runner = Runner(threads=2)
    loader = thumbs.ThumbnailLoader(None, cache=thumbs.DiskCache(tmp_path))
    inspector = Inspector(runner, loader)
    qtbot.addWidget(inspector)
    inspector.client = BombApi(bomb_header("jpeg"))  # type: ignore[assignment]
    now = datetime.now(UTC)
    item = ResultItem(
        crop_id="c1",
        site="site1",
        camera="gate",
        captured_at=now,
        received_at=now,
        detection=Detection(
            class_name="person",
            class_id=0,
            score=0.9,
            box=[0, 0, 10, 10],
            frame_width=640,
            frame_height=480,
        ),
        jpeg_sha256=SHA,
        crop_url="/v1/crops/c1.jpg",
    )

    # when a crop is inspected
    inspector.show_item(item)

    # then the image area says it was not shown and why; nothing was decoded
    qtbot.waitUntil(lambda: "Image not shown" in inspector.image.text(), timeout=5000)
    assert "20000x20000: too large" in inspector.image.text()
    assert decoder_calls == []
    runner.wait(2000)
