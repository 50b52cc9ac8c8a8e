"""The edge's own detection as a DAG node.

Crops arrive from the edge already detected: the envelope says which class, with what score
and where in the frame. This plugin turns that metadata (``context['input']['detection']``)
into the same output shape a detector node produces, so downstream conditions such as
``'car' in context['object_detection']['detected_classes']`` read the same for crops from the
edge and for whole images detected in the cloud.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from lensflow.shared.classifiers.base import BaseClassifier, Context, Image, Output
from lensflow.shared.config.base import StrictModel


class EdgeDetectionParams(StrictModel):
    """Parameters of the ``edge_detection`` node."""

    min_score: float = Field(0.0, ge=0, le=1, description="Ignore an edge detection below this.")


class EdgeDetection(BaseClassifier):
    """Reports the detection the edge sent with the crop (no inference)."""

    key = "edge_detection"
    version = "1"
    outputs = ("detected_classes", "detections", "count")
    needs_pixels = False  # the edge's detection, from the context
    Params = EdgeDetectionParams
    params: EdgeDetectionParams

    @classmethod
    def label_space(cls, params: Mapping[str, Any]) -> list[str] | None:
        """None: the edge model's classes are not known here.

        The API derives the detection's label schema from the stored crops' class ids and
        names (the edge model's own ids and order).
        """
        return None

    def process(self, image: Image, context: Context) -> Output:
        """Return the crop's edge detection as a one-item detection list (or none)."""
        meta = context.get("input") or {}
        detection: Any = meta.get("detection") if isinstance(meta, dict) else None
        if (
            not isinstance(detection, dict)
            or float(detection.get("score", 0.0)) < self.params.min_score
        ):
            return {"detected_classes": [], "detections": [], "count": 0}
        box = [float(v) for v in detection.get("box", [0, 0, image.shape[1], image.shape[0]])]
        item = {
            "class_name": str(detection.get("class_name", "")),
            "score": float(detection.get("score", 0.0)),
            "box": box,
            "area": max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1]),
        }
        return {"detected_classes": [item["class_name"]], "detections": [item], "count": 1}
