"""Find (or build on first use) the exported artifact a benchmark runs on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from lensflow.models.export.fetch import cache_path, default_cache_dir, fetch_model
from lensflow.models.export.manifest import load_manifest
from lensflow.shared.errors import ModelError

if TYPE_CHECKING:  # the exporter pulls in the quantizers: imported only when exporting
    from lensflow.models.export.exporter import Format, Precision

Backend = Literal["openvino", "onnxruntime"]
FORMAT: dict[Backend, Format] = {"openvino": "openvino", "onnxruntime": "onnx"}
SUFFIX: dict[Backend, str] = {"openvino": "model.xml", "onnxruntime": "model.onnx"}


def artifact_for(
    model: str,
    *,
    backend: Backend,
    precision: Precision,
    manifest: Path,
    log: Callable[[str], object] = print,
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
    from lensflow.models.export.exporter import default_out_dir

    out_dir = default_out_dir(weights, fmt=FORMAT[backend], precision=precision)
    artifact = out_dir / SUFFIX[backend]
    if artifact.exists():
        return artifact
    from lensflow.models.export.calibration import make_calibration_set
    from lensflow.models.export.exporter import ExportRequest, export_model
    from lensflow.shared.images import sample_image_paths

    calib = default_cache_dir() / "calibration" / "samples"
    if not calib.is_dir():
        make_calibration_set(sample_image_paths(), calib, count=32)
    log(f"exporting {model} to {FORMAT[backend]} {precision} (first use) ...")
    export_model(
        ExportRequest(
            weights=weights,
            format=FORMAT[backend],
            precision=precision,
            out_dir=out_dir,
            calib_dir=calib,
            name=model,
        )
    )
    return artifact


def classifier_artifact_for(
    model: str, *, manifest: Path, log: Callable[[str], object] = print, features: bool = False
) -> Path:
    """An ONNX classifier path as given, or a manifest classifier's export, made when missing.

    The manifest entry must be of kind ``timm-state-dict``; its export (batch axis dynamic)
    is kept at :func:`classifier_artifact_path`. With ``features`` the export has a second
    output, the pooled features (for embeddings), and a folder of its own.

    Raises:
        ModelError: If the model is unknown, not a timm classifier, or cannot be fetched or
            exported.

    """
    path = Path(model)
    if path.exists():
        return path
    from lensflow.models.export.classifier import export_timm_classifier, timm_arch

    artifact = classifier_artifact_path(model, manifest=manifest, features=features)
    if artifact.exists():
        return artifact
    entry = load_manifest(manifest).entry(model)
    fetch_model(entry, cache_dir=default_cache_dir(), manifest_dir=manifest.parent)
    what = "with logits and features outputs" if features else "with a dynamic batch"
    log(f"exporting {model} to onnx fp32 {what} (first use) ...")
    return export_timm_classifier(
        cache_path(entry, cache_dir=default_cache_dir()),
        arch=timm_arch(entry.name),
        out_dir=artifact.parent,
        features=features,
    )


def classifier_artifact_path(model: str, *, manifest: Path, features: bool = False) -> Path:
    """Where :func:`classifier_artifact_for` keeps a manifest classifier's ONNX export.

    ``<cache>/<name>/export/onnx-fp32[-features]/model.onnx``; nothing is fetched or exported
    and the file may not exist.

    Raises:
        ModelError: If the manifest cannot be read, or the model is unknown or not of kind
            ``timm-state-dict``.

    """
    from lensflow.models.export.classifier import TIMM_KIND

    entry = load_manifest(manifest).entry(model)
    if entry.kind != TIMM_KIND:
        raise ModelError(f"expected a classifier of kind {TIMM_KIND}, got {model!r} ({entry.kind})")
    folder = "onnx-fp32-features" if features else "onnx-fp32"
    return (
        cache_path(entry, cache_dir=default_cache_dir()).parent / "export" / folder / "model.onnx"
    )
