"""Find (or build on first use) the exported artifact a benchmark runs on."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from models.export.fetch import default_cache_dir, fetch_model
from models.export.manifest import load_manifest

Backend = Literal["openvino", "onnxruntime"]
FORMAT = {"openvino": "openvino", "onnxruntime": "onnx"}
SUFFIX = {"openvino": "model.xml", "onnxruntime": "model.onnx"}


def artifact_for(
    model: str, *, backend: Backend, precision: str, manifest: Path, log: object = print
) -> Path:
    """An artifact path as given, or a manifest model's export, exported when missing.

    The export uses a calibration set of varied views of the sample photos (under the
    model cache), so a fresh clone can benchmark with one command.
    """
    path = Path(model)
    if path.exists():
        return path
    weights = fetch_model(
        load_manifest(manifest).entry(model),
        cache_dir=default_cache_dir(),
        manifest_dir=manifest.parent,
    )
    from models.export.exporter import default_out_dir

    out_dir = default_out_dir(weights, fmt=FORMAT[backend], precision=precision)  # type: ignore[arg-type]
    artifact = out_dir / SUFFIX[backend]
    if artifact.exists():
        return artifact
    from models.export.calibration import make_calibration_set
    from models.export.exporter import ExportRequest, export_model
    from shared.images import sample_image_paths

    calib = default_cache_dir() / "calibration" / "samples"
    if not calib.is_dir():
        make_calibration_set(sample_image_paths(), calib, count=32)
    log(f"exporting {model} to {FORMAT[backend]} {precision} (first use) ...")  # type: ignore[operator]
    export_model(
        ExportRequest(
            weights=weights,
            format=FORMAT[backend],  # type: ignore[arg-type]
            precision=precision,
            out_dir=out_dir,  # type: ignore[arg-type]
            calib_dir=calib,
            name=model,
        )
    )
    return artifact
