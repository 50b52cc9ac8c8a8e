"""Vector indexes behind one interface (:class:`VectorIndex`); backends load lazily."""

from lensflow.cloud.search.index.base import Hit, Metadata, SearchFilter, VectorIndex
from lensflow.cloud.search.index.factory import open_index

__all__ = ["Hit", "Metadata", "SearchFilter", "VectorIndex", "open_index"]
