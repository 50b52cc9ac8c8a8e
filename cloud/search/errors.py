"""The search package's exceptions: one tree, rooted at :class:`SearchError`."""

from __future__ import annotations

from lensflow.shared.errors import LensflowError


class SearchError(LensflowError):
    """Image search failed: the vector index, the embedding cache or the product lookup."""


class SearchInputError(SearchError):
    """A caller passed vectors, ids, metadata or filters that the index cannot take."""


class VectorIndexError(SearchError):
    """The vector index backend failed, or its saved files are missing or inconsistent."""


class ProductLookupError(SearchError):
    """The external product provider gave no usable answer."""


class LookupUnavailableError(ProductLookupError):
    """The provider is down: retries ran out on errors, or the circuit breaker is open."""


class LookupThrottledError(ProductLookupError):
    """The provider kept answering 429, or asked to wait longer than allowed."""


class LookupRejectedError(ProductLookupError):
    """The provider refused the request (a 4xx other than 408/429): not worth retrying."""
