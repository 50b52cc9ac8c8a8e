"""A trained head: a small classifier over an upstream node's embedding vectors.

Heads are how operators teach the pipeline a class the shipped models do not know (car
makes, a site's uniforms): the cloud trains one from reviewed labels
(:mod:`lensflow.cloud.heads`), a worker runs it as the ``embedding_head`` node.

The file format, ``lensflow-head/1``, is one canonical JSON document (UTF-8, sorted keys, no
spaces) so that its sha256 names it: a head is stored and referenced by that digest, never by
a mutable name. Arrays are base64 of little-endian bytes with their dtype and shape. JSON
rather than pickle or joblib: loading a head runs no code, whoever wrote it.

Two kinds, both computed here with numpy exactly as scikit-learn computes them:

* ``logistic``: multinomial logistic regression (``coef`` ``(C, D)``, ``intercept`` ``(C,)``;
  a two-class head has one row, as scikit-learn's binary model).
* ``knn``: the ``k`` nearest training vectors by cosine similarity vote (uniform weights).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from lensflow.shared.errors import ModelError

HEAD_FORMAT = "lensflow-head/1"
HeadKind = Literal["logistic", "knn"]
KINDS: tuple[HeadKind, ...] = ("logistic", "knn")
_ARRAYS: dict[str, tuple[str, ...]] = {
    "logistic": ("coef", "intercept"),
    "knn": ("vectors", "targets"),
}
_DTYPES = {"<f8", "<f4", "<i4"}
MAX_HEAD_BYTES = 256 * 1024 * 1024
"""Largest head file accepted (a k-NN head over 50,000 vectors of 1280 floats is ~340 MB in
base64; keep k-NN heads to tens of thousands of vectors)."""

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class HeadModel:
    """A head's classes, weights and model card.

    Attributes:
        kind: ``logistic`` or ``knn``.
        classes: The labels, in the order of the head's outputs (its class ids).
        embedding_model: The ``model`` identifier of the vectors it was trained on; vectors of
            another model are not comparable and are refused.
        dim: The vectors' length.
        arrays: ``coef`` and ``intercept`` (logistic) or ``vectors`` and ``targets`` (knn).
        k: Neighbours that vote (knn only).
        card: The model card: node, embedding node, data, held-out figures, gate verdict.

    """

    kind: HeadKind
    classes: tuple[str, ...]
    embedding_model: str
    dim: int
    arrays: Mapping[str, npt.NDArray[Any]]
    k: int = 0
    card: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(self)

    def predict_proba(self, vectors: npt.ArrayLike) -> FloatArray:
        """Each vector's probability per class, ``(N, len(classes))``.

        Raises:
            ModelError: The vectors are not ``(N, dim)``.

        """
        x = np.asarray(vectors, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ModelError(
                f"expected vectors of shape (N, {self.dim}) for this head, got {x.shape}"
            )
        if self.kind == "logistic":
            return _logistic(x, self.arrays["coef"], self.arrays["intercept"])
        return _knn(x, self.arrays["vectors"], self.arrays["targets"], self.k, len(self.classes))

    def predict(self, vectors: npt.ArrayLike) -> list[str]:
        """Each vector's most probable class (ties: the first class, as scikit-learn)."""
        proba = self.predict_proba(vectors)
        return [self.classes[int(i)] for i in proba.argmax(axis=1)]

    def to_bytes(self) -> bytes:
        """The canonical file (sorted keys, no spaces): the same head gives the same bytes."""
        doc = {
            "format": HEAD_FORMAT,
            "kind": self.kind,
            "classes": list(self.classes),
            "embedding_model": self.embedding_model,
            "dim": self.dim,
            "k": self.k,
            "arrays": {name: _encode(array) for name, array in self.arrays.items()},
            "card": dict(self.card),
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()

    @property
    def sha256(self) -> str:
        """The digest that names the head: sha256 of :meth:`to_bytes`."""
        return hashlib.sha256(self.to_bytes()).hexdigest()

    @classmethod
    def from_bytes(cls, data: bytes, *, sha256: str | None = None) -> HeadModel:
        """Read a head file, checking its digest, format, kinds, dtypes and shapes.

        Args:
            data: The file's bytes.
            sha256: The digest it must have (the name it was fetched by); not checked if None.

        Raises:
            ModelError: The digest differs, or the file is not a valid ``lensflow-head/1``.

        """
        if len(data) > MAX_HEAD_BYTES:
            raise ModelError(f"expected a head of at most {MAX_HEAD_BYTES} bytes, got {len(data)}")
        if sha256 is not None:
            actual = hashlib.sha256(data).hexdigest()
            if actual != sha256:
                raise ModelError(f"expected a head with sha256 {sha256}, got one with {actual}")
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ModelError(f"expected a {HEAD_FORMAT} JSON document, got: {err}") from err
        if not isinstance(doc, dict) or doc.get("format") != HEAD_FORMAT:
            got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
            raise ModelError(f"expected a head of format {HEAD_FORMAT!r}, got {got!r}")
        try:
            return cls(
                kind=doc["kind"],
                classes=tuple(doc["classes"]),
                embedding_model=str(doc["embedding_model"]),
                dim=int(doc["dim"]),
                arrays={name: _decode(name, spec) for name, spec in doc["arrays"].items()},
                k=int(doc.get("k", 0)),
                card=dict(doc.get("card", {})),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ModelError(f"expected a complete {HEAD_FORMAT} document: {err!r}") from err


def _check(head: HeadModel) -> None:
    """Refuse a head whose parts do not fit together (kind, classes, array shapes)."""
    if head.kind not in KINDS:
        raise ModelError(f"expected a head kind among {', '.join(KINDS)}, got {head.kind!r}")
    if len(head.classes) < 2 or len(set(head.classes)) != len(head.classes):
        raise ModelError(f"expected at least two distinct classes, got {list(head.classes)}")
    if not all(isinstance(name, str) and name for name in head.classes):
        raise ModelError(f"expected class names as non-empty strings, got {list(head.classes)}")
    expected = _ARRAYS[head.kind]
    if sorted(head.arrays) != sorted(expected):
        raise ModelError(
            f"expected arrays {list(expected)} in a {head.kind} head, got {sorted(head.arrays)}"
        )
    rows = 1 if len(head.classes) == 2 else len(head.classes)
    if head.kind == "logistic":
        shapes = {"coef": (rows, head.dim), "intercept": (rows,)}
    else:
        n = head.arrays["vectors"].shape[0] if head.arrays["vectors"].ndim == 2 else -1
        shapes = {"vectors": (n, head.dim), "targets": (n,)}
        if not 1 <= head.k <= max(n, 1):
            raise ModelError(f"expected 1 <= k <= {n} (training vectors), got k={head.k}")
        targets = head.arrays["targets"]
        if targets.size and (targets.min() < 0 or targets.max() >= len(head.classes)):
            raise ModelError(f"expected targets in 0..{len(head.classes) - 1}")
    for name, shape in shapes.items():
        array = head.arrays[name]
        if array.shape != shape:
            raise ModelError(f"expected {name} of shape {shape}, got {array.shape}")
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise ModelError(f"expected finite numbers in {name}, got NaN or infinity")


def _logistic(x: FloatArray, coef: npt.NDArray[Any], intercept: npt.NDArray[Any]) -> FloatArray:
    scores = x @ coef.astype(np.float64).T + intercept.astype(np.float64)
    if coef.shape[0] == 1:  # binary: scikit-learn's single row is the second class's logit
        p1 = 1.0 / (1.0 + np.exp(-scores[:, 0]))
        return np.stack([1.0 - p1, p1], axis=1)
    scores -= scores.max(axis=1, keepdims=True)
    exp = np.exp(scores)
    result: FloatArray = exp / exp.sum(axis=1, keepdims=True)
    return result


def _knn(
    x: FloatArray, vectors: npt.NDArray[Any], targets: npt.NDArray[Any], k: int, n_classes: int
) -> FloatArray:
    train = vectors.astype(np.float64)
    train = train / np.maximum(np.linalg.norm(train, axis=1, keepdims=True), 1e-12)
    query = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    distance = 1.0 - query @ train.T  # cosine distance, as scikit-learn's metric="cosine"
    nearest = np.argsort(distance, axis=1, kind="stable")[:, :k]
    votes = np.zeros((x.shape[0], n_classes), dtype=np.float64)
    for row, neighbours in enumerate(nearest):
        np.add.at(votes[row], targets[neighbours].astype(np.int64), 1.0)
    result: FloatArray = votes / k
    return result


def _encode(array: npt.NDArray[Any]) -> dict[str, Any]:
    dtype = array.dtype.newbyteorder("<").str
    if dtype not in _DTYPES:
        raise ModelError(f"expected arrays of float64, float32 or int32, got {array.dtype}")
    data = np.ascontiguousarray(array, dtype=dtype).tobytes()
    return {"dtype": dtype, "shape": list(array.shape), "data": base64.b64encode(data).decode()}


def _decode(name: str, spec: Any) -> npt.NDArray[Any]:
    if not isinstance(spec, dict) or spec.get("dtype") not in _DTYPES:
        raise ModelError(f"expected array {name!r} with a dtype among {sorted(_DTYPES)}")
    shape = tuple(int(n) for n in spec["shape"])
    raw = base64.b64decode(spec["data"], validate=True)
    dtype = np.dtype(spec["dtype"])
    if len(raw) != dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
        raise ModelError(f"expected {name!r} data of {shape} {dtype}, got {len(raw)} bytes")
    return np.frombuffer(raw, dtype=dtype).reshape(shape)
