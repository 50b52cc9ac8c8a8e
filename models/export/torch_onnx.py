"""Export a torch module to ONNX with a dynamic batch axis (the TorchScript exporter)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lensflow.shared.errors import ModelError


def export_dynamic_batch(
    model: Any,
    example: Any,
    target: Path,
    *,
    input_name: str,
    output_name: str,
    opset: int,
    what: str,
    extra_outputs: Sequence[str] = (),
) -> None:
    """Write ``model`` to ``target`` as ONNX, batch axis dynamic on its input and output.

    Args:
        model: A torch module in eval mode.
        example: An input tensor of the right shape (its batch size does not matter).
        target: Where the ``.onnx`` file is written.
        input_name: Name of the graph's input.
        output_name: Name of the graph's (first) output.
        opset: ONNX opset version.
        what: What is exported, for the error message ("efficientnet_lite0 from x.pth").
        extra_outputs: Names of further outputs, for a model returning a tuple (each with a
            dynamic batch axis too).

    Raises:
        ModelError: If torch cannot export the model.

    """
    import torch

    outputs = [output_name, *extra_outputs]
    try:
        with warnings.catch_warnings():
            # the TorchScript exporter is deprecated, but needs no onnxscript (not installed)
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (example,),
                str(target),
                input_names=[input_name],
                output_names=outputs,
                dynamic_axes={name: {0: "batch"} for name in (input_name, *outputs)},
                opset_version=opset,
                dynamo=False,
            )
    except Exception as err:  # torch raises many kinds; translate once, here
        raise ModelError(f"torch could not export {what} to ONNX: {err}") from err
