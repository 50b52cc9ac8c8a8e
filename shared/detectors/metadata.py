"""Class names, input size and stride of an ultralytics-exported model, from its own metadata.

ultralytics writes the same keys everywhere: into an ONNX model's ``metadata_props`` (every value
a string; ``names`` is a Python dict repr, parsed here with :func:`ast.literal_eval`, never
``eval``), and into ``metadata.yaml`` beside an OpenVINO ``.xml``. OpenVINO also exposes an
ONNX file's ``metadata_props`` under the rt_info key ``framework``, and IRs written by
ultralytics carry space-separated ``labels`` under ``model_info``.
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lensflow.shared.errors import ModelError

logger = logging.getLogger(__name__)

EXPECTED = (
    "ultralytics export metadata: 'names' (a dict of class id -> name) and 'imgsz' "
    "([height, width]); export with ultralytics' YOLO(...).export()"
)


@dataclass(frozen=True, slots=True)
class YoloMetadata:
    """What an ultralytics export says about itself."""

    names: dict[int, str]
    imgsz: tuple[int, int] | None  # height, width; None when the metadata lacks it
    stride: int = 32
    task: str = "detect"
    precision: str = "fp32"  # fp32 | fp16 | int8, from the export args


def parse_yolo_metadata(values: Mapping[str, Any], *, source: str) -> YoloMetadata:
    """Parse ultralytics metadata, given as strings (ONNX) or as parsed YAML values.

    Args:
        values: the metadata key/values.
        source: the model file, named in errors.

    Returns:
        The parsed metadata.

    Raises:
        ModelError: ``names`` is missing or malformed, or the model is not a detect model.
    """
    if "names" not in values:
        raise ModelError(f"{source}: expected {EXPECTED}; got keys {sorted(values)}")
    names = _names(_literal(values["names"], key="names", source=source), source=source)
    task = str(values.get("task", "detect"))
    if task != "detect":
        raise ModelError(f"{source}: expected a detect model (task 'detect'), got task {task!r}")
    imgsz = None
    if "imgsz" in values:
        imgsz = _size(_literal(values["imgsz"], key="imgsz", source=source), source=source)
    stride = int(_literal(values.get("stride", 32), key="stride", source=source))
    args = _literal(values.get("args", {}), key="args", source=source)
    return YoloMetadata(
        names=names, imgsz=imgsz, stride=stride, task=task, precision=_precision(args)
    )


def read_openvino_metadata(xml: Path, rt_info: Mapping[str, Any]) -> YoloMetadata:
    """Find an OpenVINO model's metadata: ``metadata.yaml`` beside it, else its rt_info.

    Args:
        xml: the model file (.xml, or .onnx read by OpenVINO).
        rt_info: ``{"framework": {...}, "model_info": {...}}`` as plain strings, from the
            model's runtime info; empty sections when absent.

    Returns:
        The parsed metadata.

    Raises:
        ModelError: no metadata anywhere, or it is malformed.
    """
    beside = xml.parent / "metadata.yaml"
    if beside.is_file():
        try:
            loaded = yaml.safe_load(beside.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            raise ModelError(f"{beside}: expected {EXPECTED}; cannot read it: {err}") from err
        if not isinstance(loaded, dict):
            raise ModelError(f"{beside}: expected a YAML mapping, got {type(loaded).__name__}")
        return parse_yolo_metadata(loaded, source=str(beside))
    framework = rt_info.get("framework") or {}
    if "names" in framework:  # an ONNX file read directly: its metadata_props
        return parse_yolo_metadata(framework, source=str(xml))
    labels = (rt_info.get("model_info") or {}).get("labels")
    if labels:
        logger.info("%s: no metadata.yaml; class names from the IR's model_info labels", xml)
        return YoloMetadata(names=dict(enumerate(str(labels).split())), imgsz=None)
    raise ModelError(
        f"{xml}: expected {EXPECTED} in {beside} or in the model's rt_info; none found"
    )


def resolve_input_size(
    shape: Sequence[int | None], imgsz: tuple[int, int] | None, *, source: str
) -> tuple[int, int]:
    """The (height, width) to letterbox to: the metadata's imgsz, checked against the input.

    Args:
        shape: the model input's (N, 3, H, W) shape; None for a dynamic dimension.
        imgsz: the metadata's imgsz, if any.
        source: the model file, named in errors.

    Returns:
        (height, width).

    Raises:
        ModelError: the input is not (N, 3, H, W), disagrees with imgsz, or no size is known.
    """
    dims = [d if d is not None and d >= 0 else None for d in shape]
    if len(dims) != 4 or dims[1] not in (None, 3):
        raise ModelError(f"{source}: expected an image input of shape (N, 3, H, W), got {shape}")
    height, width = dims[2], dims[3]
    static = (height, width) if height is not None and width is not None else None
    if static and imgsz and static != imgsz:
        raise ModelError(
            f"{source}: metadata imgsz {list(imgsz)} disagrees with the input shape {shape}"
        )
    size = imgsz or static
    if size is None:
        raise ModelError(f"{source}: dynamic input {shape} and no 'imgsz' in the metadata")
    return size


def _literal(value: Any, *, key: str, source: str) -> Any:
    """Parse a string with ast.literal_eval; other values pass through."""
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as err:
        raise ModelError(
            f"{source}: metadata {key!r} must be a Python literal, got {value[:80]!r}"
        ) from err


def _names(value: Any, *, source: str) -> dict[int, str]:
    """Validate class names: a non-empty {int: str} mapping (a list is accepted too)."""
    if isinstance(value, list | tuple):
        value = dict(enumerate(value))
    if not isinstance(value, dict) or not value:
        raise ModelError(f"{source}: metadata 'names' must be a non-empty dict, got {value!r:.80}")
    try:
        return {int(k): str(v) for k, v in value.items()}
    except (TypeError, ValueError) as err:
        raise ModelError(
            f"{source}: metadata 'names' keys must be ints, got {value!r:.80}"
        ) from err


def _size(value: Any, *, source: str) -> tuple[int, int]:
    """Validate imgsz: an int or [height, width] of positive ints."""
    if isinstance(value, int):
        value = [value, value]
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not all(isinstance(v, int) and v > 0 for v in value)
    ):
        raise ModelError(f"{source}: metadata 'imgsz' must be [height, width], got {value!r}")
    return int(value[0]), int(value[1])


def _precision(args: Any) -> str:
    """fp32 / fp16 / int8 from the export args ultralytics records."""
    if not isinstance(args, dict):
        return "fp32"
    if args.get("int8") or args.get("quantize") == 8:
        return "int8"
    if args.get("half") or args.get("quantize") == 16:
        return "fp16"
    return "fp32"
