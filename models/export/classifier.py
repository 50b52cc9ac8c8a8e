"""Turn a timm image classifier's state dict into an ONNX model with a dynamic batch axis.

For manifest entries of kind ``timm-state-dict`` (e.g. ``efficientnet-lite0``): the state
dict's tensors are mapped, in order, onto the timm architecture of the same name (``-``
becomes ``_``), exported with ``torch.onnx.export`` (batch axis dynamic, so the
``onnx_classifier`` plugin runs a whole batch in one call), and checked: ONNX Runtime's logits
on a batch of two must match torch's before the file is moved into place. With
``features=True`` the model has a second output, ``features``: the pooled penultimate
activations (what the classifier layer reads; 1280-d for EfficientNet-Lite0), checked too.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from lensflow.models.export.torch_onnx import export_dynamic_batch
from lensflow.shared.errors import ModelError

logger = logging.getLogger(__name__)

TIMM_KIND = "timm-state-dict"
INPUT_NAME = "images"
OUTPUT_NAME = "logits"
FEATURES_NAME = "features"
_TOLERANCE = 1e-3  # largest logit difference between torch and ONNX Runtime


def timm_arch(model_name: str) -> str:
    """The timm architecture of a manifest model name (``efficientnet-lite0`` → ``..._lite0``)."""
    return model_name.replace("-", "_")


def export_timm_classifier(
    weights: Path,
    *,
    arch: str,
    out_dir: Path,
    input_size: int = 224,
    opset: int = 17,
    features: bool = False,
) -> Path:
    """Export a timm classifier's weights to ``out_dir/model.onnx`` (batch axis dynamic).

    Args:
        weights: A state dict saved with ``torch.save`` whose tensors, in order, have the
            shapes of the architecture's parameters and buffers.
        arch: The timm architecture, e.g. ``efficientnet_lite0``.
        out_dir: Folder of the artifact; created if missing.
        input_size: Height and width of the (square) input.
        opset: ONNX opset of the export.
        features: Add a second output, ``features``: the pooled activations the classifier
            layer reads (``(N, num_features)``), for embeddings.

    Returns:
        The path of the ONNX file.

    Raises:
        ModelError: If the architecture is unknown, the weights do not fit it, the export
            fails, or the exported model's logits differ from torch's.

    """
    model = _load_timm(weights, arch=arch)
    import torch

    if features:
        model = _with_features(model)

    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "model.onnx"
    example = torch.rand(2, 3, input_size, input_size)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as scratch:
        exported = Path(scratch) / "model.onnx"
        export_dynamic_batch(
            model,
            example,
            exported,
            input_name=INPUT_NAME,
            output_name=OUTPUT_NAME,
            extra_outputs=(FEATURES_NAME,) if features else (),
            opset=opset,
            what=f"{arch} from {weights}",
        )
        with torch.no_grad():
            outputs = model(example)
        expected = [t.numpy() for t in outputs] if features else [outputs.numpy()]
        _check_outputs(exported, example.numpy(), expected)
        os.replace(exported, target)
    logger.info("exported %s (%s) to %s", weights, arch, target)
    return target


def _load_timm(weights: Path, *, arch: str) -> Any:
    """The timm model ``arch`` in eval mode, with ``weights`` mapped onto it in order."""
    from lensflow.models.export.ultralytics_env import install_torchvision_nms

    install_torchvision_nms()  # timm imports torchvision, whose ops may not load on CPU torch
    import timm
    import torch

    if not timm.is_model(arch):
        raise ModelError(f"expected a timm architecture name, got {arch!r}")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as err:  # a corrupt or non-tensor pickle
        raise ModelError(f"cannot read a state dict from {weights}: {err}") from err
    model = timm.create_model(arch, pretrained=False)
    own = model.state_dict()
    if len(state) != len(own):
        raise ModelError(f"{weights}: expected {len(own)} tensors for {arch}, got {len(state)}")
    mapped = {}
    for (theirs, value), (ours, slot) in zip(state.items(), own.items(), strict=True):
        if value.shape != slot.shape:
            raise ModelError(
                f"{weights}: tensor {theirs} has shape {tuple(value.shape)}, but {arch}'s "
                f"{ours} at the same position has {tuple(slot.shape)}"
            )
        mapped[ours] = value
    model.load_state_dict(mapped)
    return model.eval()


def _with_features(model: Any) -> Any:
    """Wrap a timm classifier so it returns ``(logits, pooled features)``."""
    import torch

    class WithFeatures(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, images: Any) -> tuple[Any, Any]:
            pooled = self.inner.forward_head(self.inner.forward_features(images), pre_logits=True)
            return self.inner.get_classifier()(pooled), pooled

    return WithFeatures(model).eval()


def _check_outputs(path: Path, example: np.ndarray, expected: list[np.ndarray]) -> None:
    """ONNX Runtime's outputs (logits, then features if any) on ``example`` must match torch's."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {INPUT_NAME: example})
    if len(outputs) != len(expected):
        raise ModelError(
            f"exported {path.name} has {len(outputs)} outputs, expected {len(expected)}"
        )
    names = (OUTPUT_NAME, FEATURES_NAME)
    for name, got, want in zip(names, outputs, expected, strict=False):
        worst = float(np.abs(got - want).max())
        if got.shape != want.shape or worst > _TOLERANCE:
            raise ModelError(
                f"exported {path.name} gives {name} of shape {got.shape} differing by up to "
                f"{worst:.2e} from torch's {want.shape}; expected at most {_TOLERANCE}"
            )
