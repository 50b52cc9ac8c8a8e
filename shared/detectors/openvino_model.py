"""Reading and compiling OpenVINO models.

The model file of an artifact, its rt_info, lensflow's compile defaults; failures as
:class:`~lensflow.shared.errors.ModelError` or :class:`~lensflow.shared.errors.DetectorError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import openvino as ov

from lensflow.shared.errors import DetectorError, ModelError

MODEL_SUFFIXES = (".xml", ".onnx", ".pb")


def resolve_model_file(path: str | Path, *, suffixes: Sequence[str] = (".xml",)) -> Path:
    """The model file itself: ``path``, or the single model file in the folder ``path``.

    Raises:
        ModelError: nothing there, or a folder without exactly one model file.
    """
    file = Path(path)
    if file.is_dir():
        found = sorted(p for p in file.iterdir() if p.suffix in suffixes)
        if len(found) != 1:
            raise ModelError(
                f"{file}: expected a folder holding one {'/'.join(suffixes)} model, "
                f"got {[p.name for p in found]}"
            )
        file = found[0]
    if not file.is_file():
        raise ModelError(f"{file}: model file not found; expected {'/'.join(suffixes)}")
    return file


def read_model(core: ov.Core, file: Path) -> ov.Model:
    """Read a model file, translating OpenVINO's failure into ModelError."""
    if file.suffix == ".xml" and not file.with_suffix(".bin").is_file():
        raise ModelError(f"{file}: expected its weights beside it in {file.with_suffix('.bin')}")
    try:
        return core.read_model(str(file))
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1] if str(err).strip() else ""
        raise ModelError(
            f"{file}: expected an OpenVINO-readable model ({'/'.join(MODEL_SUFFIXES)}); "
            f"OpenVINO cannot read it: {first}"
        ) from err


def compile_model(
    core: ov.Core,
    model: ov.Model,
    *,
    device: str,
    precision_hint: str | None,
    performance_hint: str,
    threads: int | None,
    source: str,
    num_requests: int | None = None,
) -> ov.CompiledModel:
    """Compile for a device with lensflow's defaults, translating failures into DetectorError."""
    config: dict[str, Any] = {"PERFORMANCE_HINT": performance_hint}
    if num_requests is not None:  # THROUGHPUT: streams for this many requests at once, no more
        config["PERFORMANCE_HINT_NUM_REQUESTS"] = num_requests
    if precision_hint:
        config["INFERENCE_PRECISION_HINT"] = precision_hint
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = threads
    try:
        return core.compile_model(model, device, config)
    except RuntimeError as err:
        raise DetectorError(
            f"{source}: OpenVINO cannot compile for device {device!r} with {config} "
            f"(available devices: {core.available_devices}): {err}"
        ) from err


def rt_sections(model: ov.Model) -> dict[str, dict[str, str]]:
    """The ``framework`` and ``model_info`` sections of a model's rt_info, as strings."""
    sections: dict[str, dict[str, str]] = {}
    for name in ("framework", "model_info"):
        if model.has_rt_info([name]):
            raw = model.get_rt_info([name]).astype(dict)
            sections[name] = {str(k): v.astype(str) for k, v in raw.items()}
    return sections
