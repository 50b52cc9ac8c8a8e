"""Dataset file formats of the export: YOLO detection and COCO detection JSON.

Both describe the same images: each exported crop JPEG is one image holding one object, the
crop's detection. Its box in the crop comes from the detection box and the crop's box in
the frame (``crop_box``; the crop may be padded and scaled, which normalised coordinates
do not see). A crop without ``crop_box`` was cut tight to the detection: its box is the
whole image.

Layout written under the dataset root::

    data.yaml                        YOLO: class names and the train/val image folders
    images/{train,val}/<crop_id>.jpg the crop JPEGs, byte for byte as stored
    labels/{train,val}/<crop_id>.txt YOLO: "<class> <cx> <cy> <w> <h>", normalised
    annotations/instances_{train,val}.json  COCO: images, annotations (bbox), categories
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml

from lensflow.desktop.api_types import ResultItem
from lensflow.shared.images import image_size

Split = Literal["train", "val"]
SPLITS: tuple[Split, ...] = ("train", "val")
NormBox = tuple[float, float, float, float]
"""x1, y1, x2, y2 as fractions of the image's width and height."""


class FormatError(ValueError):
    """A crop cannot be written as asked (not a JPEG, a box outside the image...)."""


@dataclass(frozen=True)
class ExportItem:
    """One labelled crop to export: the result, its label and its split."""

    item: ResultItem
    label: str
    split: Split


def box_in_crop(item: ResultItem) -> NormBox:
    """The detection box in the crop image, normalised to the crop's size and clipped.

    Raises:
        FormatError: If the box does not overlap the crop.

    """
    if item.detection.crop_box is None:
        return (0.0, 0.0, 1.0, 1.0)
    cx1, cy1, cx2, cy2 = item.detection.crop_box
    x1, y1, x2, y2 = item.detection.box
    width, height = cx2 - cx1, cy2 - cy1
    if width <= 0 or height <= 0:
        raise FormatError(
            f"crop {item.crop_id}: expected crop_box x1 < x2 and y1 < y2, "
            f"got {item.detection.crop_box}"
        )
    box = (
        _clip((x1 - cx1) / width),
        _clip((y1 - cy1) / height),
        _clip((x2 - cx1) / width),
        _clip((y2 - cy1) / height),
    )
    if box[0] >= box[2] or box[1] >= box[3]:
        raise FormatError(
            f"crop {item.crop_id}: expected the detection box {item.detection.box} inside "
            f"crop_box {item.detection.crop_box}, got none of it"
        )
    return box


def jpeg_size(data: bytes) -> tuple[int, int]:
    """The ``(width, height)`` of a JPEG, read from its header (no decoding).

    Raises:
        FormatError: If ``data`` is not a JPEG with a frame header.

    """
    if data[:2] != b"\xff\xd8":
        raise FormatError(f"expected JPEG bytes (FF D8), got {data[:4].hex(' ') or 'nothing'}")
    size = image_size(data)
    if size is None or not all(size):
        raise FormatError("expected a JPEG with a frame header (SOF), got none")
    return size


def yolo_line(class_id: int, box: NormBox) -> str:
    """A YOLO label line: class id, then centre x, centre y, width, height (normalised)."""
    x1, y1, x2, y2 = box
    values = ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)
    return f"{class_id} " + " ".join(f"{v:.6f}" for v in values) + "\n"


def write_yolo_label(root: Path, entry: ExportItem, *, class_id: int, box: NormBox) -> None:
    """Write the crop's ``labels/<split>/<crop_id>.txt``."""
    path = root / "labels" / entry.split / f"{entry.item.crop_id}.txt"
    path.write_text(yolo_line(class_id, box), encoding="utf-8")


def write_data_yaml(root: Path, classes: Sequence[str]) -> None:
    """Write YOLO's ``data.yaml``; paths are relative to it, so the folder can move."""
    doc = {
        "train": "images/train",
        "val": "images/val",
        "nc": len(classes),
        "names": dict(enumerate(classes)),
    }
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    (root / "data.yaml").write_text(text, encoding="utf-8")


class CocoWriter:
    """Collects the COCO records of each split, then writes one JSON file per split.

    Args:
        classes: Class names; category ids are their 1-based positions.
        description: Written to each file's ``info``.

    """

    def __init__(self, classes: Sequence[str], *, description: str) -> None:
        self.categories = [
            {"id": i + 1, "name": name, "supercategory": "object"} for i, name in enumerate(classes)
        ]
        self.description = description
        self.images: dict[Split, list[dict[str, Any]]] = {split: [] for split in SPLITS}
        self.annotations: dict[Split, list[dict[str, Any]]] = {split: [] for split in SPLITS}

    def add(self, entry: ExportItem, *, class_id: int, box: NormBox, size: tuple[int, int]) -> None:
        """Add the crop as an image with one annotation (``bbox`` in pixels, x, y, w, h)."""
        width, height = size
        image_id = len(self.images[entry.split]) + 1
        item = entry.item
        self.images[entry.split].append(
            {
                "id": image_id,
                "file_name": f"{item.crop_id}.jpg",
                "width": width,
                "height": height,
                "date_captured": item.captured_at.isoformat(),
                "crop_id": item.crop_id,
                "site": item.site,
                "camera": item.camera,
            }
        )
        x1, y1, x2, y2 = box[0] * width, box[1] * height, box[2] * width, box[3] * height
        bbox = [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)]
        self.annotations[entry.split].append(
            {
                "id": len(self.annotations[entry.split]) + 1,
                "image_id": image_id,
                "category_id": class_id + 1,
                "bbox": bbox,
                "area": round(bbox[2] * bbox[3], 2),
                "iscrowd": 0,
                "segmentation": [],
            }
        )

    def write(self, root: Path) -> None:
        """Write ``annotations/instances_<split>.json`` for each split."""
        folder = root / "annotations"
        folder.mkdir(parents=True, exist_ok=True)
        created = datetime.now(UTC).isoformat(timespec="seconds")
        for split in SPLITS:
            doc = {
                "info": {
                    "description": f"{self.description} ({split})",
                    "version": "1.0",
                    "date_created": created,
                    "contributor": "lensflow",
                },
                "licenses": [],
                "images": self.images[split],
                "annotations": self.annotations[split],
                "categories": self.categories,
            }
            text = json.dumps(doc, ensure_ascii=False, indent=1)
            (folder / f"instances_{split}.json").write_text(text, encoding="utf-8")


def _clip(value: float) -> float:
    return min(1.0, max(0.0, value))
