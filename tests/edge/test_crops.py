"""Crops: geometry, encoding, sharpness, usefulness, and the per-camera byte budget."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from lensflow.edge.crops import (
    AREA_HALF,
    SHARPNESS_HALF,
    ByteBudget,
    sharpness,
    usefulness,
)
from lensflow.shared.classifiers.base import Image
from lensflow.shared.crops import cut_crop, encode_jpeg
from lensflow.shared.errors import ImageError
from lensflow.shared.images import decode_image


@pytest.fixture
def frame(sample_images: dict[str, Image]) -> Image:
    """zidane.jpg at 640x480."""
    return cv2.resize(sample_images["zidane"], (640, 480), interpolation=cv2.INTER_AREA)


class FakeClock:
    """Seconds that only move when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --- geometry


@pytest.mark.parametrize(
    ("box", "padding", "expected"),
    [
        # inside the frame, no padding: the box itself
        ((100, 100, 200, 150), 0.0, (100, 100, 200, 150)),
        # 10% of a 100x50 box: 10 px left and right, 5 px top and bottom
        ((100, 100, 200, 150), 0.1, (90, 95, 210, 155)),
        # 100% padding: the box grows by its own size on each side
        ((300, 200, 340, 260), 1.0, (260, 140, 380, 320)),
        # fractional edges round outwards, so the crop holds the whole box
        ((10.4, 20.6, 50.5, 60.2), 0.0, (10, 20, 51, 61)),
        # 30 * 0.1 is 3.0000000000000004 in floats: no extra pixel for that noise
        ((30, 30, 60, 60), 0.1, (27, 27, 63, 63)),
        # padding past the left and top edges is clipped to the frame
        ((5, 5, 105, 55), 0.1, (0, 0, 115, 60)),
        # padding past the right and bottom edges is clipped to the frame
        ((600, 440, 640, 480), 0.5, (580, 420, 640, 480)),
        # a box bigger than the frame: the whole frame
        ((-50, -50, 700, 500), 0.0, (0, 0, 640, 480)),
    ],
)
def test_cut_crop_pads_and_clips_to_the_frame(frame, box, padding, expected):
    crop, crop_box = cut_crop(frame, box, padding=padding, max_side=4096)

    assert crop_box == expected
    x1, y1, x2, y2 = expected
    assert np.array_equal(crop, frame[y1:y2, x1:x2])


def test_crop_is_a_copy_not_a_view_of_the_frame(frame):
    crop, _ = cut_crop(frame, (10, 10, 50, 50), padding=0, max_side=512)

    frame[:] = 0

    assert crop.any()


def test_large_crop_is_shrunk_to_max_side_keeping_aspect(sample_images):
    image = sample_images["zidane"]  # 1280x720

    crop, crop_box = cut_crop(image, (100, 100, 1100, 600), padding=0, max_side=256)

    assert crop_box == (100, 100, 1100, 600)  # still in frame pixels
    assert crop.shape == (128, 256, 3)
    assert crop.dtype == np.uint8


def test_small_crop_is_not_enlarged(frame):
    crop, _ = cut_crop(frame, (10, 10, 60, 50), padding=0, max_side=256)

    assert crop.shape == (40, 50, 3)


@pytest.mark.parametrize(
    ("box", "message"),
    [
        ((200, 100, 100, 150), "x1 < x2"),  # corners swapped
        ((100, 100, 100, 150), "x1 < x2"),  # zero width
        ((10, 10, 50, math.nan), "finite"),  # NaN from a broken model
        ((10, 10, 50), "4 finite numbers"),  # three numbers
        ((700, 500, 800, 600), "overlapping the 640x480 frame"),  # entirely outside
    ],
)
def test_cut_crop_rejects_a_bad_box_saying_what_it_got(frame, box, message):
    with pytest.raises(ValueError, match=message) as caught:
        cut_crop(frame, box, padding=0.1, max_side=512)

    assert str(list(box)) in str(caught.value)


def test_cut_crop_rejects_negative_padding(frame):
    with pytest.raises(ValueError, match="padding >= 0"):
        cut_crop(frame, (10, 10, 50, 50), padding=-0.1, max_side=512)


# --- encoding


def test_jpeg_decodes_back_to_the_crop(frame):
    data = encode_jpeg(frame, quality=90)

    decoded = decode_image(data)

    assert data[:2] == b"\xff\xd8"
    assert decoded.shape == frame.shape
    assert cv2.absdiff(decoded, frame).mean() < 4


def test_lower_jpeg_quality_gives_fewer_bytes(frame):
    assert len(encode_jpeg(frame, quality=30)) < len(encode_jpeg(frame, quality=95))


def test_jpeg_quality_out_of_range_is_rejected(frame):
    with pytest.raises(ValueError, match="1-100, but got 0"):
        encode_jpeg(frame, quality=0)


def test_empty_image_cannot_be_encoded():
    with pytest.raises(ImageError, match="expected a non-empty"):
        encode_jpeg(np.zeros((0, 10, 3), np.uint8), quality=80)


# --- sharpness and usefulness


