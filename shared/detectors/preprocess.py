"""The one pre-processing of every YOLO backend: letterbox, BGR→RGB, CHW, 0-1 float32, batch.

It reproduces ultralytics' ``LetterBox(auto=False, scaleup=True, center=True)`` exactly (same
rounding, same ``cv2.INTER_LINEAR`` resize, pad value 114), so an exported model sees the same
tensor here as under ``YOLO(...).predict``. Each frame is written straight into its slot of one
preallocated ``(N, 3, H, W)`` array: no intermediate padded canvas and no ``np.stack``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from lensflow.shared.classifiers.base import Image

PAD_VALUE = 114
FloatArray = npt.NDArray[np.float32]

_PAD = np.float32(PAD_VALUE) / np.float32(255)  # what a padded pixel becomes after /255


@dataclass(frozen=True, slots=True)
class Letterbox:
    """Where one frame sits inside the model input, to map boxes back to the frame.

    Attributes:
        frame_size: (height, width) of the original frame.
        resized: (height, width) of the frame after resizing, before padding.
        pad: (left, top) padding in input pixels.
    """

    frame_size: tuple[int, int]
    resized: tuple[int, int]
    pad: tuple[int, int]

    @property
    def scale(self) -> tuple[float, float]:
        """(x, y) factors from frame pixels to input pixels (equal up to rounding)."""
        return self.resized[1] / self.frame_size[1], self.resized[0] / self.frame_size[0]

    def to_frame(self, boxes: FloatArray) -> FloatArray:
        """Map (K, 4) x1,y1,x2,y2 boxes from input pixels to frame pixels, clipped to the frame.

        Args:
            boxes: boxes in model-input pixels; not modified.

        Returns:
            A new (K, 4) float32 array in frame pixels.
        """
        sx, sy = self.scale
        offset = np.array([self.pad[0], self.pad[1]] * 2, dtype=np.float32)
        gain = np.array([sx, sy, sx, sy], dtype=np.float32)
        height, width = self.frame_size
        upper = np.array([width, height, width, height], dtype=np.float32)
        frame_boxes: FloatArray = np.clip((boxes - offset) / gain, 0, upper).astype(np.float32)
        return frame_boxes

    def to_input(self, boxes: FloatArray) -> FloatArray:
        """Map (K, 4) x1,y1,x2,y2 boxes from frame pixels to input pixels (inverse of to_frame)."""
        sx, sy = self.scale
        gain = np.array([sx, sy, sx, sy], dtype=np.float32)
        offset = np.array([self.pad[0], self.pad[1]] * 2, dtype=np.float32)
        return (boxes * gain + offset).astype(np.float32, copy=False)


@dataclass(frozen=True, slots=True)
class PreparedBatch:
    """A batch ready for a YOLO model: the input tensor and each frame's letterbox."""

    tensor: FloatArray  # (N, 3, H, W) float32 RGB in 0-1
    letterboxes: list[Letterbox]


def letterbox_geometry(frame_size: tuple[int, int], input_size: tuple[int, int]) -> Letterbox:
    """Compute how ultralytics' centred LetterBox places a frame into the model input.

    Args:
        frame_size: (height, width) of the frame.
        input_size: (height, width) the model expects.

    Returns:
        The resized size and the (left, top) padding.

    Raises:
        ValueError: a size is not positive.
    """
    (h, w), (ih, iw) = frame_size, input_size
    if min(h, w, ih, iw) <= 0:
        raise ValueError(f"sizes must be positive, got frame {frame_size} and input {input_size}")
    ratio = min(ih / h, iw / w)  # scaleup allowed, like ultralytics' default
    new_w, new_h = max(round(w * ratio), 1), max(round(h * ratio), 1)
    # Same rounding as ultralytics: the odd pixel of padding goes to the bottom / right.
    left, top = round((iw - new_w) / 2 - 0.1), round((ih - new_h) / 2 - 0.1)
    return Letterbox(frame_size=(h, w), resized=(new_h, new_w), pad=(left, top))


def letterbox_into(image: Image, out: FloatArray) -> Letterbox:
    """Letterbox one BGR uint8 frame into a (3, H, W) float32 slot as RGB in 0-1.

    Args:
        image: a BGR uint8 (H, W, 3) frame.
        out: the destination slot, e.g. ``tensor[i]`` of a batch; written in place.

    Returns:
        The frame's letterbox geometry.

    Raises:
        ValueError: the image is not an (H, W, 3) uint8 array.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"expected a BGR uint8 image of shape (H, W, 3), got {image.dtype} {image.shape}"
        )
    box = letterbox_geometry((image.shape[0], image.shape[1]), (out.shape[1], out.shape[2]))
    (new_h, new_w), (left, top) = box.resized, box.pad
    resized: npt.NDArray[np.generic] = image
    if (new_h, new_w) != box.frame_size:
        resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    out.fill(_PAD)
    region = out[:, top : top + new_h, left : left + new_w]
    # HWC BGR -> CHW RGB as a view, divided straight into the slot (float32, like torch's /255).
    np.divide(resized.transpose(2, 0, 1)[::-1], np.float32(255), out=region, casting="unsafe")
    return box


def preprocess(
    images: Sequence[Image], *, input_size: tuple[int, int], out: FloatArray | None = None
) -> PreparedBatch:
    """Letterbox a batch of BGR uint8 frames (any sizes) into one (N, 3, H, W) tensor.

    Args:
        images: the frames.
        input_size: (height, width) the model expects.
        out: a preallocated (N, 3, H, W) float32 array to fill; allocated when None.

    Returns:
        The tensor and each frame's letterbox, in input order.

    Raises:
        ValueError: an image is not BGR uint8, or ``out`` has the wrong shape.
    """
    shape = (len(images), 3, *input_size)
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    elif out.shape != shape or out.dtype != np.float32:
        raise ValueError(f"out must be float32 {shape}, got {out.dtype} {out.shape}")
    letterboxes = [letterbox_into(image, out[i]) for i, image in enumerate(images)]
    return PreparedBatch(tensor=out, letterboxes=letterboxes)


def fixed_batches(tensor: FloatArray, batch: int | None) -> Iterator[tuple[FloatArray, int]]:
    """Split a batch into chunks a fixed-batch model accepts, zero-padding the last one.

    Args:
        tensor: the (N, ...) input batch.
        batch: the model's fixed batch size, or None when it accepts any batch size.

    Yields:
        (chunk, valid): a chunk of exactly ``batch`` items and how many are real frames.
    """
    if batch is None or batch == len(tensor):
        yield tensor, len(tensor)
        return
    for start in range(0, len(tensor), batch):
        chunk = tensor[start : start + batch]
        valid = len(chunk)
        if valid < batch:
            padded = np.zeros((batch, *tensor.shape[1:]), dtype=tensor.dtype)
            padded[:valid] = chunk
            chunk = padded
        yield chunk, valid
