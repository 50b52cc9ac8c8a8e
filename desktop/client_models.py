"""Model card calls (``GET /v1/models/cards``): which model a crop's model hash names.

A crop's provenance names its edge model by the sha256 of the model file; the API answers
that model's name, precision and format from its model cards and model manifest, or 404
``unknown_model`` when neither names it (an API too old to have the route answers 404 too:
both read as "unknown"). :class:`ModelCards` asks once per hash and remembers the answer.
"""

from __future__ import annotations

import threading
from typing import Literal

from pydantic import BaseModel, ConfigDict

from lensflow.desktop.client_http import HttpApi
from lensflow.desktop.errors import NotFound


class ModelCard(BaseModel):
    """A model file as the API names it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    sha256: str
    name: str
    precision: str | None = None
    format: str | None = None
    source: Literal["card", "manifest"] | str = "card"

    def describe(self) -> str:
        """``name · precision`` (the precision left out when unknown)."""
        return " · ".join(part for part in (self.name, self.precision) if part)


def model_card(api: HttpApi, sha256: str) -> ModelCard | None:
    """The model whose file has this sha256, or None when the API does not know it.

    Raises:
        ApiError: If the API cannot be asked (unreachable, key refused...).

    """
    try:
        response = api._get("/v1/models/cards", params={"sha256": sha256})
    except NotFound:
        return None
    return api._model(ModelCard, response)


class ModelCards:
    """The answers of :func:`model_card`, remembered per hash (a model file never changes).

    Thread-safe: the inspector asks from the runner's threads.
    """

    def __init__(self) -> None:
        """Nothing remembered yet."""
        self._known: dict[str, ModelCard | None] = {}
        self._lock = threading.Lock()

    def get(self, api: HttpApi, sha256: str) -> ModelCard | None:
        """The card of ``sha256`` (asked of ``api`` the first time only)."""
        with self._lock:
            if sha256 in self._known:
                return self._known[sha256]
        card = model_card(api, sha256)
        with self._lock:
            self._known[sha256] = card
        return card

    def clear(self) -> None:
        """Forget every answer (another API)."""
        with self._lock:
            self._known.clear()
