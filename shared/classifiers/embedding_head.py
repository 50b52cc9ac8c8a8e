"""A trained head over an upstream embedding: classes operators taught from reviewed labels.

The head (:class:`~lensflow.shared.classifiers.head_model.HeadModel`) is named by its sha256
and loaded from the head store the worker injects (the results database); ``lensflow train
head`` or ``POST /v1/heads`` trains it and writes the candidate pipeline version that uses it.
It reads the upstream node's ``vector`` output, so it costs a matrix product per batch.

Outputs: ``label`` and ``score`` (the most probable class and its probability), ``top_k``
(``[{"label", "score"}]``, best first) and ``head`` (the digest's first 12 hex digits, so a
result says which head labelled it).

Example node::

    - name: object_kind
      class: embedding_head
      depends_on: embedding
      params: {head: 3f2a...64 hex digits..., embedding: embedding}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import numpy as np
from pydantic import Field, PrivateAttr, ValidationInfo, model_validator

from lensflow.shared.classifiers.base import BaseClassifier, Context, Image, Output
from lensflow.shared.classifiers.head_model import HeadModel
from lensflow.shared.classifiers.head_store import HeadStore, store_from_context
from lensflow.shared.config.base import StrictModel
from lensflow.shared.errors import ModelError


class EmbeddingHeadParams(StrictModel):
    """Parameters of the ``embedding_head`` node."""

    head: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="The head's sha256 (64 lowercase hex digits), as POST /v1/heads gave it.",
    )
    embedding: str = Field(
        "embedding",
        min_length=1,
        description="The upstream node whose output 'vector' the head reads (in depends_on).",
    )
    top_k: int = Field(3, ge=1, le=100, description="How many (label, score) pairs to report.")

    _store: HeadStore | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _check_head(self, info: ValidationInfo) -> Self:
        self._store = store_from_context(info.context)
        if self._store is not None:  # a worker: the head must be there and valid
            try:
                HeadModel.from_bytes(self._store.load(self.head), sha256=self.head)
            except ModelError as err:  # pydantic reports ValueErrors at the field
                raise ValueError(str(err)) from err
        return self

    def load(self) -> HeadModel:
        """The head, from the store the compiler gave.

        Raises:
            ModelError: No head store was given (heads load where the database is), or the
                head is missing or invalid.

        """
        if self._store is None:
            raise ModelError(
                f"head {self.head[:12]} cannot be loaded here: heads load from the results "
                "database, on a cloud worker or a replay job"
            )
        return HeadModel.from_bytes(self._store.load(self.head), sha256=self.head)


class EmbeddingHead(BaseClassifier):
    """Labels a crop with a trained head over an upstream node's embedding vector."""

    key = "embedding_head"
    version = "1"
    outputs = ("label", "score", "top_k", "head")
    needs_pixels = False  # the upstream node's vector
    Params = EmbeddingHeadParams
    params: EmbeddingHeadParams

    def __init__(self, params: EmbeddingHeadParams | None = None) -> None:
        """Load the head from the store.

        Raises:
            ModelError: The head cannot be loaded.

        """
        super().__init__(params)
        self.head = self.params.load()

    def process(self, image: Image, context: Context) -> Output:
        """Label one crop (see :meth:`process_batch`)."""
        return self.process_batch([image], [context])[0]

    def process_batch(self, images: Sequence[Image], contexts: Sequence[Context]) -> list[Output]:
        """Label a batch with one matrix product over the upstream vectors.

        Raises:
            ModelError: The upstream node gave no vector, or vectors of another model.

        """
        if not contexts:
            return []
        vectors = np.stack([self._vector(context) for context in contexts])
        proba = self.head.predict_proba(vectors)
        digest = self.params.head[:12]
        outputs: list[Output] = []
        for row in proba:
            order = np.argsort(-row, kind="stable")[: self.params.top_k]
            top = [{"label": self.head.classes[i], "score": float(row[i])} for i in order]
            outputs.append(
                {"label": top[0]["label"], "score": top[0]["score"], "top_k": top, "head": digest}
            )
        return outputs

    def _vector(self, context: Context) -> Any:
        name = self.params.embedding
        upstream = context.get(name)
        if not isinstance(upstream, dict) or "vector" not in upstream:
            raise ModelError(
                f"expected upstream node {name!r} to give a 'vector' (put it in depends_on), "
                f"got {sorted(upstream) if isinstance(upstream, dict) else 'nothing'}"
            )
        model = upstream.get("model")
        if model is not None and model != self.head.embedding_model:
            raise ModelError(
                f"expected vectors of {self.head.embedding_model} (what the head was trained "
                f"on), got vectors of {model}"
            )
        return np.asarray(upstream["vector"], dtype=np.float64)
