"""The manifest's samples (``samples:``): real photos and videos no one here wrote, verified.

The demo, ``lensflow detect`` examples, ``lensflow bench edge`` and the tests run detectors on
them: darknet's photos from Debian's package (a dog, a bicycle and a pickup truck; people,
horses, kites...). Samples of another kind (``kind: video``, e.g. OpenCV's vtest.avi) are
fetched only when named. They are cached under ``<model cache>/samples/<name>/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lensflow.models.export.fetch import default_cache_dir, fetch_model
from lensflow.models.export.manifest import load_manifest
from lensflow.shared.paths import default_manifest


def fetch_samples(
    names: Sequence[str] | None = None,
    *,
    manifest: Path | None = None,
    cache_dir: Path | None = None,
) -> list[Path]:
    """The samples, fetched (sha256-verified) on first use.

    Args:
        names: Which samples (every ``kind: photo`` one, in manifest order, when None).
        manifest: The manifest; the shipped one when None.
        cache_dir: The model cache; the default one when None (samples go in ``samples/``).

    Returns:
        The files, in the order asked.

    Raises:
        ModelError: A sample is unknown or cannot be fetched.
        ConfigError: The manifest is invalid.

    """
    path = manifest or default_manifest()
    loaded = load_manifest(path)
    folder = (cache_dir or default_cache_dir()) / "samples"
    if names is None:
        chosen = [name for name, entry in loaded.samples.items() if entry.kind == "photo"]
    else:
        chosen = list(names)
    return [
        fetch_model(loaded.sample(name), cache_dir=folder, manifest_dir=path.parent)
        for name in chosen
    ]
