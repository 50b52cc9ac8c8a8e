"""An image classifier exported to ONNX (e.g. EfficientNet-Lite0), run by ONNX Runtime.

The model takes a float ``(N, 3, H, W)`` RGB batch normalised by ``mean``/``std`` and returns
one row of logits per image. :meth:`OnnxClassifier.process_batch` resizes the whole batch and
runs it in one ONNX Runtime call (a model exported with a dynamic batch axis, as
:func:`lensflow.models.export.classifier.export_timm_classifier` does; a fixed-batch model gets the
batch in chunks).
Give the node a ``batch:`` setting so the cloud worker hands it batches. With ``runtime: triton``
the same model runs on a Triton Inference Server (:mod:`.triton_client`): the preprocessing and
the outputs stay here, each batch is one request.

Example node::

    - name: imagenet
      class: onnx_classifier
      params: {model: var/models/efficientnet-lite0/export/onnx-fp32/model.onnx}
      batch: {max_size: 16, max_wait_ms: 25}
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Self

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from pydantic import Field, field_validator, model_validator

from lensflow.shared.classifiers.base import BaseClassifier, Context, Image, Output
from lensflow.shared.classifiers.triton_client import (
    TritonParams,
    TritonSession,
    file_sha256,
    pairing_problem,
)
from lensflow.shared.config.base import StrictModel
from lensflow.shared.errors import PluginError

Runtime = Literal["onnxruntime", "triton"]

FloatArray = npt.NDArray[np.float32]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class OnnxClassifierParams(StrictModel):
    """Parameters of the ``onnx_classifier`` node."""

    model: str | None = Field(
        None,
        description="Path of the .onnx file: (N, 3, H, W) RGB in, logits out. Optional with "
        "runtime triton (when given, the served model must be this file).",
    )
    mean: tuple[float, float, float] = Field(
        IMAGENET_MEAN, description="Per-channel RGB mean of pixels scaled to [0, 1]."
    )
    std: tuple[float, float, float] = Field(
        IMAGENET_STD, description="Per-channel RGB standard deviation of pixels in [0, 1]."
    )
    labels: list[str] | None = Field(
        None, description="Class names in output order; 'class_<index>' when absent."
    )
    threads: int | None = Field(
        None, ge=1, description="ONNX Runtime intra-op threads; its own default when absent."
    )
    runtime: Runtime = Field(
        "onnxruntime", description="onnxruntime (in the worker) or triton (a Triton server)."
    )
    triton: TritonParams | None = Field(
        None, description="Server and model name of runtime triton."
    )

    @model_validator(mode="after")
    def _model_exists(self) -> Self:
        problem = runtime_problem(self.model, runtime=self.runtime, triton=self.triton)
        if problem:
            raise ValueError(problem)
        return self

    @field_validator("std")
    @classmethod
    def _positive_std(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(value) <= 0:
            raise ValueError(f"std must be 3 positive numbers, but got {list(value)}")
        return value


class OnnxClassifier(BaseClassifier):
    """Top-1 class of an ONNX image classifier, a whole batch per ONNX Runtime call."""

    key = "onnx_classifier"
    version = "1"
    outputs = ("label", "score", "class_id")
    Params = OnnxClassifierParams
    params: OnnxClassifierParams

    def __init__(self, params: OnnxClassifierParams | None = None) -> None:
        """Load the model.

        Raises:
            PluginError: If the model cannot be loaded or its input is not (N, 3, H, W).

        """
        super().__init__(params)
        p = self.params
        self._session = open_session(p.model, runtime=p.runtime, triton=p.triton, threads=p.threads)
        self.description = getattr(self._session, "description", f"onnxruntime {p.model}")
        tensor = self._session.get_inputs()[0]
        self._input = tensor.name
        where = p.model if p.triton is None else f"{p.triton.model} at {p.triton.url}"
        self.batch_limit, self.input_size = _input_layout(tensor.shape, str(where))
        self.served_sha256: str | None = None
        if isinstance(self._session, TritonSession):
            self.batch_limit = None  # the session splits by the server's max_batch_size
            self.served_sha256 = self._session.sha256
        self._mean = np.array(self.params.mean, dtype=np.float32) * 255.0
        self._scale = 1.0 / (np.array(self.params.std, dtype=np.float32) * 255.0)

    def preprocess(self, images: Sequence[Image]) -> FloatArray:
        """Resize each BGR image to the model's input and stack them as normalised NCHW RGB."""
        height, width = self.input_size
        resized = np.stack(
            [cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR) for image in images]
        )
        rgb = resized[..., ::-1].astype(np.float32)
        normalised: FloatArray = ((rgb - self._mean) * self._scale).transpose(0, 3, 1, 2)
        return np.ascontiguousarray(normalised)

    def process(self, image: Image, context: Context) -> Output:
        """Classify one image (a batch of one)."""
        return self.process_batch([image], [context])[0]

    def process_batch(self, images: Sequence[Image], contexts: Sequence[Context]) -> list[Output]:
        """Classify a batch in one ONNX Runtime call (chunks for a fixed-batch model)."""
        if not images:
            return []
        (logits,) = self.infer(images, [self.output_names[0]])
        return [self._top1(row) for row in logits]

    @property
    def output_names(self) -> tuple[str, ...]:
        """The model's output names, in graph order (the first holds the logits)."""
        return tuple(output.name for output in self._session.get_outputs())

    def infer(self, images: Sequence[Image], names: Sequence[str]) -> list[FloatArray]:
        """The named outputs of a batch of BGR images, each ``(N, ...)`` flattened to 2-D.

        One ONNX Runtime call per batch (per chunk for a fixed-batch model); for plugins that
        read other outputs of the model than the logits (e.g. pooled features).
        """
        tensor = self.preprocess(images)
        step = self.batch_limit or len(images)
        chunks = [
            self._session.run(list(names), {self._input: tensor[start : start + step]})
            for start in range(0, len(images), step)
        ]
        return [
            np.concatenate([chunk[i] for chunk in chunks]).reshape(len(images), -1)
            for i in range(len(names))
        ]

    def _top1(self, logits: FloatArray) -> Output:
        """Softmax, then the best class with its probability."""
        shifted = np.exp(logits - logits.max())
        probabilities = shifted / shifted.sum()
        index = int(probabilities.argmax())
        labels = self.params.labels
        label = labels[index] if labels is not None and index < len(labels) else f"class_{index}"
        return {"label": label, "score": float(probabilities[index]), "class_id": index}

    def warmup(self) -> None:
        """Run one black image, so the first real batch is not slow."""
        height, width = self.input_size
        self.process_batch([np.zeros((height, width, 3), dtype=np.uint8)], [{}])


