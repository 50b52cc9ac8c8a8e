"""Fetch model files named in the manifest into a local cache, verifying each sha256.

A file lands at ``CACHE/<name>/<filename>`` only after its hash matches: it is written to a
temporary file in that folder and moved into place with :func:`os.replace`, so a reader never
sees a partial or unverified file, and a failed fetch leaves nothing behind. A model's
companion files (its ``files:``, e.g. a labels file) land beside it the same way. The
transports are in :mod:`lensflow.models.export.fetchers`; :data:`FETCHERS` maps scheme to
fetcher.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from lensflow.models.export.fetchers import FETCHERS, Fetcher, ProgressCallback
from lensflow.models.export.manifest import ModelEntry, ModelFile
from lensflow.shared.errors import ModelError
from lensflow.shared.paths import model_cache_dir

__all__ = [
    "FETCHERS",
    "Fetcher",
    "ProgressCallback",
    "cache_path",
    "cached_path",
    "companion_path",
    "default_cache_dir",
    "fetch_model",
    "sha256_file",
]

logger = logging.getLogger(__name__)


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The model cache folder (not created here): see :func:`lensflow.shared.paths.model_cache_dir`.

    Args:
        environ: the environment to read; ``os.environ`` when None.

    """
    return model_cache_dir(environ=environ)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the lowercase hex sha256 of a file, read in chunks.

    Raises:
        ModelError: the file cannot be read.

    """
    try:
        with open(path, "rb") as stream:
            return hashlib.file_digest(stream, "sha256").hexdigest()
    except OSError as err:
        raise ModelError(f"cannot read {path}: {err}") from err


def cache_path(entry: ModelEntry, *, cache_dir: Path) -> Path:
    """Where ``entry`` is cached: ``cache_dir/<name>/<filename>`` (it may not exist)."""
    return cache_dir / entry.name / entry.cache_filename


def companion_path(entry: ModelEntry, role: str, *, cache_dir: Path) -> Path:
    """Where the companion file ``role`` of ``entry`` is cached (beside the model file).

    Raises:
        ModelError: The entry has no such companion file.

    """
    file = entry.files.get(role)
    if file is None:
        known = ", ".join(sorted(entry.files)) or "none"
        raise ModelError(f"model {entry.name} has no {role!r} file (it has: {known})")
    return cache_dir / entry.name / file.cache_filename


def cached_path(entry: ModelEntry, *, cache_dir: Path) -> Path | None:
    """The cached file of ``entry`` if it and its companions exist with their sha256, else None."""
    path = cache_path(entry, cache_dir=cache_dir)
    if not (path.is_file() and sha256_file(path) == entry.sha256):
        return None
    for file in entry.files.values():
        companion = cache_dir / entry.name / file.cache_filename
        if not (companion.is_file() and sha256_file(companion) == file.sha256):
            return None
    return path


def fetch_model(
    entry: ModelEntry,
    *,
    cache_dir: Path,
    manifest_dir: Path,
    progress: ProgressCallback | None = None,
    fetchers: Mapping[str, Fetcher] | None = None,
) -> Path:
    """Return the verified local file of ``entry``, fetching it (and its companions) if needed.

    Args:
        entry: the manifest entry.
        cache_dir: the cache root; the files go to ``cache_dir/<name>/``.
        manifest_dir: the manifest's folder, against which relative ``file:`` paths resolve.
        progress: called with (bytes so far, total or None) while fetching the model file.
        fetchers: fetcher per scheme; :data:`FETCHERS` when None.

    Returns:
        The path of the cached model file, whose sha256 equals ``entry.sha256``; each
        companion file is at :func:`companion_path`.

    Raises:
        ModelError: a fetch failed or a hash does not match; no file is left behind.

    """
    folder = cache_dir / entry.name
    wanted = [
        (entry.name, ModelFile(source=entry.source, sha256=entry.sha256), entry.cache_filename)
    ]
    wanted += [
        (f"{entry.name} ({role})", file, file.cache_filename) for role, file in entry.files.items()
    ]
    created = _make_dir(folder)
    try:
        with tempfile.TemporaryDirectory(prefix="lensflow-fetch-") as scratch:
            for index, (label, file, filename) in enumerate(wanted):
                _fetch_one(
                    label,
                    file,
                    target=folder / filename,
                    manifest_dir=manifest_dir,
                    scratch=Path(scratch),
                    progress=progress if index == 0 else None,
                    fetchers=FETCHERS if fetchers is None else fetchers,
                )
    except BaseException:
        if created:
            with contextlib.suppress(OSError):  # not empty: another file lives there
                folder.rmdir()
        raise
    return folder / entry.cache_filename


def _fetch_one(
    label: str,
    file: ModelFile,
    *,
    target: Path,
    manifest_dir: Path,
    scratch: Path,
    progress: ProgressCallback | None,
    fetchers: Mapping[str, Fetcher],
) -> None:
    """Fetch one file into ``target`` unless it is there with the right hash."""
    if target.is_file():
        if sha256_file(target) == file.sha256:
            logger.info("model %s: cached at %s", label, target)
            return
        logger.warning("model %s: cached %s has the wrong sha256; fetching again", label, target)
        try:
            target.unlink()
        except OSError as err:
            raise ModelError(f"cannot remove the stale {target}: {err}") from err
    source = file.parsed_source
    fetcher = fetchers.get(source.scheme)
    if fetcher is None:
        raise ModelError(f"no fetcher for scheme {source.scheme!r} (model {label})")
    logger.info("model %s: fetching %s", label, file.source)
    _fetch_verified(
        label,
        file,
        fetcher,
        target=target,
        manifest_dir=manifest_dir,
        scratch=scratch,
        progress=progress,
    )
    logger.info("model %s: verified sha256 and saved %s", label, target)


def _make_dir(folder: Path) -> bool:
    """Create ``folder`` (and parents); return whether it was newly created."""
    existed = folder.is_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ModelError(f"cannot create cache folder {folder}: {err}") from err
    return not existed


def _fetch_verified(
    label: str,
    file: ModelFile,
    fetcher: Fetcher,
    *,
    target: Path,
    manifest_dir: Path,
    scratch: Path,
    progress: ProgressCallback | None,
) -> None:
    """Fetch into a temp file beside ``target``; move it into place only if the hash matches."""
    try:
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".part", dir=target.parent
        )
    except OSError as err:
        raise ModelError(f"cannot write to cache folder {target.parent}: {err}") from err
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        fetcher.fetch(
            file.parsed_source, tmp, manifest_dir=manifest_dir, scratch=scratch, progress=progress
        )
        actual = sha256_file(tmp)
        if actual != file.sha256:
            raise ModelError(f"sha256 mismatch for {label}: expected {file.sha256}, got {actual}")
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a model file is not a secret
        os.replace(tmp, target)
    except OSError as err:
        raise ModelError(f"cannot save {target}: {err}") from err
    finally:
        tmp.unlink(missing_ok=True)
