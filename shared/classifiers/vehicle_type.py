"""Vehicle type of a crop, from ImageNet EfficientNet-Lite0's vehicle classes (real weights).

The ImageNet-1k classifier (see :mod:`lensflow.shared.classifiers.effnet_lite` for where the model
comes from) gives a probability per class; the road-vehicle classes are grouped into types
(:data:`VEHICLE_TYPES`: school bus, trolleybus and minibus are a ``bus``; trailer truck, fire
engine, garbage truck, tow truck, moving van, snowplow and tractor a ``truck``; ...).

Outputs:

* ``type``: the type with the most probability mass (summed over its ImageNet classes).
* ``score``: that mass as a share of the mass of all vehicle classes — the probability of the
  type *given that the crop is a vehicle* (the detector upstream already said it is one),
  so the types' scores sum to 1 whatever the crop.
* ``vehicle_score``: the mass of all vehicle classes over all 1000 classes.
* ``is_vehicle``: ``vehicle_score >= min_vehicle_score``; when false, ``type`` is only the
  least unlikely type and should not be trusted.
* ``top_class`` / ``top_class_score``: ImageNet's own top-1 class name and probability.

Example node::

    - name: vehicle_type
      class: vehicle_type
      depends_on: object_detection
      when:
        any:
          - {contains: [object_detection.detected_classes, car]}
          - {contains: [object_detection.detected_classes, truck]}
          - {contains: [object_detection.detected_classes, bus]}
      batch: {max_size: 16, max_wait_ms: 25}
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import Field

from lensflow.shared.classifiers.base import BaseClassifier, Context, Image, Output
from lensflow.shared.classifiers.effnet_lite import LOGITS, EffNetParams, load_effnet
from lensflow.shared.classifiers.onnx_classifier import FloatArray
from lensflow.shared.errors import ModelError

logger = logging.getLogger(__name__)

LABELS_FILE = Path(__file__).with_name("imagenet_labels.yaml")
NUM_CLASSES = 1000

# ImageNet-1k class index -> vehicle type. Rail vehicles are a type of their own (an edge
# detector's 'train' or a tram taken for a bus); carts, go-karts and tanks are not vehicles here.
VEHICLE_TYPES: Mapping[int, str] = {
    436: "car",  # beach wagon, station wagon
    511: "car",  # convertible
    609: "car",  # jeep
    627: "car",  # limousine
    661: "car",  # Model T
    751: "sports car",  # racer, race car
    817: "sports car",
    468: "taxi",  # cab
    656: "van",  # minivan
    757: "van",  # recreational vehicle
    717: "pickup",
    654: "bus",  # minibus
    779: "bus",  # school bus
    874: "bus",  # trolleybus
    555: "truck",  # fire engine
    569: "truck",  # garbage truck
    675: "truck",  # moving van (a box truck)
    803: "truck",  # snowplow
    864: "truck",  # tow truck
    866: "truck",  # tractor
    867: "truck",  # trailer truck
    407: "ambulance",
    734: "police",  # police van
    665: "motorcycle",  # moped
    670: "motorcycle",  # motor scooter
    444: "bicycle",  # bicycle-built-for-two
    671: "bicycle",  # mountain bike
    870: "bicycle",  # tricycle
    466: "train",  # bullet train
    547: "train",  # electric locomotive
    565: "train",  # freight car
    705: "train",  # passenger car (railway)
    820: "train",  # steam locomotive
    829: "train",  # streetcar, tram
}
TYPES: tuple[str, ...] = tuple(dict.fromkeys(VEHICLE_TYPES.values()))


@cache
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, in the model's output order."""
    labels = yaml.safe_load(LABELS_FILE.read_text(encoding="utf-8"))["labels"]
    if len(labels) != NUM_CLASSES:
        raise ModelError(f"{LABELS_FILE}: expected {NUM_CLASSES} labels, got {len(labels)}")
    return tuple(str(label) for label in labels)


class VehicleTypeParams(EffNetParams):
    """Parameters of the ``vehicle_type`` node."""

    min_vehicle_score: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="is_vehicle when the vehicle classes hold at least this probability.",
    )


class VehicleType(BaseClassifier):
    """The vehicle type of a crop (car, van, bus, truck, ...), a whole batch per call."""

    key = "vehicle_type"
    version = "1"
    outputs = ("type", "score", "is_vehicle", "vehicle_score", "top_class", "top_class_score")
    Params = VehicleTypeParams
    params: VehicleTypeParams

    def __init__(self, params: VehicleTypeParams | None = None) -> None:
        """Load (exporting on first use) the ImageNet model.

        Raises:
            ModelError: the model cannot be built or loaded, or does not give 1000 classes.

        """
        super().__init__(params)
        self.net, self.model_path = load_effnet(self.params, plugin=self.key)
        self.labels = imagenet_labels()
        self._type_matrix = _type_matrix()
        logger.info("vehicle_type: %s", self.model_path)

    @classmethod
    def label_space(cls, params: Mapping[str, Any]) -> list[str] | None:
        """The vehicle types in their declared order (:data:`TYPES`), whatever the params."""
        return list(TYPES)

    def process(self, image: Image, context: Context) -> Output:
        """Classify one crop (a batch of one)."""
        return self.process_batch([image], [context])[0]

    def process_batch(self, images: Sequence[Image], contexts: Sequence[Context]) -> list[Output]:
        """Classify a batch of crops in one ONNX Runtime call."""
        if not images:
            return []
        (logits,) = self.net.infer(images, [LOGITS])
        if logits.shape[1] != NUM_CLASSES:
            raise ModelError(
                f"vehicle_type: {self.model_path} gives {logits.shape[1]} classes, "
                f"expected ImageNet's {NUM_CLASSES}"
            )
        return [self._result(row) for row in _softmax(logits)]

    def warmup(self) -> None:
        """Run one black crop, so the first real batch is not slow."""
        self.net.warmup()

    def _result(self, probabilities: FloatArray) -> Output:
        masses = probabilities.astype(np.float64) @ self._type_matrix
        vehicle = float(masses.sum())
        best = int(masses.argmax())
        top = int(probabilities.argmax())
        return {
            "type": TYPES[best],
            "score": float(masses[best] / vehicle) if vehicle > 0 else 0.0,
            "is_vehicle": vehicle >= self.params.min_vehicle_score,
            "vehicle_score": vehicle,
            "top_class": self.labels[top],
            "top_class_score": float(probabilities[top]),
        }


def _type_matrix() -> np.ndarray:
    """A (classes, types) 0/1 matrix: probabilities @ it = each type's probability mass."""
    matrix = np.zeros((NUM_CLASSES, len(TYPES)), dtype=np.float64)
    for index, kind in VEHICLE_TYPES.items():
        matrix[index, TYPES.index(kind)] = 1.0
    return matrix


def _softmax(logits: FloatArray) -> FloatArray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    result: FloatArray = shifted / shifted.sum(axis=1, keepdims=True)
    return result