def runtime_problem(model: str | None, *, runtime: Runtime, triton: TritonParams | None) -> str:
    """Why a node's model/runtime settings cannot work, or '' when they can."""
    if problem := pairing_problem(runtime, triton):
        return problem
    if runtime == "triton":
        if model is not None and not Path(model).is_file():
            return f"model must be an existing .onnx file or left out, but {model!r} is not a file"
        return ""
    if model is None or not Path(model).is_file():
        return f"model must be an existing .onnx file, but {model!r} is not a file"
    return ""


def open_session(
    model: str | None, *, runtime: Runtime, triton: TritonParams | None, threads: int | None
) -> Any:
    """An ONNX Runtime session on ``model``, or a :class:`TritonSession` for runtime triton.

    Raises:
        PluginError: The local model cannot be loaded.
        ServiceUnavailableError: The Triton server or model is not ready.
        ModelError: Triton serves another file than ``model``.

    """
    if runtime == "triton":
        if triton is None:
            raise PluginError("runtime triton needs triton: {url, model}")
        expected = None if model is None else file_sha256(Path(model))
        return TritonSession(triton, expected_sha256=expected)
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own untyped exceptions
        raise PluginError(f"cannot load ONNX model {model}: {err}") from err


def _input_layout(shape: Sequence[object], source: str) -> tuple[int | None, tuple[int, int]]:
    """The fixed batch size (None when dynamic) and (H, W) of an (N, 3, H, W) input."""
    dims = [dim if isinstance(dim, int) and dim > 0 else None for dim in shape]
    if len(dims) != 4 or dims[1] != 3 or dims[2] is None or dims[3] is None:
        raise PluginError(
            f"{source}: expected an input of shape (N, 3, H, W) with fixed H and W, "
            f"got {list(shape)}"
        )
    return dims[0], (dims[2], dims[3])