def test_blurred_crop_is_less_sharp_than_the_original(frame):
    crop, _ = cut_crop(frame, (150, 100, 450, 400), padding=0, max_side=512)
    blurred = cv2.GaussianBlur(crop, (9, 9), 3)

    assert sharpness(blurred) < sharpness(crop) / 2


def test_sharpness_accepts_grey_and_is_zero_for_an_empty_crop(frame):
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)

    assert sharpness(grey) == pytest.approx(sharpness(frame), rel=0.05)
    assert sharpness(np.zeros((0, 0, 3), np.uint8)) == 0.0


def test_usefulness_is_the_documented_product():
    assert usefulness(1.0, AREA_HALF, SHARPNESS_HALF) == pytest.approx(0.25)
    assert usefulness(0.8, AREA_HALF, SHARPNESS_HALF) == pytest.approx(0.2)
    assert usefulness(0.0, 1e6, 1e3) == 0.0
    assert usefulness(-1.0, 1e6, 1e3) == 0.0  # negative inputs count as 0


@pytest.mark.parametrize(
    ("better", "worse"),
    [
        ((0.9, 5000, 150), (0.6, 5000, 150)),  # more confident
        ((0.6, 20000, 150), (0.6, 5000, 150)),  # bigger
        ((0.6, 5000, 400), (0.6, 5000, 150)),  # sharper
    ],
)
def test_usefulness_grows_with_each_input(better, worse):
    assert usefulness(*better) > usefulness(*worse)


# --- byte budget


def test_unlimited_budget_passes_everything_at_once():
    budget: ByteBudget[str] = ByteBudget(None, 100)

    sent = [budget.offer(f"crop{i}", size=10_000, usefulness=0.1) for i in range(5)]

    assert sent == [["crop0"], ["crop1"], ["crop2"], ["crop3"], ["crop4"]]
    assert (budget.sent, budget.sent_bytes, budget.dropped, budget.waiting) == (5, 50_000, 0, 0)
    assert budget.poll() == []


def test_burst_over_budget_keeps_the_most_useful_and_drops_the_least_useful():
    clock = FakeClock()
    budget: ByteBudget[str] = ByteBudget(1000, 1000, clock, max_waiting=2, camera="gate")

    # given a full bucket of 1000 bytes, two 400-byte crops go at once
    assert budget.offer("a", size=400, usefulness=0.5) == ["a"]
    assert budget.offer("b", size=400, usefulness=0.9) == ["b"]
    # when more arrive than the 200 bytes left can pay, they wait, at most two of them
    assert budget.offer("c", size=400, usefulness=0.1) == []
    assert budget.offer("d", size=400, usefulness=0.7) == []
    assert budget.offer("e", size=400, usefulness=0.3) == []  # c, the least useful, dropped
    assert budget.offer("f", size=400, usefulness=0.05) == []  # f itself is the least useful

    # then the counters say so
    assert (budget.sent, budget.sent_bytes) == (2, 800)
    assert (budget.dropped, budget.dropped_bytes, budget.waiting) == (2, 800, 2)


def test_refill_releases_waiting_items_most_useful_first():
    clock = FakeClock()
    budget: ByteBudget[str] = ByteBudget(1000, 1000, clock)
    budget.offer("big", size=1000, usefulness=0.5)
    budget.offer("low", size=300, usefulness=0.2)
    budget.offer("high", size=300, usefulness=0.8)

    clock.advance(0.2)  # 200 bytes: not enough for either
    assert budget.poll() == []
    clock.advance(0.1)  # 300 bytes
    assert budget.poll() == ["high"]
    clock.advance(0.3)
    assert budget.poll() == ["low"]
    assert (budget.sent, budget.waiting, budget.dropped) == (3, 0, 0)


def test_equally_useful_items_leave_oldest_first():
    clock = FakeClock()
    budget: ByteBudget[str] = ByteBudget(100, 100, clock)
    budget.offer("fill", size=100, usefulness=1.0)
    budget.offer("first", size=100, usefulness=0.5)
    budget.offer("second", size=100, usefulness=0.5)

    clock.advance(1.0)
    assert budget.poll() == ["first"]
    clock.advance(1.0)
    assert budget.poll() == ["second"]


def test_item_larger_than_the_bucket_goes_when_full_and_leaves_a_debt():
    clock = FakeClock()
    budget: ByteBudget[str] = ByteBudget(1000, 1000, clock)

    assert budget.offer("huge", size=3000, usefulness=0.5) == ["huge"]
    assert budget.tokens == -2000
    assert budget.offer("next", size=100, usefulness=0.5) == []
    clock.advance(2.0)
    assert budget.poll() == []  # the debt is paid, but 100 more bytes are not there yet
    clock.advance(0.1)
    assert budget.poll() == ["next"]


@pytest.mark.parametrize(
    ("rate", "burst"),
    [
        (0, 1000),  # a zero rate would never refill: None is how to say unlimited
        (-5, 1000),  # negative rate
        (1000, 0),  # an empty bucket can never pay
    ],
)
def test_budget_rejects_a_rate_or_burst_that_cannot_work(rate, burst):
    with pytest.raises(ValueError, match="rate > 0 .* burst > 0"):
        ByteBudget(rate, burst)
