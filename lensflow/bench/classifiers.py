"""Classifier plugin throughput: crops per second at batch 1 and batch 8, on real crops.

Each plugin is built as a pipeline would build it (default params; real weights for
``vehicle_type`` and ``embeddings``, built from the manifest on first use), warmed up, then
fed the same real crops of the sample photos in batches of each size through
``process_batch``, which is what the cloud worker calls; each figure is the best of a few
passes, the batch sizes taking turns. ``car_make_vit`` has no real weights
here: it runs a randomly initialised ViT of a chosen size, exported to ONNX with
``lensflow models export-hf``'s code — its figures are of the architecture, not of a trained
model, and are marked so.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lensflow.bench.samples import crop_images
from lensflow.models.export.artifacts import ManifestModelStore
from lensflow.shared.classifiers.base import BaseClassifier, Context, Image, validate_params
from lensflow.shared.classifiers.model_store import CONTEXT_KEY
from lensflow.shared.errors import LensflowError

PLUGINS = ("vehicle_type", "embeddings", "tshirt_color", "car_make_vit")
BATCH_SIZES = (1, 8)
STANFORD_CARS_CLASSES = 196  # the car-make dataset a real checkpoint would be fine-tuned on

ViTSize = Literal["test", "tiny", "base"]
VIT_SIZES: dict[ViTSize, dict[str, int]] = {
    # the tests' checkpoint: 32x32 input, 2 layers (for smoke runs)
    "test": {"image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2,
             "num_attention_heads": 2, "intermediate_size": 64},
    # DeiT-Tiny's shape (5.7 M parameters)
    "tiny": {"image_size": 224, "patch_size": 16, "hidden_size": 192, "num_hidden_layers": 12,
             "num_attention_heads": 3, "intermediate_size": 768},
    # ViT-B/16's shape (86 M parameters), what most published car-make ViTs fine-tune
    "base": {"image_size": 224, "patch_size": 16, "hidden_size": 768, "num_hidden_layers": 12,
             "num_attention_heads": 12, "intermediate_size": 3072},
}  # fmt: skip


@dataclass(frozen=True)
class PluginSpeed:
    """One plugin's throughput: crops per second per batch size."""

    plugin: str
    model: str
    rates: dict[int, float]

    def ratio(self, big: int, small: int) -> float:
        """Throughput at batch ``big`` over throughput at batch ``small``."""
        return self.rates[big] / self.rates[small]


