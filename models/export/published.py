"""An artifact folder for a manifest model that runs as published (a TFLite SSD, a frozen graph).

Such a model needs no export, but the model registry takes artifact folders with a model card
(:mod:`lensflow.shared.model_bundle`). :func:`published_artifact` copies the fetched file and
its companions (a labels file) into a folder and writes the card, its class names and input
size read from the model as a detector loads it, so an edge can check them after a download.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from lensflow.models.export.artifacts import RUN_AS_PUBLISHED
from lensflow.models.export.card import ModelCard, sha256_file, tool_versions, write_card
from lensflow.models.export.fetch import fetch_model
from lensflow.models.export.manifest import load_manifest
from lensflow.shared.detectors.factory import load_detector
from lensflow.shared.errors import ModelError

FORMATS = {"ssd-tflite": "tflite", "ssd-tf-pb": "tf-pb"}


def published_artifact(name: str, *, manifest: Path, cache_dir: Path, out_dir: Path) -> Path:
    """Fetch manifest model ``name`` and make an artifact folder of it in ``out_dir``.

    Returns:
        ``out_dir``, holding the model file, its companions and ``model_card.json``.

    Raises:
        ModelError: The model is not one that runs as published, or cannot be fetched.

    """
    entry = load_manifest(manifest).entry(name)
    if entry.kind not in RUN_AS_PUBLISHED:
        raise ModelError(
            f"expected a model that runs as published ({', '.join(RUN_AS_PUBLISHED)}), "
            f"got {name} of kind {entry.kind}: export it with `lensflow models export`"
        )
    weights = fetch_model(entry, cache_dir=cache_dir, manifest_dir=manifest.parent)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [weights.name, *(f.cache_filename for f in entry.files.values())]
    for file in names:
        shutil.copyfile(weights.parent / file, out_dir / file)
    with load_detector(out_dir / weights.name) as detector:
        info = detector.info
    card = ModelCard(
        name=entry.name,
        format=FORMATS[entry.kind],
        precision=entry.precision or "fp32",
        input_size=info.input_size,
        class_names=info.names,
        artifact=weights.name,
        artifact_sha256=entry.sha256,
        files={file: sha256_file(out_dir / file) for file in names},
        source=entry.source,
        license=" ".join(entry.license.split()) or None,
        source_sha256=entry.sha256,
        tools=tool_versions(),
    )
    write_card(card, out_dir)
    return out_dir
