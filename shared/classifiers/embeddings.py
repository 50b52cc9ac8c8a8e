"""Image embeddings for similar-image search: EfficientNet-Lite0's pooled features, L2-normalised.

The vector is the 1280-d global-average-pooled activation that ImageNet EfficientNet-Lite0's
classifier layer reads (real weights; see :mod:`lensflow.shared.classifiers.effnet_lite` for where
the
model comes from), divided by its L2 norm, so the dot product of two vectors is their cosine
similarity. Crops are resized to 224x224 (no crop, aspect not kept) and normalised as in
ImageNet training, exactly as the ``onnx_classifier`` and ``vehicle_type`` nodes do.

Outputs:

* ``vector``: ``list[float]`` of unit L2 norm (the cloud worker moves it into the vector
  index rather than storing it with the other results).
* ``dim``: its length (1280).
* ``model``: ``embeddings-v<version>/<model>@sha256:<16 hex digits of the .onnx file>`` —
  vectors of different models (or preprocessing versions) are not comparable, so the index
  refuses a vector whose ``model`` differs from its own.

Example node::

    - name: embedding
      class: embeddings
      depends_on: object_detection
      batch: {max_size: 16, max_wait_ms: 25}
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lensflow.shared.classifiers.base import BaseClassifier, Context, Image, Output
from lensflow.shared.classifiers.effnet_lite import FEATURES, EffNetParams, is_path, load_effnet
from lensflow.shared.classifiers.onnx_classifier import FloatArray
from lensflow.shared.classifiers.triton_client import file_sha256
from lensflow.shared.errors import ModelError, PluginError

logger = logging.getLogger(__name__)

_MIN_NORM = 1e-12  # a feature vector shorter than this cannot be normalised


class EmbeddingsParams(EffNetParams):
    """Parameters of the ``embeddings`` node."""


class Embeddings(BaseClassifier):
    """An L2-normalised embedding of every crop, a whole batch per call."""

    key = "embeddings"
    version = "1"
    outputs = ("vector", "dim", "model")
    Params = EmbeddingsParams
    params: EmbeddingsParams

    def __init__(self, params: EmbeddingsParams | None = None) -> None:
        """Load (exporting on first use) the model and fingerprint it.

        Raises:
            ModelError: the model cannot be built or loaded.

        """
        super().__init__(params)
        self.net, self.model_path = load_effnet(self.params, plugin=self.key)
        self.model_id = model_identifier(
            self.params.model, self.model_path, self.version, served_sha256=self.net.served_sha256
        )
        logger.info("embeddings: %s", self.model_id)

    def embed(self, images: Sequence[Image]) -> FloatArray:
        """The ``(N, dim)`` unit-norm embeddings of a batch of BGR images (one runtime call).

        Raises:
            ModelError: a feature vector is all zeros (cannot be normalised).

        """
        if not images:
            return np.zeros((0, 0), dtype=np.float32)
        (features,) = self.net.infer(images, [FEATURES])
        norms = np.linalg.norm(features, axis=1, keepdims=True)
        if float(norms.min()) < _MIN_NORM:
            raise ModelError(f"embeddings: {self.model_path} gave an all-zero feature vector")
        unit: FloatArray = (features / norms).astype(np.float32)
        return unit

    def process(self, image: Image, context: Context) -> Output:
        """Embed one crop (a batch of one)."""
        return self.process_batch([image], [context])[0]

    def process_batch(self, images: Sequence[Image], contexts: Sequence[Context]) -> list[Output]:
        """Embed a batch of crops in one ONNX Runtime call."""
        return [
            {"vector": row.tolist(), "dim": len(row), "model": self.model_id}
            for row in self.embed(images)
        ]

    def warmup(self) -> None:
        """Run one black crop, so the first real batch is not slow."""
        self.net.warmup()


def model_identifier(
    model: str, path: Path | None, version: str, *, served_sha256: str | None = None
) -> str:
    """``embeddings-v<version>/<name>@sha256:<16 hex>``: which vectors are comparable.

    ``name`` is the manifest model name, or the file's name for a path. The hash is the local
    file's, or (runtime triton without a local copy) the one the server's model config carries,
    so a node gives the same identifier on either runtime.
    """
    if path is not None:
        try:
            digest = file_sha256(path)
        except PluginError as err:
            raise ModelError(f"embeddings: {err}") from err
    elif served_sha256:
        digest = served_sha256
    else:
        raise ModelError(
            "embeddings: the Triton model's config has no lensflow_sha256 parameter, which "
            "tells comparable vectors apart; write the repository with `lensflow models "
            "triton-repo`, or give the node the local model file"
        )
    named = Path(model)
    name = f"{named.parent.name}/{named.name}" if is_path(model) else model
    return f"embeddings-v{version}/{name}@sha256:{digest[:16]}"
