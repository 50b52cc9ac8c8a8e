"""Model names for hashes: which model (and precision) a crop's ``model_sha256`` is.

A crop's provenance names its edge model by the sha256 of the model file. The API knows two
lists that name such files:

* **model cards** (``model_card.json``) that ``lensflow models export`` writes beside every
  exported artifact, in the model cache: the artifact's and each of its files' sha256, the
  model's name, format and precision;
* **the model manifest** (``configs/models.yaml``): each fetched file's sha256, its name, kind
  and, where declared, the precision of the weights as published.

Each also gives the model's classes (id to name, the model's order) where it can: a card's
``class_names``; the manifest's ``classes`` list, else the labels file the manifest lists
beside the model (Coral's ``coco_labels.txt`` for the COCO SSD), read from the model cache
when it is there and hashes as the manifest declares.

:class:`ModelCatalog` reads both on first use and again (at most every ``rescan_s``) when a
hash is not found, so an artifact exported while the API runs is found. A card wins over the
manifest (it describes what was built). Nothing is read at import.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml

from lensflow.shared.detectors.labels import read_labels
from lensflow.shared.errors import ConfigError, ModelError
from lensflow.shared.model_bundle import sha256_file
from lensflow.shared.paths import default_manifest, model_cache_dir

logger = logging.getLogger(__name__)

CARD_NAME = "model_card.json"
"""The file name ``lensflow models export`` gives a model card."""
MAX_CARD_BYTES = 1_000_000
RESCAN_S = 60.0
MAX_LABELS_BYTES = 1_000_000

Classes = tuple[tuple[int, str], ...]
"""A model's classes: ``(class id, name)`` by class id."""


@dataclass(frozen=True)
class ModelCardInfo:
    """What the API knows of a model file.

    Attributes:
        sha256: The file's sha256 (64 lowercase hex).
        name: The model's name (the manifest's, or the card's).
        precision: Of the weights (``fp32``, ``int8``, ``uint8``...); None when unknown.
        format: The file format (``openvino``, ``onnx``, a manifest kind such as
            ``ssd-tflite``); None when unknown.
        source: ``card`` (an exported artifact's card), ``manifest``, or ``bundle`` (a
            bundle of the model registry, or a file inside one).
        classes: The model's classes by class id; empty when not known.

    """

    sha256: str
    name: str
    precision: str | None
    format: str | None
    source: Literal["card", "manifest", "bundle"]
    classes: Classes = ()


