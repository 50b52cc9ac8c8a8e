"""``lensflow models export-classifier``: a manifest image classifier to ONNX (dynamic batch).

The ``vehicle_type`` and ``embeddings`` plugins read the export with a ``features`` output
from the model cache; they build it themselves on first load when torch and timm are
installed, and this command builds it ahead of time (or on a machine that has them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lensflow.cli.defaults import manifest_or_default
from lensflow.cli.models import DEFAULT_MANIFEST, ManifestOption, fail, out
from lensflow.shared.errors import LensflowError


def export_classifier(
    model: Annotated[
        str, typer.Argument(help="Manifest classifier (kind timm-state-dict).")
    ] = "efficientnet-lite0",
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Artifact folder (default: the model cache's export folder, where the "
            "plugins look).",
            show_default=False,
        ),
    ] = None,
    features: Annotated[
        bool,
        typer.Option(help="Add the pooled-features output (vehicle_type and embeddings need it)."),
    ] = True,
    manifest: ManifestOption = DEFAULT_MANIFEST,
) -> None:
    """Fetch MODEL (sha256-checked) and export it to ONNX FP32 with a dynamic batch axis."""
    from lensflow.models.export.artifacts import classifier_artifact_for

    manifest = manifest_or_default(manifest)
    try:
        if out_dir is None:
            artifact = classifier_artifact_for(
                model, manifest=manifest, features=features, log=out.print
            )
        else:
            artifact = _export_to(model, manifest=manifest, out_dir=out_dir, features=features)
    except LensflowError as err:
        fail(f"export-classifier failed: {err}")
    out.print(f"{model}: {artifact}")


def _export_to(model: str, *, manifest: Path, out_dir: Path, features: bool) -> Path:
    """Fetch manifest classifier ``model`` and export it into ``out_dir``."""
    from lensflow.models.export.artifacts import classifier_artifact_path
    from lensflow.models.export.classifier import export_timm_classifier, timm_arch
    from lensflow.models.export.fetch import default_cache_dir, fetch_model
    from lensflow.models.export.manifest import load_manifest

    classifier_artifact_path(model, manifest=manifest)  # refuses a model that is no classifier
    entry = load_manifest(manifest).entry(model)
    weights = fetch_model(entry, cache_dir=default_cache_dir(), manifest_dir=manifest.parent)
    return export_timm_classifier(
        weights, arch=timm_arch(entry.name), out_dir=out_dir, features=features
    )


def register(app: typer.Typer) -> None:
    """Add the command to the ``models`` sub-app."""
    app.command("export-classifier")(export_classifier)
