"""Where the ``embedding_head`` plugin finds the heads it names: injected, like the model store.

A head is named in a pipeline by its sha256 (``head: 3f2a…``); its bytes live where the cloud
keeps them (the results database, see :mod:`lensflow.cloud.heads.store`). ``shared`` imports
no other part of lensflow, so the process that compiles a pipeline (a worker, a replay job)
puts a :class:`HeadStore` on the plugin registry and the compiler hands it to the params in
pydantic's validation context (:data:`CONTEXT_KEY`). Without one (the API's validate route,
``lensflow pipeline check`` without a database) a head's digest is only checked for form.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Protocol

from lensflow.shared.errors import ModelError

CONTEXT_KEY = "heads"
"""Key of the head store in the params' validation context."""


class HeadStore(Protocol):
    """Gives the bytes of a stored head by its sha256."""

    def load(self, sha256: str) -> bytes:
        """The head file named ``sha256``.

        Raises:
            ModelError: No head has that digest, or the store cannot be read.

        """
        ...


def store_from_context(context: Any) -> HeadStore | None:
    """The head store in a pydantic validation context, if the compiler put one there."""
    if isinstance(context, Mapping):
        store = context.get(CONTEXT_KEY)
        return store if store is not None else None
    return None


class MemoryHeadStore:
    """Heads held in memory by digest (tests, and a replay that trained its head just now)."""

    def __init__(self, heads: Mapping[str, bytes] | None = None) -> None:
        """Start with ``heads`` (digest → bytes)."""
        self.heads = dict(heads or {})

    def add(self, data: bytes) -> str:
        """Keep a head file; its sha256, which names it."""
        digest = hashlib.sha256(data).hexdigest()
        self.heads[digest] = data
        return digest

    def load(self, sha256: str) -> bytes:
        """The head named ``sha256``.

        Raises:
            ModelError: There is none.

        """
        try:
            return self.heads[sha256]
        except KeyError:
            raise ModelError(f"expected a stored head with sha256 {sha256}, found none") from None
