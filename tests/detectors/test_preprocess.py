"""Letterbox pre-processing: ultralytics' geometry, pixels in place, boxes that round-trip."""

from __future__ import annotations

import numpy as np
import pytest

from lensflow.shared.detectors.preprocess import (
    PAD_VALUE,
    fixed_batches,
    letterbox_geometry,
    preprocess,
)


@pytest.mark.parametrize(
    ("frame", "model_input", "resized", "pad"),
    [
        # bus.jpg, portrait: width padded equally on both sides
        ((1080, 810), (640, 640), (640, 480), (80, 0)),
        # zidane.jpg, landscape: height padded
        ((720, 1280), (640, 640), (360, 640), (0, 140)),
        # small frame: scaled up (scaleup=True), not pasted at 1:1
        ((100, 200), (640, 640), (320, 640), (0, 160)),
        # odd padding (641 - 320 = 321): the extra pixel goes to the bottom, like ultralytics
        ((100, 200), (641, 640), (320, 640), (0, 160)),
        # already the input size: no resize, no padding
        ((320, 320), (320, 320), (320, 320), (0, 0)),
        # a very thin frame keeps at least one pixel
        ((1, 3000), (640, 640), (1, 640), (0, 319)),
    ],
)
def test_letterbox_geometry_matches_ultralytics_rounding(frame, model_input, resized, pad):
    box = letterbox_geometry(frame, model_input)
    assert box.resized == resized
    assert box.pad == pad


def test_frame_pixels_land_where_to_input_says():
    # given a grey frame with a pure-blue (BGR) rectangle
    frame = np.full((300, 600, 3), 50, np.uint8)
    rect = np.array([[100.0, 60.0, 300.0, 240.0]], np.float32)
    x1, y1, x2, y2 = rect[0].astype(int)
    frame[y1:y2, x1:x2] = (255, 0, 0)
    # when it is letterboxed to 320x320
    batch = preprocess([frame], input_size=(320, 320))
    # then the rectangle's centre is blue in the RGB tensor, at the mapped position
    mapped = batch.letterboxes[0].to_input(rect)[0]
    cx, cy = int((mapped[0] + mapped[2]) / 2), int((mapped[1] + mapped[3]) / 2)
    assert batch.tensor[0, :, cy, cx].tolist() == [0.0, 0.0, 1.0]
    # and just outside the mapped rectangle it is the grey frame again
    assert batch.tensor[0, :, cy, int(mapped[2]) + 2].tolist() == pytest.approx([50 / 255] * 3)


def test_padding_is_114_and_tensor_is_nchw_float32_in_0_1():
    frames = [np.zeros((100, 200, 3), np.uint8), np.full((50, 50, 3), 255, np.uint8)]
    batch = preprocess(frames, input_size=(64, 64))
    assert batch.tensor.shape == (2, 3, 64, 64)
    assert batch.tensor.dtype == np.float32
    # first frame is wide: rows above and below it are padding
    assert batch.tensor[0, :, 0, :] == pytest.approx(PAD_VALUE / 255)
    assert batch.tensor[0, :, 32, :] == pytest.approx(0.0)
    # second frame is square: no padding at all
    assert batch.tensor[1].min() == 1.0


@pytest.mark.parametrize(
    "frame",
    [
        (1080, 810),  # portrait
        (720, 1280),  # landscape
        (33, 47),  # small, scaled up with uneven rounding
    ],
)
def test_box_round_trips_from_frame_to_input_and_back(frame):
    box = letterbox_geometry(frame, (640, 640))
    h, w = frame
    boxes = np.array([[0.1 * w, 0.2 * h, 0.7 * w, 0.9 * h], [0, 0, w, h]], np.float32)
    back = box.to_frame(box.to_input(boxes))
    np.testing.assert_allclose(back, boxes, atol=1e-3 * max(frame))


def test_to_frame_clips_boxes_to_the_frame():
    box = letterbox_geometry((320, 640), (640, 640))  # 160 px of padding above and below
    inside_padding = np.array([[-10, 100, 700, 600]], np.float32)
    assert box.to_frame(inside_padding).tolist() == [[0.0, 0.0, 640.0, 320.0]]


def test_preprocess_fills_a_preallocated_array_in_place():
    out = np.empty((1, 3, 32, 32), np.float32)
    batch = preprocess([np.zeros((10, 10, 3), np.uint8)], input_size=(32, 32), out=out)
    assert batch.tensor is out


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((10, 10), np.uint8),  # grey, no channel axis
        np.zeros((10, 10, 4), np.uint8),  # BGRA
        np.zeros((10, 10, 3), np.float32),  # not uint8
    ],
)
def test_preprocess_rejects_what_is_not_bgr_uint8(image):
    with pytest.raises(ValueError, match=r"expected a BGR uint8 image of shape \(H, W, 3\)"):
        preprocess([image], input_size=(32, 32))


def test_preprocess_rejects_a_preallocated_array_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"out must be float32 \(1, 3, 32, 32\)"):
        preprocess(
            [np.zeros((8, 8, 3), np.uint8)],
            input_size=(32, 32),
            out=np.empty((2, 3, 32, 32), np.float32),
        )


def test_fixed_batches_chunks_and_zero_pads_the_last_chunk():
    tensor = np.ones((5, 3, 4, 4), np.float32)
    chunks = list(fixed_batches(tensor, 2))
    assert [(len(chunk), valid) for chunk, valid in chunks] == [(2, 2), (2, 2), (2, 1)]
    assert chunks[-1][0][1].max() == 0.0
    # a dynamic-batch model gets the whole batch at once
    assert [valid for _, valid in fixed_batches(tensor, None)] == [5]


@pytest.mark.integration
def test_tensor_equals_ultralytics_letterbox_exactly(yolo_class, sample_images):
    from ultralytics.data.augment import LetterBox

    for image in sample_images.values():
        theirs = LetterBox(new_shape=(640, 640), auto=False)(image=image)
        expected = theirs[..., ::-1].transpose(2, 0, 1).astype(np.float32) / np.float32(255)
        ours = preprocess([image], input_size=(640, 640)).tensor[0]
        np.testing.assert_array_equal(ours, expected)