@dataclass
class ClassifierBench:
    """What :func:`run_classifier_bench` measured, and the plugins it could not run."""

    crops: int
    rounds: int
    batch_sizes: tuple[int, ...]
    results: list[PluginSpeed] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict of the run."""
        return {
            "crops": self.crops,
            "rounds": self.rounds,
            "batch_sizes": list(self.batch_sizes),
            "results": [
                {"plugin": r.plugin, "model": r.model, "crops_per_s": r.rates} for r in self.results
            ],
            "skipped": self.skipped,
        }


def run_classifier_bench(
    *,
    plugins: Sequence[str] = PLUGINS,
    crops: int = 64,
    rounds: int = 3,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    vit: ViTSize = "tiny",
    threads: int | None = None,
    progress: Callable[[str], object] = print,
) -> ClassifierBench:
    """Measure each plugin's crops/s at each batch size on ``crops`` real crops.

    Args:
        plugins: plugin keys, from :data:`PLUGINS`.
        crops: how many distinct crops (each round feeds all of them).
        rounds: timed passes over the crops per batch size, the sizes taking turns; the
            best pass counts (other processes on the machine only ever slow a pass down).
        batch_sizes: the batch sizes to time.
        vit: the shape of the random ViT that stands in for a car-make checkpoint.
        threads: ONNX Runtime intra-op threads of the ONNX plugins (its default when None).
        progress: called with a line as each plugin is built and timed.

    Returns:
        The figures; a plugin that cannot be built here is in ``skipped`` with the reason.

    Raises:
        ValueError: an unknown plugin key.

    """
    unknown = sorted(set(plugins) - set(PLUGINS))
    if unknown:
        raise ValueError(f"unknown plugins {unknown}: expected some of {list(PLUGINS)}")
    images = [image for image, _, _ in crop_images(crops)]
    bench = ClassifierBench(crops, rounds, tuple(batch_sizes))
    with tempfile.TemporaryDirectory(prefix="lensflow-bench-classifiers-") as scratch:
        for name in plugins:
            progress(f"{name}: loading ...")
            try:
                plugin, model = build_plugin(name, vit=vit, threads=threads, workdir=Path(scratch))
            except (LensflowError, ImportError, ValueError) as err:
                bench.skipped[name] = str(err)
                progress(f"{name}: skipped ({err})")
                continue
            plugin.warmup()
            rates = dict.fromkeys(batch_sizes, 0.0)
            for _ in range(rounds):  # sizes interleaved, so a busy spell hits all alike
                for size in batch_sizes:
                    rates[size] = max(rates[size], crops_per_second(plugin, images, size))
            bench.results.append(PluginSpeed(name, model, rates))
    return bench


def crops_per_second(plugin: BaseClassifier, images: Sequence[Image], batch_size: int) -> float:
    """Crops per second of ``plugin.process_batch`` over one pass of ``images`` in batches."""
    contexts: list[Context] = [{} for _ in images]
    plugin.process_batch(images[:batch_size], contexts[:batch_size])  # this size's warm-up
    start = time.perf_counter()
    for first in range(0, len(images), batch_size):
        last = first + batch_size
        plugin.process_batch(images[first:last], contexts[first:last])
    return len(images) / (time.perf_counter() - start)


def build_plugin(
    name: str, *, vit: ViTSize, threads: int | None, workdir: Path
) -> tuple[BaseClassifier, str]:
    """The plugin ``name`` as a pipeline would build it, and a description of its model."""
    models = {CONTEXT_KEY: ManifestModelStore()}  # model names resolve as in a worker
    if name == "vehicle_type":
        from lensflow.shared.classifiers.vehicle_type import VehicleType, VehicleTypeParams

        params = validate_params(VehicleType, {"threads": threads}, context=models)
        assert isinstance(params, VehicleTypeParams)
        vehicle = VehicleType(params)
        where = vehicle.model_path.parent.name if vehicle.model_path else "on Triton"
        return vehicle, f"efficientnet-lite0 ({where})"
    if name == "embeddings":
        from lensflow.shared.classifiers.embeddings import Embeddings, EmbeddingsParams

        embedding_params = validate_params(Embeddings, {"threads": threads}, context=models)
        assert isinstance(embedding_params, EmbeddingsParams)
        embeddings = Embeddings(embedding_params)
        return embeddings, embeddings.model_id
    if name == "tshirt_color":
        from lensflow.shared.classifiers.shirt_color import ShirtColor

        return ShirtColor(), "numpy/OpenCV (no model)"
    from lensflow.shared.classifiers.car_make_vit import CarMakeViT, CarMakeViTParams

    folder = random_vit_export(workdir / f"vit-{vit}", size=vit)
    params = CarMakeViTParams(model=str(folder), runtime="onnxruntime", threads=threads)
    return CarMakeViT(params), f"random-init ViT ({vit}, {STANFORD_CARS_CLASSES} labels), ONNX"


def random_vit_export(folder: Path, *, size: ViTSize) -> Path:
    """A randomly initialised ViT car-make checkpoint, exported to ONNX in ``folder/onnx``.

    Raises:
        ImportError: torch or transformers is not installed (the ``export`` extra).
        LensflowError: the export or its check failed.

    """
    from lensflow.shared.torch_env import install_torchvision_nms

    install_torchvision_nms()
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessorPil
    from transformers.utils import logging as hf_logging

    from lensflow.models.export.hf import export_hf_classifier

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # no bars in the table
    labels = [f"make_{index:03d}" for index in range(STANFORD_CARS_CLASSES)]
    shape = VIT_SIZES[size]
    config: Any = ViTConfig(
        id2label=dict(enumerate(labels)),
        label2id={label: index for index, label in enumerate(labels)},
    )
    for key, value in shape.items():
        setattr(config, key, value)
    torch.manual_seed(0)
    checkpoint = folder / "checkpoint"
    model: Any = ViTForImageClassification(config)
    model.eval().save_pretrained(checkpoint)
    side = shape["image_size"]
    ViTImageProcessorPil(size={"height": side, "width": side}).save_pretrained(checkpoint)
    images = [image for image, _, _ in crop_images(4, seed=1)]
    export_hf_classifier(checkpoint, out_dir=folder / "onnx", images=images)
    return folder / "onnx"
