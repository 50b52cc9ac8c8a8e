"""Embedding uploaded query images with the pipeline node that embeds the stored crops.

A query image must be embedded by the very model that embedded the crops it is compared with,
so the API loads that node's plugin from the pipeline file (only that node; the other
classifiers are not loaded) on the first query by image.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from lensflow.cloud.search.cache import Embedding
from lensflow.cloud.search.errors import SearchError
from lensflow.shared.classifiers.base import BaseClassifier
from lensflow.shared.classifiers.registry import PluginRegistry
from lensflow.shared.dag.compiler import load_pipeline
from lensflow.shared.images import DEFAULT_MAX_PIXELS, decode_image

logger = logging.getLogger(__name__)


class NodeEmbedder:
    """Embeds JPEG bytes with the plugin of one pipeline node, loaded on first use.

    Args:
        pipeline: The pipeline YAML the workers run.
        node: The node whose output ``vector`` is the stored embedding.
        registry: Where plugin classes are resolved; the default when None.
        max_pixels: An image declaring more pixels is refused before decoding
            (``search.max_image_pixels``).

    """

    def __init__(
        self,
        pipeline: str | Path,
        node: str,
        *,
        registry: PluginRegistry | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.pipeline = Path(pipeline)
        self.node = node
        self.registry = registry
        self.max_pixels = max_pixels
        self._plugin: BaseClassifier | None = None
        self._model = ""
        self._lock = threading.Lock()

    @property
    def model(self) -> str:
        """The embedding model's identifier (loads the plugin)."""
        self._load()
        return self._model

    def __call__(self, jpeg: bytes) -> Embedding:
        """The node's L2-normalised embedding of an image.

        Raises:
            ImageError: If the bytes declare more than ``max_pixels`` or do not decode.
            SearchError: If the node cannot be loaded or gives no ``vector``.

        """
        plugin = self._load()
        image = decode_image(jpeg, what="query image", max_pixels=self.max_pixels)
        return _vector_of(plugin.process(image, _context(image)), self.node)

    def _load(self) -> BaseClassifier:
        with self._lock:
            if self._plugin is None:
                try:
                    compiled = load_pipeline(self.pipeline, registry=self.registry)
                except Exception as err:  # ConfigError, OSError, a plugin's own load error
                    raise SearchError(f"could not load pipeline {self.pipeline}: {err}") from err
                try:
                    node = compiled.node(self.node)
                except KeyError:
                    names = ", ".join(n.name for n in compiled.nodes)
                    raise SearchError(
                        f"expected search.node {self.node!r} to be a node of {self.pipeline}, "
                        f"got nodes: {names}"
                    ) from None
                plugin = node.plugin(node.params)
                plugin.warmup()
                probe = np.zeros((32, 32, 3), np.uint8)
                output = plugin.process(probe, _context(probe))
                _vector_of(output, self.node)
                self._model = str(output.get("model") or plugin.describe())
                self._plugin = plugin
                logger.info("query embedder: node %s, model %s", self.node, self._model)
            return self._plugin


def _context(image: np.ndarray[Any, Any]) -> dict[str, Any]:
    """The context a query image gets: the whole image is the detection."""
    height, width = image.shape[:2]
    detection = {"class_name": "query", "score": 1.0, "box": [0, 0, width, height]}
    return {"input": {"detection": detection, "crop_id": "query"}}


def _vector_of(output: dict[str, Any], node: str) -> Embedding:
    vector = output.get("vector")
    if vector is None:
        raise SearchError(f"expected node {node!r} to output a 'vector', got keys {sorted(output)}")
    return np.asarray(vector, dtype=np.float32).reshape(-1)
