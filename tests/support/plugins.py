"""Test classifiers: small plugins that behave (compute from the pixels), not recorders."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
from pydantic import BaseModel, Field

from lensflow.models.export.artifacts import ManifestModelStore
from lensflow.shared.classifiers.base import BaseClassifier, Context, Image, Output
from lensflow.shared.classifiers.model_store import CONTEXT_KEY, ModelStore
from lensflow.shared.classifiers.registry import PluginRegistry
from lensflow.shared.config.base import StrictModel
from lensflow.shared.errors import ServiceUnavailableError

ParamsT = TypeVar("ParamsT", bound=BaseModel)

PALETTE = {
    "red": (0, 0, 200),
    "green": (0, 160, 0),
    "blue": (200, 0, 0),
    "white": (235, 235, 235),
    "black": (20, 20, 20),
    "grey": (128, 128, 128),
}


class MeanColorShirt(BaseClassifier):
    """Names the palette colour nearest to the mean of the crop's upper-middle region."""

    key = "tshirt_color"
    version = "test-1"
    outputs = ("color", "score")

    def process(self, image: Image, context: Context) -> Output:
        h, w = image.shape[:2]
        torso = image[h // 5 : h // 2, w // 4 : 3 * w // 4].reshape(-1, 3).astype(float)
        mean = torso.mean(axis=0)
        name, ref = min(PALETTE.items(), key=lambda kv: float(np.linalg.norm(mean - kv[1])))
        distance = float(np.linalg.norm(mean - ref))
        return {"color": name, "score": max(0.0, 1.0 - distance / 442.0)}


class CarMakeParams(StrictModel):
    makes: list[str] = Field(default_factory=lambda: ["audi", "bmw", "ford", "toyota"])
    model: str | None = None  # the real plugin's checkpoint folder; the fake needs none


class BrightnessCarMake(BaseClassifier):
    """Picks a 'make' from the crop's brightness; counts batch calls to test batching."""

    key = "car_make_vit"
    version = "test-1"
    outputs = ("label", "score")
    Params = CarMakeParams
    params: CarMakeParams

    def __init__(self, params: CarMakeParams | None = None) -> None:
        super().__init__(params)
        self.batch_sizes: list[int] = []

    def process(self, image: Image, context: Context) -> Output:
        brightness = float(image.mean()) / 255.0
        makes = self.params.makes
        return {
            "label": makes[min(int(brightness * len(makes)), len(makes) - 1)],
            "score": round(brightness, 4),
        }

    def process_batch(self, images: Sequence[Image], contexts: Sequence[Context]) -> list[Output]:
        self.batch_sizes.append(len(images))
        return super().process_batch(images, contexts)


class FailsOnDark(BaseClassifier):
    """Raises on dark images (mean < 60), as a real plugin might on bad input."""

    key = "fails_on_dark"
    version = "test-1"
    outputs = ("ok",)

    def process(self, image: Image, context: Context) -> Output:
        if float(image.mean()) < 60:
            raise ValueError("image too dark to classify")
        return {"ok": True}


class Forgetful(BaseClassifier):
    """Breaks the contract: does not return its declared output key."""

    key = "forgetful"
    version = "test-1"
    outputs = ("label",)

    def process(self, image: Image, context: Context) -> Output:
        return {"something_else": 1}


class Echo(BaseClassifier):
    """Returns the names of the upstream outputs it saw (to test context passing)."""

    key = "echo"
    version = "test-1"
    outputs = ("saw",)

    def process(self, image: Image, context: Context) -> Output:
        return {"saw": sorted(context)}


class ColorEmbedding(BaseClassifier):
    """A 12-d embedding: the mean colour of each image quadrant, centred and L2-normalised.

    Images of similar colour layout get similar vectors, so search results can be checked.
    """

    key = "color_embedding"
    version = "test-1"
    outputs = ("vector", "dim", "model")

    def process(self, image: Image, context: Context) -> Output:
        return {"vector": color_embedding(image).tolist(), "dim": 12, "model": "color-test-1"}


def color_embedding(image: Image) -> np.ndarray:
    """The :class:`ColorEmbedding` vector of an image."""
    h, w = image.shape[:2]
    quads = [
        image[: h // 2, : w // 2],
        image[: h // 2, w // 2 :],
        image[h // 2 :, : w // 2],
        image[h // 2 :, w // 2 :],
    ]
    vector = np.concatenate([q.reshape(-1, 3).mean(axis=0) - 127.5 for q in quads])
    norm = float(np.linalg.norm(vector))
    return (vector / norm if norm else vector).astype(np.float32)


class AspectVehicleType(BaseClassifier):
    """Calls wide crops buses and the rest cars (a vehicle_type stand-in that needs no model)."""

    key = "vehicle_type"
    version = "test-1"
    outputs = ("type", "score", "is_vehicle")

    def process(self, image: Image, context: Context) -> Output:
        h, w = image.shape[:2]
        return {"type": "bus" if w > 1.2 * h else "car", "score": 1.0, "is_vehicle": True}


class QuadrantEmbeddings(ColorEmbedding):
    """:class:`ColorEmbedding` under the ``embeddings`` key (its stand-in, needs no model)."""

    key = "embeddings"


class OutageParams(StrictModel):
    unavailable_calls: int = Field(0, ge=0, description="Calls refused before it answers.")


class RemoteBrightness(BaseClassifier):
    """Brightness, as a remote inference server would answer it; the server is down (it raises
    ServiceUnavailableError) for the first ``unavailable_calls`` calls of this instance."""

    key = "remote_brightness"
    version = "test-1"
    outputs = ("label", "score")
    Params = OutageParams
    params: OutageParams

    def __init__(self, params: OutageParams | None = None) -> None:
        super().__init__(params)
        self.calls = 0

    def process(self, image: Image, context: Context) -> Output:
        return self.process_batch([image], [context])[0]

    def process_batch(self, images: Sequence[Image], contexts: Sequence[Context]) -> list[Output]:
        self.calls += 1
        if self.calls <= self.params.unavailable_calls:
            raise ServiceUnavailableError(
                f"triton at 127.0.0.1:1 is not ready (call {self.calls} of "
                f"{self.params.unavailable_calls} refused)"
            )
        return [brightness_label(image) for image in images]


def brightness_label(image: Image) -> Output:
    """What :class:`RemoteBrightness` answers for an image once its server is up."""
    score = round(float(image.mean()) / 255.0, 4)
    return {"label": "bright" if score >= 0.5 else "dark", "score": score}


class CropSize(BaseClassifier):
    """Names the crop's orientation from its size alone: it needs no pixels (nothing decoded)."""

    key = "crop_size"
    version = "test-1"
    outputs = ("label", "width", "height")
    needs_pixels = False

    def process(self, image: Image, context: Context) -> Output:
        height, width = image.shape[:2]
        label = "wide" if width > height else "tall"
        return {"label": label, "width": int(width), "height": int(height)}


def make_registry() -> PluginRegistry:
    """The default registry plus the test plugins above, which replace built-ins of their key.

    ``car_make_vit`` is a real plugin (a ViT checkpoint); here it is the brightness fake, so
    pipeline tests need no model. The real one stays reachable by its dotted path,
    ``lensflow.shared.classifiers.car_make_vit.CarMakeViT``. Likewise ``tshirt_color`` is the
    mean-colour fake here and ``lensflow.shared.classifiers.shirt_color.ShirtColor`` by default.
    """
    registry = PluginRegistry(models=ManifestModelStore()).discover()
    for plugin in (MeanColorShirt, BrightnessCarMake, FailsOnDark, Forgetful, Echo, ColorEmbedding):
        registry.register(plugin, replace=True)
    registry.register(RemoteBrightness, replace=True)
    registry.register(CropSize, replace=True)
    for fake in (AspectVehicleType, QuadrantEmbeddings):  # the EfficientNet-Lite0 plugins
        registry.register(fake, replace=True)
    return registry


def with_store(params: type[ParamsT], store: ModelStore | None = None, **values: object) -> ParamsT:
    """Validate a plugin's params as the compiler does: with a model store in the context."""
    context = {CONTEXT_KEY: store if store is not None else ManifestModelStore()}
    return params.model_validate(values, context=context)
