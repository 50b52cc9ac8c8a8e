"""Find (or build on first use) exported artifacts, and the model store plugins resolve names with.

:class:`ManifestModelStore` is the :class:`~lensflow.shared.classifiers.model_store.ModelStore`
the processes that compile pipelines inject into the plugin registry: manifest names become
exports in the model cache, fetched and exported on first load where the ``export`` extra is
installed.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from lensflow.models.export.fetch import cache_path, default_cache_dir, fetch_model
from lensflow.models.export.manifest import load_manifest
from lensflow.shared.classifiers.model_store import ModelLocation
from lensflow.shared.errors import ModelError
from lensflow.shared.paths import default_manifest

if TYPE_CHECKING:  # the exporter pulls in the quantizers: imported only when exporting
    from lensflow.models.export.exporter import Format, Precision

Backend = Literal["openvino", "onnxruntime", "litert"]
FORMAT: dict[str, Format] = {"openvino": "openvino", "onnxruntime": "onnx"}
SUFFIX: dict[str, str] = {"openvino": "model.xml", "onnxruntime": "model.onnx"}
RUN_AS_PUBLISHED: dict[str, tuple[tuple[str, ...], str]] = {
    # kind -> (backends that run the fetched file as is, its precision)
    "ssd-tflite": (("litert", "openvino"), "int8"),
    "ssd-tf-pb": (("openvino",), "fp32"),
}
"""Model kinds that run as published: nothing to export (a uint8 TFLite is already INT8)."""
EXPORT_MODULES = ("torch", "timm")
"""What exporting a timm classifier on first load needs (the ``export`` extra)."""


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
    entry = load_manifest(manifest).entry(model)
    weights = fetch_model(entry, cache_dir=default_cache_dir(), manifest_dir=manifest.parent)
    if entry.kind in RUN_AS_PUBLISHED:
        return _as_published(entry.name, entry.kind, weights, backend=backend, precision=precision)
    if backend not in FORMAT:
        raise ModelError(
            f"{model} ({entry.kind}) has no {backend} export; backends: {', '.join(FORMAT)}"
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


def _as_published(name: str, kind: str, weights: Path, *, backend: str, precision: str) -> Path:
    """The fetched file of a model that runs as published, if this backend and precision fit.

    Raises:
        ModelError: The backend cannot run it, or the precision is not the model's own.

    """
    backends, own = RUN_AS_PUBLISHED[kind]
    if backend not in backends:
        raise ModelError(
            f"{name} ({kind}) runs on {' or '.join(backends)}, not {backend}: use --backend "
            f"{backends[0]}"
        )
    if precision != own:
        raise ModelError(
            f"{name} is published in {own} ({kind}) and runs as is: there are no other weights "
            f"to export to {precision}; use --precision {own}"
        )
    return weights


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


def export_extra_installed(modules: tuple[str, ...] = EXPORT_MODULES) -> bool:
    """Whether the modules that export a timm classifier can be imported."""
    return all(importlib.util.find_spec(name) is not None for name in modules)


@dataclass(frozen=True)
class ManifestModelStore:
    """Model names from a manifest, exported into the model cache (a ``ModelStore``).

    Attributes:
        manifest: The manifest used when a node names none; the shipped one when None.
        export_modules: What building an export on this machine needs (tests replace it).
        strict: A model missing here (not exported, not buildable) fails the pipeline's
            compilation; when false it is a warning (``lensflow pipeline check``).

    """

    manifest: Path | None = None
    export_modules: tuple[str, ...] = EXPORT_MODULES
    strict: bool = True

    def _manifest(self, manifest: Path | None) -> Path:
        return manifest or self.manifest or default_manifest()

    def locate(self, name: str, *, manifest: Path | None, features: bool) -> ModelLocation:
        """Where the classifier export of ``name`` is or will be (nothing is fetched).

        Raises:
            ModelError: Unknown model, or not a timm classifier.

        """
        path = classifier_artifact_path(name, manifest=self._manifest(manifest), features=features)
        buildable = export_extra_installed(self.export_modules)
        return ModelLocation(
            path=path,
            exists=path.is_file(),
            buildable=buildable,
            command=f"lensflow models export-classifier {name}",
            why_not=""
            if buildable
            else (
                f"the export extra ({', '.join(self.export_modules)}) is not installed "
                "(pip install 'lensflow[export]')"
            ),
        )

    def provide(
        self,
        name: str,
        *,
        manifest: Path | None,
        features: bool,
        log: Callable[[str], object],
    ) -> Path:
        """The classifier export of ``name``, fetched and exported first when missing.

        Raises:
            ModelError: It cannot be fetched or exported.

        """
        return classifier_artifact_for(
            name, manifest=self._manifest(manifest), features=features, log=log
        )
