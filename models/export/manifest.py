"""The model manifest: which weight files lensflow uses, where each comes from, and its sha256.

``configs/models.yaml`` lists models by name. Each entry names a source URI (the schemes are
in :mod:`lensflow.models.export.sources`: ``pypi:``, ``npm:``, ``deb:``, ``url:``, ``file:``)
and the sha256 of the final file, so a fetched file is trusted only when it matches. An entry
may list companion files the model needs beside it (``files: {labels: {source, sha256}}``).
"""

from __future__ import annotations

import difflib
import os
import re
from typing import Any

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from lensflow.models.export.sources import (
    SOURCE_FORMS,
    Source,
    parse_source,
)
from lensflow.shared.config.base import StrictModel
from lensflow.shared.config.yaml_loader import load_model, read_yaml
from lensflow.shared.errors import ModelError

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_KIND_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_ROLE_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def _invalid(message: str) -> PydanticCustomError:
    """A validation error whose message is exactly ``message`` (no 'Value error, ' prefix)."""
    return PydanticCustomError("value_error", "{reason}", {"reason": message})


class ModelFile(StrictModel):
    """A file: where it comes from and the hash it must have."""

    source: str = Field(description=f"Where the file comes from: {SOURCE_FORMS}.")
    sha256: str = Field(description="sha256 of the final file, 64 lowercase hex digits.")
    filename: str | None = Field(
        default=None,
        description="Name of the cached file; the last segment of the source when omitted.",
    )

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
        """The source scheme (see :data:`~lensflow.models.export.sources.SCHEMES`)."""
        return self.parsed_source.scheme

    @property
    def cache_filename(self) -> str:
        """The file name used in the cache: ``filename`` or the source's last segment."""
        return self.filename or self.parsed_source.basename or "model.bin"


class ModelEntry(ModelFile):
    """One model in the manifest: its file, what it is, and the files it needs beside it."""

    name: str = Field(
        description="Model name (the manifest key; also the cache sub-folder).",
    )
    kind: str = Field(
        description="File format and family, e.g. yolo-pt, ssd-tf-pb, ssd-tflite, timm-state-dict.",
    )
    files: dict[str, ModelFile] = Field(
        default_factory=dict,
        description="Companion files by role (e.g. labels), cached beside the model file.",
    )
    description: str = Field(default="", description="What the model is, in a sentence.")
    license: str = Field(default="", description="License of the weights and where it is from.")
    classes: list[str] | str | None = Field(
        default=None,
        description="Output classes in order, or a taxonomy name such as 'coco-80'.",
    )
    precision: str | None = Field(
        default=None,
        description="Precision of the weights as published (fp32, fp16, int8, uint8); the API "
        "shows it beside a crop's model hash.",
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

    @field_validator("kind")
    @classmethod
    def _check_kind(cls, value: str) -> str:
        if not _KIND_RE.match(value):
            raise _invalid(f"kind must be lowercase words joined by '-', but got {value!r}")
        return value

    @field_validator("files")
    @classmethod
    def _check_roles(cls, value: dict[str, ModelFile]) -> dict[str, ModelFile]:
        for role in value:
            if not _ROLE_RE.match(role):
                raise _invalid(f"a file's role must be a lowercase word (labels), but got {role!r}")
        return value


class Manifest(StrictModel):
    """All models lensflow knows, by name, and the sample photos that check them."""

    models: dict[str, ModelEntry] = Field(description="Model entries keyed by model name.")
    samples: dict[str, ModelEntry] = Field(
        default_factory=dict,
        description="Real photos (kind: photo) the demo, the benchmarks and the tests run "
        "models on, and real videos (kind: video, fetched only by name), fetched and verified "
        "like models.",
    )

    @model_validator(mode="before")
    @classmethod
    def _name_entries(cls, data: Any) -> Any:
        """Copy each key into its entry as ``name`` so entries know who they are."""
        if not isinstance(data, dict):
            return data
        named = dict(data)
        for section in ("models", "samples"):
            if isinstance(data.get(section), dict):
                named[section] = {
                    key: {"name": key, **value} if isinstance(value, dict) else value
                    for key, value in data[section].items()
                }
        return named

    @field_validator("models", "samples")
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

    def sample(self, name: str) -> ModelEntry:
        """Return the sample photo called ``name``.

        Raises:
            ModelError: No such sample; the message lists the known ones.

        """
        try:
            return self.samples[name]
        except KeyError:
            known = ", ".join(sorted(self.samples)) or "(none)"
            raise ModelError(f"unknown sample {name!r}; known: {known}") from None

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
