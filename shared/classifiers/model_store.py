"""Where plugins find the models they name: the model store, injected by whoever builds the DAG.

A node may name a model by its manifest name (``model: efficientnet-lite0``) rather than by a
file. Which file that is, whether this machine has it, and how to fetch and export it are the
model-export package's business (:class:`lensflow.models.export.artifacts.ManifestModelStore`),
not the plugin's: ``shared`` imports no other part of lensflow. So the process that compiles
a pipeline (a cloud worker, the API, ``lensflow pipeline check``) puts a :class:`ModelStore`
on the plugin registry, and the compiler hands it to each node's params through pydantic's
validation context (:data:`CONTEXT_KEY`). Without one (the desktop, the API's validate
route) manifest names are only checked for form: model files are a worker's concern.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

CONTEXT_KEY = "models"
"""Key of the model store in the params' validation context."""
WARNINGS_KEY = "model_warnings"
"""Key of the list where params validators leave warnings (a model missing on this machine)."""


@dataclass(frozen=True)
class ModelLocation:
    """Where a named model's file is, or will be, on this machine.

    Attributes:
        path: The file (it may not exist yet).
        exists: Whether it is there now.
        buildable: Whether this machine can fetch and export it when a plugin loads it.
        command: The shell command that makes it (for error messages).
        why_not: When neither there nor buildable, why it cannot be built here.

    """

    path: Path
    exists: bool
    buildable: bool
    command: str
    why_not: str = ""


class ModelStore(Protocol):
    """Resolves manifest model names to files: located cheaply, provided on load."""

    @property
    def strict(self) -> bool:
        """Whether a model this machine neither has nor can build is an error.

        True for a worker loading the pipeline; false (a warning) when checking a pipeline
        meant for other machines.
        """
        ...

    def locate(self, name: str, *, manifest: Path | None, features: bool) -> ModelLocation:
        """Where the export of model ``name`` is or will be; nothing is fetched.

        Args:
            name: A manifest model name.
            manifest: The manifest to look it up in; the store's own when None.
            features: The export with a second, pooled-features output (for embeddings).

        Raises:
            ModelError: The manifest cannot be read, or names no such model of a usable kind.

        """
        ...

    def provide(
        self,
        name: str,
        *,
        manifest: Path | None,
        features: bool,
        log: Callable[[str], object],
    ) -> Path:
        """The export of model ``name``, fetched and exported first when missing.

        Raises:
            ModelError: It cannot be fetched or exported.

        """
        ...


def warn(context: Any, message: str) -> None:
    """Leave a warning for the compiler in a validation context (dropped when it has no list)."""
    if isinstance(context, Mapping):
        warnings = context.get(WARNINGS_KEY)
        if isinstance(warnings, list):
            warnings.append(message)


def store_from_context(context: Any) -> ModelStore | None:
    """The model store in a pydantic validation context, if the compiler put one there."""
    if isinstance(context, Mapping):
        store = context.get(CONTEXT_KEY)
        return store if store is not None else None
    return None