class ModelCatalog:
    """sha256 of a model file to its name and precision, from model cards and the manifest."""

    def __init__(
        self, *, manifest: Path | None, cache: Path | None, rescan_s: float = RESCAN_S
    ) -> None:
        """Read ``manifest`` and the cards under ``cache`` on first use (either may be None).

        Args:
            manifest: The model manifest (``configs/models.yaml``).
            cache: The model cache folder, searched for ``model_card.json`` files.
            rescan_s: Least seconds between two reads when a hash is not found.

        """
        self.manifest = manifest
        self.cache = cache
        self.rescan_s = rescan_s
        self._known: dict[str, ModelCardInfo] = {}
        self._read_at: float | None = None
        self._lock = threading.Lock()

    @classmethod
    def of_this_machine(cls) -> ModelCatalog:
        """The catalog of the shipped (or ``$LENSFLOW_HOME``) manifest and the model cache."""
        try:
            manifest: Path | None = default_manifest()
        except ConfigError as err:
            logger.warning("model names: no model manifest (%s)", err)
            manifest = None
        return cls(manifest=manifest, cache=model_cache_dir())

    def lookup(self, sha256: str) -> ModelCardInfo | None:
        """The model whose file has this sha256, or None if neither list names it."""
        sha256 = sha256.lower()
        with self._lock:
            due = self._read_at is None or time.monotonic() - self._read_at >= self.rescan_s
            if sha256 not in self._known and due:
                self._known = self._read()
                self._read_at = time.monotonic()
            return self._known.get(sha256)

    def _read(self) -> dict[str, ModelCardInfo]:
        known = {info.sha256: info for info in self._from_manifest()}
        known |= {info.sha256: info for info in self._from_cards()}
        logger.info("model names: %d model files known", len(known))
        return known

    def _from_manifest(self) -> Iterator[ModelCardInfo]:
        if self.manifest is None:
            return
        try:
            doc = yaml.safe_load(self.manifest.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            logger.warning("model names: cannot read the manifest %s: %s", self.manifest, err)
            return
        models = doc.get("models") if isinstance(doc, dict) else None
        for name, entry in (models or {}).items():
            if isinstance(entry, dict) and _is_sha256(entry.get("sha256")):
                yield ModelCardInfo(
                    sha256=str(entry["sha256"]),
                    name=str(name),
                    precision=_text(entry.get("precision")),
                    format=_text(entry.get("kind")),
                    source="manifest",
                    classes=self._manifest_classes(str(name), entry),
                )

    def _manifest_classes(self, name: str, entry: dict[str, Any]) -> Classes:
        """A manifest model's classes: its ``classes`` list, else its cached labels file."""
        declared = entry.get("classes")
        if isinstance(declared, list):
            return tuple(enumerate(str(item) for item in declared))
        files = entry.get("files")
        if self.cache is None or not isinstance(files, dict):
            return ()
        for role, companion in files.items():
            if "label" in str(role) and isinstance(companion, dict):
                path = self.cache / name / _companion_name(companion)
                if _hashes_as(path, companion.get("sha256")):
                    return _labels_file_classes(path)
        return ()

    def _from_cards(self) -> Iterator[ModelCardInfo]:
        if self.cache is None or not self.cache.is_dir():
            return
        for path in sorted(self.cache.rglob(CARD_NAME)):
            card = _read_card(path)
            if card is None or not isinstance(card.get("name"), str):
                continue
            files = card.get("files")
            digests = {
                card.get("artifact_sha256"),
                *(files.values() if isinstance(files, dict) else ()),
            }
            for digest in digests:
                if _is_sha256(digest):
                    yield ModelCardInfo(
                        sha256=str(digest),
                        name=card["name"],
                        precision=_text(card.get("precision")),
                        format=_text(card.get("format")),
                        source="card",
                        classes=card_classes(card),
                    )


def _read_card(path: Path) -> dict[str, Any] | None:
    """A card's JSON object, or None (logged) when it cannot be read."""
    try:
        if path.stat().st_size > MAX_CARD_BYTES:
            logger.warning("model names: %s is over %d bytes; skipped", path, MAX_CARD_BYTES)
            return None
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        logger.warning("model names: cannot read %s: %s", path, err)
        return None
    return card if isinstance(card, dict) else None


def card_classes(card: dict[str, Any]) -> Classes:
    """A model card's ``class_names`` by class id; empty when missing or malformed."""
    names = card.get("class_names")
    if not isinstance(names, dict):
        return ()
    try:
        classes = {int(key): str(value) for key, value in names.items()}
    except (TypeError, ValueError):
        logger.warning("model names: card %r has class_names not keyed by id", card.get("name"))
        return ()
    return tuple(sorted(classes.items()))


def _companion_name(companion: dict[str, Any]) -> str:
    """The cache file name of a manifest companion: ``filename``, else its source's last part."""
    if isinstance(companion.get("filename"), str):
        return str(companion["filename"])
    source = str(companion.get("source", ""))
    if source.startswith("url:"):
        return PurePosixPath(urlsplit(source[len("url:") :]).path).name
    return PurePosixPath(source.rpartition("#")[2].rpartition("!")[2]).name


def _hashes_as(path: Path, expected: object) -> bool:
    """Whether ``path`` is a small file with the sha256 ``expected`` (a mismatch is logged)."""
    try:
        if not path.is_file() or path.stat().st_size > MAX_LABELS_BYTES:
            return False
        got = sha256_file(path)
    except OSError as err:
        logger.warning("model names: cannot read %s: %s", path, err)
        return False
    if got != expected:
        logger.warning("model names: %s has sha256 %s, not the manifest's %s", path, got, expected)
        return False
    return True


def _labels_file_classes(path: Path) -> Classes:
    """The classes of a labels file, by id; empty (logged) when it cannot be read."""
    try:
        return tuple(sorted(read_labels(path).items()))
    except ModelError as err:
        logger.warning("model names: %s", err)
        return ()


def _is_sha256(value: object) -> bool:
    return (
        isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    )


def _text(value: object) -> str | None:
    return str(value) if isinstance(value, str | int | float) and str(value) else None
