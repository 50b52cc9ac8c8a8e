"""Write a Triton model repository from exported ONNX models (``lensflow models triton-repo``).

One Triton model per ONNX artifact::

    OUT/<name>/config.pbtxt
    OUT/<name>/1/model.onnx        (+ model.py with --backend python)

``config.pbtxt`` is built as Triton's own ``ModelConfig`` protobuf (from ``tritonclient``), so
every field name is one Triton knows: the inputs and outputs read from the ONNX graph (the
batch axis becomes ``max_batch_size``), dynamic batching with a queue delay, an instance group
(CPU, GPU or Triton's choice), the ``onnxruntime`` backend (production; TensorRT as an optional
execution accelerator on GPUs) or the ``python`` backend (:mod:`.triton_python`: ONNX Runtime
inside Triton's Python backend, what the server bundled with ``nvidia-pytriton`` can run).
Each model's config carries the sha256 of its ONNX file as the parameter ``lensflow_sha256``:
a ``runtime: triton`` node checks that the server runs the file its config names.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lensflow.shared.classifiers.triton_client import SHA256_PARAMETER, file_sha256
from lensflow.shared.errors import LensflowError, ModelError

Backend = Literal["onnxruntime", "python"]
Kind = Literal["auto", "cpu", "gpu"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class TritonRepoError(LensflowError):
    """A model repository cannot be written (bad name, unreadable ONNX file, bad settings)."""


@dataclass(frozen=True)
class RepoSettings:
    """How every model of the repository is served.

    Attributes:
        backend: ``onnxruntime`` (production) or ``python`` (ONNX Runtime in the Python backend).
        max_batch_size: Largest batch Triton forms (and accepts) for a model with a batch axis.
        max_queue_delay_us: How long the dynamic batcher waits to fill a batch; 0 with
            ``dynamic_batching`` False.
        dynamic_batching: Merge concurrent requests into one model run.
        instances: Model instances (copies run concurrently).
        kind: Where instances run: ``cpu``, ``gpu``, or ``auto`` (Triton's choice: a GPU if any).
        tensorrt: Add TensorRT as the GPU execution accelerator (onnxruntime backend only).
        intra_op_threads: ONNX Runtime threads per instance; the runtime's default when None.

    """

    backend: Backend = "onnxruntime"
    max_batch_size: int = 32
    max_queue_delay_us: int = 2000
    dynamic_batching: bool = True
    instances: int = 1
    kind: Kind = "auto"
    tensorrt: bool = False
    intra_op_threads: int | None = None

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise TritonRepoError(f"max_batch_size must be at least 1, got {self.max_batch_size}")
        if self.instances < 1:
            raise TritonRepoError(f"instances must be at least 1, got {self.instances}")
        if self.max_queue_delay_us < 0:
            raise TritonRepoError(f"max_queue_delay_us must be >= 0, got {self.max_queue_delay_us}")
        if self.tensorrt and self.backend != "onnxruntime":
            raise TritonRepoError("tensorrt needs backend onnxruntime, got backend python")


@dataclass(frozen=True)
class Tensor:
    """One input or output of an ONNX graph, as Triton declares it."""

    name: str
    data_type: str
    dims: list[int]


def write_repository(
    out: Path, models: Sequence[tuple[str, Path]], settings: RepoSettings
) -> list[Path]:
    """Write one Triton model per ``(name, onnx file)`` into ``out``.

    Args:
        out: The repository folder (created; a model folder of the same name is replaced).
        models: Model names (Triton's, what nodes name as ``triton.model``) and ONNX files.
        settings: How they are served.

    Returns:
        The ``config.pbtxt`` written, one per model.

    Raises:
        TritonRepoError: A name is not a valid Triton model name or is given twice, or the
            ``tritonclient`` package (for Triton's config schema) is missing.
        ModelError: An ONNX file cannot be read.

    """
    names = [name for name, _ in models]
    for name in names:
        if not _NAME.match(name):
            raise TritonRepoError(
                f"expected a model name of letters, digits, '_', '.', '-', got {name!r}"
            )
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise TritonRepoError(f"expected each model name once, got {duplicates} twice or more")
    written = []
    for name, onnx_file in models:
        inputs, outputs, batched = read_signature(onnx_file)
        folder = out / name
        if folder.exists():
            shutil.rmtree(folder)
        (folder / "1").mkdir(parents=True)
        shutil.copyfile(onnx_file, folder / "1" / "model.onnx")
        if settings.backend == "python":
            from lensflow.models.export.triton_python import MODEL_PY

            (folder / "1" / "model.py").write_text(MODEL_PY, encoding="utf-8")
        config = render_config(
            name,
            inputs=inputs,
            outputs=outputs,
            batched=batched,
            sha256=file_sha256(onnx_file),
            settings=settings,
        )
        (folder / "config.pbtxt").write_text(config, encoding="utf-8")
        written.append(folder / "config.pbtxt")
    return written


def read_signature(onnx_file: Path) -> tuple[list[Tensor], list[Tensor], bool]:
    """The graph's inputs and outputs, and whether their first axis is a free batch axis.

    Raises:
        ModelError: The file is not a readable ONNX model.

    """
    try:
        import onnx
        from onnx import helper

        graph = onnx.load(str(onnx_file), load_external_data=False).graph
    except Exception as err:  # onnx raises DecodeError, OSError and others
        raise ModelError(f"{onnx_file}: expected a readable ONNX model, got: {err}") from err
    initializers = {init.name for init in graph.initializer}

    def tensors(values: Any) -> list[tuple[str, str, list[int]]]:
        found = []
        for value in values:
            if value.name in initializers:
                continue
            kind = value.type.tensor_type
            dtype = helper.tensor_dtype_to_np_dtype(kind.elem_type)
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in kind.shape.dim]
            found.append((value.name, _triton_type(dtype.name, onnx_file), dims))
        return found

    ins, outs = tensors(graph.input), tensors(graph.output)
    batched = all(dims and dims[0] in (-1, 0) for _, _, dims in [*ins, *outs])
    cut = 1 if batched else 0
    return (
        [Tensor(name, kind, [d if d > 0 else -1 for d in dims[cut:]]) for name, kind, dims in ins],
        [Tensor(name, kind, [d if d > 0 else -1 for d in dims[cut:]]) for name, kind, dims in outs],
        batched,
    )


def render_config(
    name: str,
    *,
    inputs: Sequence[Tensor],
    outputs: Sequence[Tensor],
    batched: bool,
    sha256: str,
    settings: RepoSettings,
) -> str:
    """The ``config.pbtxt`` text of one model (Triton's ``ModelConfig`` in text format)."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2 as pb
    except ImportError as err:
        raise TritonRepoError(
            f"writing a Triton repository needs tritonclient (pip install 'lensflow[cloud]'): {err}"
        ) from err
    config = pb.ModelConfig(name=name, backend=settings.backend)
    config.max_batch_size = settings.max_batch_size if batched else 0
    for tensor in inputs:
        config.input.add(name=tensor.name, data_type=tensor.data_type, dims=tensor.dims)
    for tensor in outputs:
        config.output.add(name=tensor.name, data_type=tensor.data_type, dims=tensor.dims)
    group = config.instance_group.add(count=settings.instances)
    kinds = {"cpu": "KIND_CPU", "gpu": "KIND_GPU", "auto": "KIND_AUTO"}
    group.kind = pb.ModelInstanceGroup.Kind.Value(kinds[settings.kind])
    if batched and settings.dynamic_batching:
        config.dynamic_batching.max_queue_delay_microseconds = settings.max_queue_delay_us
    if settings.tensorrt:
        accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add(
            name="tensorrt"
        )
        accelerator.parameters["precision_mode"] = "FP16"
    config.parameters[SHA256_PARAMETER].string_value = sha256
    if settings.backend == "python":
        config.parameters["onnx_file"].string_value = "model.onnx"
    if settings.intra_op_threads is not None:
        key = "intra_op_threads" if settings.backend == "python" else "intra_op_thread_count"
        config.parameters[key].string_value = str(settings.intra_op_threads)
    header = f"# Written by `lensflow models triton-repo` ({settings.backend} backend).\n"
    return header + str(text_format.MessageToString(config))


_TYPES = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "float64": "TYPE_FP64",
    "int64": "TYPE_INT64",
    "int32": "TYPE_INT32",
    "int8": "TYPE_INT8",
    "uint8": "TYPE_UINT8",
    "bool": "TYPE_BOOL",
}


def _triton_type(numpy_name: str, onnx_file: Path) -> str:
    try:
        return _TYPES[numpy_name]
    except KeyError:
        raise ModelError(
            f"{onnx_file}: a tensor of type {numpy_name}, expected one of {sorted(_TYPES)}"
        ) from None
