"""Run a Hugging Face image classifier: pixels in, logits out, by ONNX Runtime or by torch.

Two runtimes behind one small interface (:class:`LogitsRuntime`):

* :class:`OnnxRuntimeLogits` runs the ``model.onnx`` that ``lensflow models export-hf``
  writes; it imports only onnxruntime (never torch) and picks its execution providers from
  those the installed wheel offers (CUDA before CPU with ``onnxruntime-gpu``) or from a list.
* :class:`TransformersLogits` runs the checkpoint itself with transformers on torch — the
  reference runtime, and the way to use a hub id on a connected machine.

Both load everything when constructed and raise :class:`~lensflow.shared.errors.ModelError` for a
missing or corrupt model, or :class:`~lensflow.shared.errors.PluginUnavailableError` when the
runtime
cannot run here (its package or a requested provider is missing), so a pipeline fails when it
is loaded, not on its first crop.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from lensflow.shared.classifiers.triton_client import TritonParams, TritonSession, file_sha256
from lensflow.shared.errors import ModelError, PluginUnavailableError

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]

# ONNX Runtime providers tried in this order when none are configured. TensorRT is left out:
# it builds an engine per input shape on first use (minutes), so it is opt-in by name.
DEFAULT_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
HUB_FILES = ("config.json", "preprocessor_config.json", "*.safetensors", "*.safetensors.*")


class LogitsRuntime(Protocol):
    """Something that turns a preprocessed ``(N, 3, H, W)`` batch into ``(N, classes)`` logits."""

    description: str
    """One line for logs: the runtime, the model and where it runs."""

    def logits(self, pixels: FloatArray) -> FloatArray:
        """The logits of a batch."""
        ...


def choose_providers(requested: Sequence[str] | None, available: Sequence[str]) -> list[str]:
    """The ONNX Runtime providers to use, in order of preference.

    Args:
        requested: provider names from the config, or None for the default order
            (:data:`DEFAULT_PROVIDERS`, keeping those installed).
        available: what ``onnxruntime.get_available_providers()`` reports.

    Returns:
        The providers to pass to the session.

    Raises:
        PluginUnavailableError: a requested provider is not in this onnxruntime build.

    """
    if requested is None:
        return [name for name in DEFAULT_PROVIDERS if name in available] or list(available)
    missing = [name for name in requested if name not in available]
    if missing:
        raise PluginUnavailableError(
            f"ONNX Runtime providers {missing} are not available here; this onnxruntime "
            f"offers {list(available)} (CUDA/TensorRT need the onnxruntime-gpu wheel)"
        )
    return list(requested)


class OnnxRuntimeLogits:
    """An exported classifier run by ONNX Runtime (no torch)."""

    def __init__(
        self,
        path: Path,
        *,
        input_size: tuple[int, int],
        num_labels: int,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
    ) -> None:
        """Open an ONNX Runtime session on ``path`` and check its input and output.

        Args:
            path: the ``.onnx`` file.
            input_size: (height, width) the preprocessing produces.
            num_labels: how many classes the labels name.
            providers: execution providers in order of preference; chosen when None.
            threads: intra-op threads; ONNX Runtime's default when None.

        Raises:
            PluginUnavailableError: onnxruntime, or a requested provider, is not installed.
            ModelError: the file is not a loadable ONNX model, or its input is not
                ``(N, 3, H, W)`` at ``input_size`` or its output not ``num_labels`` wide.

        """
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise PluginUnavailableError(
                f"runtime 'onnxruntime' needs the onnxruntime package: {err}"
            ) from err
        chosen = choose_providers(providers, ort.get_available_providers())
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            self._session = ort.InferenceSession(str(path), sess_options=options, providers=chosen)
        except Exception as err:  # onnxruntime raises its own untyped exceptions
            raise ModelError(
                f"{path}: cannot load it as an ONNX model (expected the model.onnx that "
                f"'lensflow models export-hf' writes): {err}"
            ) from err
        self._input = _check_signature(self._session, path, input_size, num_labels)
        used = self._session.get_providers()
        if used[0] != chosen[0]:
            logger.warning("ONNX Runtime runs %s on %s, not on %s", path, used[0], chosen[0])
        self.description = f"onnxruntime {path} on {', '.join(used)}"

    def logits(self, pixels: FloatArray) -> FloatArray:
        """Run one batch."""
        logits: FloatArray = self._session.run(None, {self._input: pixels})[0]
        return logits


def _check_signature(session: Any, path: Path, input_size: tuple[int, int], num_labels: int) -> str:
    """The input's name, after checking the (N, 3, H, W) -> (N, classes) signature."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    expected = f"one input (N, 3, {input_size[0]}, {input_size[1]}) and logits (N, {num_labels})"
    if len(inputs) != 1 or not outputs:
        raise ModelError(f"{path}: expected {expected}, got {len(inputs)} inputs")
    shape, out_shape = list(inputs[0].shape), list(outputs[0].shape)
    fixed = [dim if isinstance(dim, int) else None for dim in shape]
    if len(fixed) != 4 or fixed[1:] != [3, *input_size] or out_shape[-1:] != [num_labels]:
        raise ModelError(
            f"{path}: expected {expected} (from preprocessor_config.json and id2label), but "
            f"the model takes {shape} and returns {out_shape}"
        )
    return str(inputs[0].name)


