"""Which model a hash names, from every list the API has: model files and registry bundles.

A crop's ``provenance.model_sha256`` is the sha256 of the edge's model file (a manifest
model, an exported artifact) or, for a model the edge downloaded from the registry, of the
bundle (docs/models.md). :class:`ModelIndex` answers both:

1. the :class:`~lensflow.cloud.api.model_cards.ModelCatalog` (model cards in the model cache
   and the model manifest) for a model file;
2. the registry's ``model_bundles`` table: a bundle by its sha256 (one primary-key read), or a
   file inside a bundle by the sha256 its card declares (the model file, its labels).

What it finds is remembered per hash (a hash always names the same content); a hash not found
is asked again next time (the catalog rereads its files at most every ``rescan_s``), so a
bundle uploaded or an artifact exported while the API runs is found. The label schemas ask
it for the detection's classes on every read (:mod:`lensflow.cloud.api.label_sources`).
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lensflow.cloud.api.model_cards import ModelCardInfo, ModelCatalog, card_classes
from lensflow.cloud.storage.bundles import ModelBundleRow

logger = logging.getLogger(__name__)


class ModelIndex:
    """sha256 of a model file or bundle to its model: name, precision, format and classes."""

    def __init__(self, catalog: ModelCatalog | None = None) -> None:
        """Use ``catalog`` for model files (default: this machine's, made on first use)."""
        self._catalog = catalog
        self._known: dict[str, ModelCardInfo] = {}
        self._files: dict[str, ModelCardInfo] = {}
        self._files_key: tuple[int, object] | None = None
        self._lock = threading.Lock()

    @property
    def catalog(self) -> ModelCatalog:
        """The model files' catalog (the model cache's cards and the manifest)."""
        with self._lock:
            if self._catalog is None:
                self._catalog = ModelCatalog.of_this_machine()
            return self._catalog

    @catalog.setter
    def catalog(self, catalog: ModelCatalog) -> None:
        with self._lock:
            self._catalog = catalog
            self._known.clear()

    def lookup(self, session: Session, sha256: str) -> ModelCardInfo | None:
        """The model this hash names: a model file first, else a bundle or a file in one."""
        sha256 = sha256.lower()
        with self._lock:
            known = self._known.get(sha256)
        if known is not None:
            return known
        found = self.catalog.lookup(sha256) or self._bundle(session, sha256)
        if found is not None:
            with self._lock:
                self._known[sha256] = found
        return found

    def classes_of(self, session: Session, sha256: str) -> ModelCardInfo | None:
        """The model this hash names with its classes known, or None.

        A manifest entry without a class list (``classes: coco-80`` and no labels file in the
        cache) gives way to a registry bundle holding the same file, whose card lists them.
        """
        info = self.lookup(session, sha256)
        if info is None or info.classes:
            return info
        bundled = self._bundle(session, sha256.lower())
        if bundled is None or not bundled.classes:
            return None
        with self._lock:
            self._known[sha256.lower()] = bundled
        return bundled

    def _bundle(self, session: Session, sha256: str) -> ModelCardInfo | None:
        """The registry bundle with this sha256, or the bundle holding a file with it."""
        row = session.get(ModelBundleRow, sha256)
        if row is not None:
            return _bundle_info(row, sha256=sha256)
        return self._bundle_files(session).get(sha256)

    def _bundle_files(self, session: Session) -> dict[str, ModelCardInfo]:
        """Every file of every bundle by its sha256, reread when a bundle was added."""
        count, newest = session.execute(
            select(func.count(), func.max(ModelBundleRow.created_at))
        ).one()
        key = (int(count), newest)
        with self._lock:
            if key == self._files_key:
                return self._files
        files: dict[str, ModelCardInfo] = {}
        rows = session.scalars(select(ModelBundleRow).order_by(ModelBundleRow.created_at))
        for row in rows:
            declared = row.card.get("files")
            for digest in declared.values() if isinstance(declared, dict) else ():
                if isinstance(digest, str):
                    files.setdefault(digest.lower(), _bundle_info(row, sha256=digest.lower()))
        logger.info("model names: %d files in %d registry bundles", len(files), key[0])
        with self._lock:
            self._files, self._files_key = files, key
        return files


def _bundle_info(row: ModelBundleRow, *, sha256: str) -> ModelCardInfo:
    """A bundle's (or one of its files') model, from the bundle's card."""
    card = row.card
    return ModelCardInfo(
        sha256=sha256,
        name=row.name,
        precision=_text(card.get("precision")),
        format=_text(card.get("format")),
        source="bundle",
        classes=card_classes(card),
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
