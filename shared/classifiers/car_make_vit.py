"""Car make from a Hugging Face image-classification checkpoint (a ViT fine-tuned on cars).

The model is a local folder — a checkpoint saved with ``save_pretrained`` for
``runtime: transformers``, or the folder ``lensflow models export-hf`` writes for
``runtime: onnxruntime`` — or, with ``hub: true`` on a connected machine, a hub id. Labels come
from the folder's ``config.json`` (``id2label``) and preprocessing from its
``preprocessor_config.json``, re-implemented in numpy (see
:mod:`lensflow.shared.classifiers.hf_checkpoint`), so the ONNX path imports no torch. A whole batch
runs in one call. A missing folder fails when the pipeline is compiled; a corrupt model when
the plugin is created — never per crop.

Example node::

    - name: car_make_classification
      class: car_make_vit
      params: {model: var/models/car-make-vit/onnx, runtime: onnxruntime, top_k: 3}
      batch: {max_size: 16, max_wait_ms: 25}
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
from pydantic import Field, model_validator

from lensflow.shared.classifiers.base import BaseClassifier, Context, Image, Output
from lensflow.shared.classifiers.hf_checkpoint import (
    CONFIG_FILE,
    PREPROCESSOR_FILE,
    WEIGHT_FILES,
    FloatArray,
    ImageProcessorSpec,
    read_labels,
)
from lensflow.shared.classifiers.hf_runtime import (
    LogitsRuntime,
    OnnxRuntimeLogits,
    TransformersLogits,
    TritonLogits,
    download_from_hub,
)
from lensflow.shared.classifiers.triton_client import TritonParams, pairing_problem
from lensflow.shared.config.base import StrictModel
from lensflow.shared.errors import ModelError

logger = logging.getLogger(__name__)


class CarMakeViTParams(StrictModel):
    """Parameters of the ``car_make_vit`` node."""

    model: str = Field(
        description="Folder of the model: a save_pretrained checkpoint (runtime transformers) "
        "or a 'lensflow models export-hf' output (runtime onnxruntime); a hub id with hub: true."
    )
    runtime: Literal["onnxruntime", "transformers", "triton"] = Field(
        "onnxruntime",
        description="onnxruntime (exported .onnx, no torch), transformers (torch) or triton "
        "(the export served by a Triton server; the folder gives labels and preprocessing).",
    )
    triton: TritonParams | None = Field(
        None, description="Server and model name of runtime triton."
    )
    onnx_file: str = Field(
        "model.onnx", description="ONNX file inside the folder, e.g. model.int8.onnx."
    )
    providers: list[str] | None = Field(
        None,
        description="ONNX Runtime execution providers in order of preference; default: CUDA "
        "when onnxruntime-gpu offers it, then CPU.",
    )
    threads: int | None = Field(None, ge=1, description="ONNX Runtime intra-op threads.")
    device: str = Field("cpu", description="torch device of runtime transformers, e.g. cuda:0.")
    top_k: int = Field(5, ge=1, description="How many (label, score) pairs to report.")
    hub: bool = Field(
        False, description="model is a Hugging Face hub id, downloaded on load (connected only)."
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit).")

    @model_validator(mode="after")
    def _check_model(self) -> Self:
        if problem := pairing_problem(self.runtime, self.triton):
            raise ValueError(problem)
        if self.hub:
            if self.runtime != "transformers":
                raise ValueError("hub: true needs runtime: transformers (exports are folders)")
            return self
        folder = Path(self.model)
        needed, what = _expected_files(self)
        if not folder.is_dir():
            raise ValueError(
                f"model must be a folder holding {what}, but {self.model!r} is not a folder; "
                + (
                    f"make it with `lensflow models export-hf CHECKPOINT --out {self.model}`"
                    if self.runtime == "onnxruntime"
                    else "save a fine-tuned checkpoint there with save_pretrained"
                )
            )
        missing = [name for name in needed if not (folder / name).is_file()]
        if self.runtime == "transformers" and not any((folder / w).is_file() for w in WEIGHT_FILES):
            missing.append(" or ".join(WEIGHT_FILES))
        if missing:
            raise ValueError(
                f"model folder {self.model!r} lacks {', '.join(missing)}: expected {what}"
            )
        return self


def _expected_files(params: CarMakeViTParams) -> tuple[list[str], str]:
    """The files the runtime needs in the model folder, and a phrase describing the folder."""
    if params.runtime == "triton":
        return (
            [CONFIG_FILE, PREPROCESSOR_FILE],
            f"{CONFIG_FILE} and {PREPROCESSOR_FILE} of the export Triton serves",
        )
    if params.runtime == "onnxruntime":
        return (
            [params.onnx_file, CONFIG_FILE, PREPROCESSOR_FILE],
            f"{params.onnx_file}, {CONFIG_FILE} and {PREPROCESSOR_FILE} "
            "(what 'lensflow models export-hf' writes)",
        )
    return (
        [CONFIG_FILE, PREPROCESSOR_FILE],
        f"a Hugging Face checkpoint ({CONFIG_FILE}, {PREPROCESSOR_FILE}, model.safetensors)",
    )


class CarMakeViT(BaseClassifier):
    """The car make of a crop: the top label, its probability, and the top-k."""

    key = "car_make_vit"
    version = "1"
    outputs = ("label", "score", "top_k")
    Params = CarMakeViTParams
    params: CarMakeViTParams

    def __init__(self, params: CarMakeViTParams | None = None) -> None:
        """Read the labels and preprocessing, and load the model on the chosen runtime.

        Raises:
            ModelError: a model file is missing, corrupt, or disagrees with the labels or
                the preprocessing.
            PluginUnavailableError: the runtime (torch/transformers, onnxruntime, or a
                requested execution provider) is not installed here.

        """
        super().__init__(params)
        p = self.params
        folder = download_from_hub(p.model, revision=p.revision) if p.hub else Path(p.model)
        self.labels = read_labels(folder)
        self.processor = ImageProcessorSpec.read(folder)
        size = self.processor.input_size
        assert size is not None  # ImageProcessorSpec.read rejects a variable size
        self.input_size = size
        self.runtime: LogitsRuntime
        if p.runtime == "onnxruntime":
            self.runtime = OnnxRuntimeLogits(
                folder / p.onnx_file,
                input_size=size,
                num_labels=len(self.labels),
                providers=p.providers,
                threads=p.threads,
            )
        elif p.runtime == "triton":
            assert p.triton is not None  # checked by the params
            local = folder / p.onnx_file
            self.runtime = TritonLogits(
                p.triton,
                local=local if local.is_file() else None,
                input_size=size,
                num_labels=len(self.labels),
            )
        else:
            self.runtime = TransformersLogits(folder, num_labels=len(self.labels), device=p.device)
        logger.info("car_make_vit: %d makes, %s", len(self.labels), self.runtime.description)

    @classmethod
    def label_space(cls, params: Mapping[str, Any]) -> list[str] | None:
        """The makes in the checkpoint's class order (``id2label``), when its folder is here.

        None for a hub id (it would have to be downloaded) and when the folder or its
        ``config.json`` is missing or unreadable.
        """
        model = params.get("model")
        if not isinstance(model, str) or params.get("hub"):
            return None
        try:
            return list(read_labels(Path(model)))
        except (ModelError, OSError):
            return None

    def logits(self, images: Sequence[Image]) -> FloatArray:
        """Raw ``(N, classes)`` logits of a batch of BGR images (one runtime call)."""
        return self.runtime.logits(self.processor(images))

    def process(self, image: Image, context: Context) -> Output:
        """Classify one crop (a batch of one)."""
        return self.process_batch([image], [context])[0]

    def process_batch(self, images: Sequence[Image], contexts: Sequence[Context]) -> list[Output]:
        """Classify a batch of crops in one runtime call."""
        if not images:
            return []
        return [self._result(row) for row in self.logits(images)]

    def warmup(self) -> None:
        """Run one black crop, so the first real batch is not slow."""
        height, width = self.input_size
        self.process_batch([np.zeros((height, width, 3), dtype=np.uint8)], [{}])

    def _result(self, logits: FloatArray) -> Output:
        """Softmax over one row of logits, then the best label and the top-k."""
        shifted = np.exp(logits.astype(np.float64) - logits.max())
        probabilities = shifted / shifted.sum()
        order = np.argsort(-probabilities, kind="stable")[: self.params.top_k]
        top = [{"label": self.labels[i], "score": float(probabilities[i])} for i in order]
        return {"label": top[0]["label"], "score": top[0]["score"], "top_k": top}
