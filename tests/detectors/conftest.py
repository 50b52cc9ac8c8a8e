"""Detector fixtures: ultralytics exports of the real weights, and tiny synthetic ONNX graphs.

The real weights (``yolov8s_person_pt``, ``ssdlite_person_pb``) come from ``tests/conftest.py``,
fetched by manifest and sha256-checked. Exports are made per session with ultralytics, offline.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lensflow.models.export.ultralytics_env import prepare_ultralytics


@pytest.fixture(scope="session")
def yolo_class() -> Any:
    """ultralytics' YOLO class, imported offline (prepare_ultralytics first)."""
    prepare_ultralytics()
    return pytest.importorskip("ultralytics", reason="needs 'lensflow[export]'").YOLO


def _export(yolo_class: Any, weights: Path, folder: Path, **options: Any) -> Path:
    """Export a copy of the weights from inside ``folder`` (exports land beside the .pt)."""
    local = folder / weights.name
    shutil.copyfile(weights, local)
    model = yolo_class(str(local), task="detect")
    return Path(model.export(imgsz=640, dynamic=False, device="cpu", **options))


@pytest.fixture(scope="session")
def yolo_onnx(
    yolo_class: Any, yolov8s_person_pt: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The real YOLOv8s exported to ONNX (FP32, 640, static batch 1)."""
    return _export(yolo_class, yolov8s_person_pt, tmp_path_factory.mktemp("onnx"), format="onnx")


@pytest.fixture(scope="session")
def yolo_openvino(
    yolo_class: Any, yolov8s_person_pt: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The real YOLOv8s exported to an OpenVINO IR folder (FP32, 640)."""
    folder = tmp_path_factory.mktemp("openvino")
    return _export(yolo_class, yolov8s_person_pt, folder, format="openvino")


@pytest.fixture(scope="session")
def yolo11n_onnx(yolo_class: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init YOLO11n (80 classes named '0'..'79') exported to ONNX at 320."""
    import torch

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("yolo11n")
    model = yolo_class("yolo11n.yaml", task="detect")
    with contextlib.chdir(folder):  # a yaml-built model exports into the working directory
        return folder / model.export(format="onnx", imgsz=320, dynamic=False, device="cpu")


def _onnx_model(
    path: Path,
    *,
    input_shape: Sequence[int | str],
    output: np.ndarray,
    metadata: dict[str, str],
) -> Path:
    """An ONNX graph whose output is ``output`` (+ 0 x the input's mean, to depend on it)."""
    onnx = pytest.importorskip("onnx", reason="building test models needs onnx")
    from onnx import TensorProto, helper, numpy_helper

    batch = input_shape[0]
    mean_shape = [batch, *([1] * (output.ndim - 1))]
    nodes = [
        helper.make_node("ReduceMean", ["images", "axes"], ["mean"], keepdims=1),
        helper.make_node("Reshape", ["mean", "mean_shape"], ["mean_r"]),
        helper.make_node("Mul", ["mean_r", "zero"], ["nothing"]),
        helper.make_node("Add", ["nothing", "raw"], ["output0"]),
    ]
    out_shape = [batch, *output.shape[1:]]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, out_shape)],
        initializer=[
            numpy_helper.from_array(np.array([1, 2, 3], dtype=np.int64), "axes"),
            numpy_helper.from_array(
                np.array([-1 if isinstance(batch, str) else batch, *mean_shape[1:]], np.int64),
                "mean_shape",
            ),
            numpy_helper.from_array(np.zeros((1,), np.float32), "zero"),
            numpy_helper.from_array(output.astype(np.float32), "raw"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def make_onnx(tmp_path: Path) -> Callable[..., Path]:
    """Build a tiny ONNX model: ``make_onnx(name, input_shape=..., output=..., metadata=...)``."""

    def build(
        name: str,
        *,
        input_shape: Sequence[int | str] = (1, 3, 64, 64),
        output: np.ndarray,
        metadata: dict[str, str] | None = None,
    ) -> Path:
        meta = {"names": "{0: 'person', 1: 'car'}", "imgsz": "[64, 64]", "task": "detect"}
        return _onnx_model(
            tmp_path / name,
            input_shape=input_shape,
            output=output,
            metadata=meta if metadata is None else metadata,
        )

    return build
