"""``lensflow models push`` and ``lensflow models publish``: the model registry, from a terminal.

``publish NAME --out DIR`` makes an artifact folder (file, companions, model card) of a
manifest model that runs as published, such as the COCO SSD; ``push ARTIFACT`` packs an
artifact folder into a bundle and uploads it (``POST /v1/models``, an operator key), printing
the ``sha256:`` that an edge config's ``detector.model`` names it by.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from lensflow.cli.defaults import manifest_or_default
from lensflow.cli.models import (
    CacheDirOption,
    ManifestOption,
    fail,
    open_manifest,
    out,
    resolve_cache_dir,
)
from lensflow.cli.train import ApiKey, ApiUrl, _call


def push(
    artifact: Annotated[
        Path, typer.Argument(help="An artifact folder with its model_card.json.", exists=True)
    ],
    api: ApiUrl,
    key: ApiKey,
) -> None:
    """Pack an artifact folder into a bundle and upload it to the model registry."""
    from lensflow.shared.model_bundle import BundleError, pack_bundle

    with tempfile.TemporaryDirectory(prefix="lensflow-bundle-") as scratch:
        bundle = Path(scratch) / "bundle.tar"
        try:
            sha256, card = pack_bundle(artifact, bundle)
        except BundleError as err:
            fail(f"{artifact}: {err}")
        with bundle.open("rb") as body:
            stored = _call(
                "POST",
                f"{api.rstrip('/')}/v1/models",
                key,
                content=body,
            )
    if stored["sha256"] != sha256:
        fail(f"expected the registry to store sha256 {sha256}, got {stored['sha256']}")
    out.print(f"pushed {card.name} ({stored['size']} bytes)", markup=False)
    out.print(f"sha256:{sha256}", markup=False)


def publish(
    name: Annotated[str, typer.Argument(help="A manifest model that runs as published.")],
    out_dir: Annotated[Path, typer.Option("--out", help="The artifact folder to write.")],
    manifest: ManifestOption = None,
    cache_dir: CacheDirOption = None,
) -> None:
    """Make an artifact folder with a model card for a model that needs no export."""
    from lensflow.models.export.published import published_artifact
    from lensflow.shared.errors import LensflowError

    manifest_path = manifest_or_default(manifest)
    open_manifest(manifest_path)  # its errors, with their lines
    try:
        path = published_artifact(
            name, manifest=manifest_path, cache_dir=resolve_cache_dir(cache_dir), out_dir=out_dir
        )
    except LensflowError as err:
        fail(str(err))
    out.print(str(path), markup=False)


def register(app: typer.Typer) -> None:
    """Add the commands to the ``models`` sub-app."""
    app.command("push")(push)
    app.command("publish")(publish)