class TritonLogits:
    """The exported classifier served by a Triton server (``runtime: triton``)."""

    def __init__(
        self,
        params: TritonParams,
        *,
        local: Path | None,
        input_size: tuple[int, int],
        num_labels: int,
    ) -> None:
        """Connect, check readiness, the served file (against ``local``) and the signature.

        Raises:
            ServiceUnavailableError: The server or the model is not ready.
            ModelError: It serves another file than ``local``, or its input is not
                ``(N, 3, H, W)`` at ``input_size`` or its output not ``num_labels`` wide.

        """
        expected = None if local is None else file_sha256(local)
        self._session = TritonSession(params, expected_sha256=expected)
        self._input = _check_signature(self._session, Path(params.model), input_size, num_labels)
        self.description = self._session.description

    def logits(self, pixels: FloatArray) -> FloatArray:
        """Run one batch (one request; the server may batch it with others)."""
        logits: FloatArray = self._session.run(None, {self._input: pixels})[0]
        return logits


class TransformersLogits:
    """A checkpoint run by transformers on torch (the reference runtime)."""

    def __init__(self, folder: Path, *, num_labels: int, device: str = "cpu") -> None:
        """Load the checkpoint in ``folder`` for inference on ``device``.

        Raises:
            PluginUnavailableError: torch or transformers is not installed.
            ModelError: the folder does not hold a loadable image-classification
                checkpoint with ``num_labels`` classes, or ``device`` is not usable.

        """
        torch, auto_model = import_transformers()
        try:
            model = auto_model.from_pretrained(str(folder)).eval()
            self._model = model.to(torch.device(device))
        except Exception as err:  # transformers, safetensors and torch raise many kinds
            raise ModelError(
                f"{folder}: cannot load a transformers image-classification checkpoint "
                f"(expected config.json and model.safetensors from save_pretrained) on "
                f"{device}: {err}"
            ) from err
        if int(model.config.num_labels) != num_labels:
            raise ModelError(
                f"{folder}: the model has {model.config.num_labels} outputs, but id2label "
                f"names {num_labels} classes"
            )
        self._torch = torch
        self._device = torch.device(device)
        self.description = f"transformers {folder} on {device}"

    def logits(self, pixels: FloatArray) -> FloatArray:
        """Run one batch."""
        torch = self._torch
        with torch.inference_mode():
            batch = torch.from_numpy(pixels).to(self._device)
            logits: FloatArray = self._model(pixel_values=batch).logits.float().cpu().numpy()
        return logits


def download_from_hub(model_id: str, *, revision: str | None = None) -> Path:
    """Download a hub checkpoint's config, preprocessing and weights; return its local folder.

    For connected machines only: the machines without internet fail here, by design.

    Raises:
        PluginUnavailableError: huggingface_hub is not installed.
        ModelError: the download fails (no network, unknown id, no safetensors weights).

    """
    try:
        from huggingface_hub import snapshot_download
    except ImportError as err:
        raise PluginUnavailableError(f"a hub id needs huggingface_hub: {err}") from err
    try:
        folder = snapshot_download(model_id, revision=revision, allow_patterns=list(HUB_FILES))
    except Exception as err:  # network, auth and not-found errors of several kinds
        raise ModelError(f"cannot download {model_id!r} from the Hugging Face hub: {err}") from err
    return Path(folder)


def import_transformers() -> tuple[Any, Any]:
    """Import torch and ``AutoModelForImageClassification`` (also on a CPU-only torch).

    Returns:
        The ``torch`` module and the ``AutoModelForImageClassification`` class.

    Raises:
        PluginUnavailableError: torch or transformers is not installed.

    """
    try:
        from lensflow.shared.torch_env import install_torchvision_nms

        install_torchvision_nms()  # transformers imports torchvision, whose ops may not load
        import torch
        from transformers import AutoModelForImageClassification
    except ImportError as err:
        raise PluginUnavailableError(
            f"runtime 'transformers' needs torch and transformers (pip install "
            f"'lensflow[export]'): {err}"
        ) from err
    return torch, AutoModelForImageClassification
