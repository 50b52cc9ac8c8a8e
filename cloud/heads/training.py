"""Train a head from reviewed labels, measure it on held-out crops, and gate it.

Pure computation over vectors and labels (no database): :mod:`lensflow.cloud.heads.dataset`
gathers them, :mod:`lensflow.cloud.heads.service` stores the result.

* The split is stable by crop id: a crop is held out when the first 32 bits of the sha256 of
  its id fall in the held-out fraction, so adding labels never moves an old crop between
  train and held-out, and two heads trained on the same labels are measured on the same crops.
* Class ids follow the node's label schema (model order), so a head's outputs, its exports
  and the schema agree.
* The gate refuses a head that does not beat the baseline on the same held-out crops, or that
  was trained on too few labels per class; every refusal says the numbers.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.stats import binomtest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from lensflow.shared.classifiers.head_model import HeadKind, HeadModel
from lensflow.shared.errors import LensflowError

DEFAULT_HELDOUT_FRACTION = 0.2
DEFAULT_MIN_PER_CLASS = 5
"""Fewest training labels per class a head is trained on."""
SIGNIFICANCE = 0.05
"""The gate's one-sided p-value: a first head must beat the majority class beyond chance."""


class TrainingError(LensflowError):
    """A head cannot be trained from what was given (too few labels, a single class)."""


@dataclass(frozen=True)
class LabelledVectors:
    """Crops with an embedding vector and a reviewed label each.

    Attributes:
        crop_ids: The crops, in a stable order.
        vectors: ``(N, D)`` float32 embeddings, one row per crop.
        labels: Each crop's label.
        embedding_model: The embedding's model identifier (all vectors are of it).

    """

    crop_ids: tuple[str, ...]
    vectors: npt.NDArray[np.float32]
    labels: tuple[str, ...]
    embedding_model: str

    def __post_init__(self) -> None:
        if not (len(self.crop_ids) == len(self.labels) == self.vectors.shape[0]):
            raise ValueError(
                f"expected one vector and one label per crop, got {len(self.crop_ids)} crops, "
                f"{self.vectors.shape[0]} vectors and {len(self.labels)} labels"
            )

    def subset(self, keep: Sequence[bool]) -> LabelledVectors:
        """The crops where ``keep`` is true, in order."""
        mask = np.asarray(keep, dtype=bool)
        return LabelledVectors(
            tuple(c for c, k in zip(self.crop_ids, mask, strict=True) if k),
            self.vectors[mask],
            tuple(label for label, k in zip(self.labels, mask, strict=True) if k),
            self.embedding_model,
        )


def is_heldout(crop_id: str, fraction: float = DEFAULT_HELDOUT_FRACTION) -> bool:
    """Whether a crop belongs to the held-out set (stable: a function of its id alone)."""
    bucket = int.from_bytes(hashlib.sha256(crop_id.encode()).digest()[:4], "big")
    return bucket < fraction * 2**32


def split(
    data: LabelledVectors, *, fraction: float = DEFAULT_HELDOUT_FRACTION
) -> tuple[LabelledVectors, LabelledVectors]:
    """``(train, heldout)`` by :func:`is_heldout` of each crop id."""
    held = [is_heldout(crop_id, fraction) for crop_id in data.crop_ids]
    return data.subset([not h for h in held]), data.subset(held)


@dataclass(frozen=True)
class Evaluation:
    """Figures of predictions against held-out labels.

    Attributes:
        n: Held-out crops.
        accuracy: Share predicted right.
        macro_f1: Mean F1 over the classes (each class counts the same, however rare).
        per_class: ``{label: {"precision", "recall", "f1", "support"}}``.
        labels: The confusion matrix's row and column order.
        confusion: ``confusion[i][j]``: crops labelled ``labels[i]`` predicted ``labels[j]``.

    """

    n: int
    accuracy: float
    macro_f1: float
    per_class: Mapping[str, Mapping[str, float]]
    labels: tuple[str, ...]
    confusion: tuple[tuple[int, ...], ...]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures (for the model card and the API)."""
        return {
            "n": self.n,
            "accuracy": round(self.accuracy, 4),
            "macro_f1": round(self.macro_f1, 4),
            "per_class": {k: dict(v) for k, v in self.per_class.items()},
            "confusion": {"labels": list(self.labels), "matrix": [list(r) for r in self.confusion]},
        }


def evaluate(
    predicted: Sequence[str | None], truth: Sequence[str], classes: Sequence[str]
) -> Evaluation:
    """Accuracy, macro-F1, per-class figures and the confusion matrix.

    Args:
        predicted: Each crop's prediction (None: no prediction, counted wrong).
        truth: Each crop's reviewed label.
        classes: The classes the figures are over, in schema order (macro-F1 averages over
            those present in ``truth``).

    """
    if len(predicted) != len(truth):
        raise ValueError(
            f"expected as many predictions as labels, got {len(predicted)} and {len(truth)}"
        )
    guessed = [p if p is not None else "(none)" for p in predicted]
    labels = list(classes) + sorted(set(guessed) - set(classes))
    present = [c for c in classes if c in set(truth)]
    if not truth:
        return Evaluation(0, 0.0, 0.0, {}, tuple(classes), ())
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, guessed, labels=present, zero_division=0.0
    )
    per_class = {
        name: {
            "precision": round(float(p), 4),
            "recall": round(float(r), 4),
            "f1": round(float(f), 4),
            "support": int(s),
        }
        for name, p, r, f, s in zip(present, precision, recall, f1, support, strict=True)
    }
    matrix = confusion_matrix(truth, guessed, labels=labels)
    return Evaluation(
        n=len(truth),
        accuracy=float(np.mean([g == t for g, t in zip(guessed, truth, strict=True)])),
        macro_f1=float(
            f1_score(truth, guessed, labels=present, average="macro", zero_division=0.0)
        ),
        per_class=per_class,
        labels=tuple(labels),
        confusion=tuple(tuple(int(x) for x in row) for row in matrix),
    )


@dataclass(frozen=True)
class TrainingOptions:
    """How a head is trained.

    Attributes:
        kind: ``logistic`` (default) or ``knn``.
        k: Neighbours that vote (knn).
        c: Inverse regularisation strength (logistic).
        min_per_class: Fewest training labels per class.
        heldout_fraction: Share of crops held out (by crop id).

    """

    kind: HeadKind = "logistic"
    k: int = 5
    c: float = 1.0
    min_per_class: int = DEFAULT_MIN_PER_CLASS
    heldout_fraction: float = DEFAULT_HELDOUT_FRACTION


def fit(
    train: LabelledVectors,
    *,
    classes: Sequence[str],
    options: TrainingOptions,
    card: Mapping[str, Any] | None = None,
) -> HeadModel:
    """Train a head on ``train``; its class ids are the order of ``classes``.

    Raises:
        TrainingError: Fewer than two classes have labels, or one has fewer than
            ``options.min_per_class`` (each such class named with its count).

    """
    counts = Counter(train.labels)
    order = [c for c in classes if counts[c] > 0]
    short = {c: counts[c] for c in order if counts[c] < options.min_per_class}
    if len(order) < 2:
        raise TrainingError(
            f"expected training labels of at least two classes, got {dict(counts) or 'none'}"
        )
    if short:
        listed = ", ".join(f"{name!r} has {n}" for name, n in short.items())
        raise TrainingError(
            f"expected at least {options.min_per_class} training labels per class: {listed} "
            "(label more crops of it, or leave it out with the label filter)"
        )
    index = {name: i for i, name in enumerate(order)}
    y = np.array([index[label] for label in train.labels], dtype=np.int32)
    x = train.vectors.astype(np.float64)
    full_card = {**dict(card or {}), "train_counts": {c: counts[c] for c in order}}
    if options.kind == "knn":
        k = min(options.k, len(y))
        arrays: dict[str, npt.NDArray[Any]] = {
            "vectors": train.vectors.astype(np.float32),
            "targets": y,
        }
        return HeadModel(
            "knn", tuple(order), train.embedding_model, x.shape[1], arrays, k, full_card
        )
    model = LogisticRegression(C=options.c, max_iter=5000)
    model.fit(x, y)
    arrays = {
        "coef": model.coef_.astype(np.float64),
        "intercept": model.intercept_.astype(np.float64),
    }
    return HeadModel(
        "logistic", tuple(order), train.embedding_model, x.shape[1], arrays, 0, full_card
    )


@dataclass(frozen=True)
class GateVerdict:
    """Whether a candidate head may become a pipeline version, and why.

    Attributes:
        passed: True when it beats the baseline.
        baseline: What it was compared with (``majority class 'x'`` or ``active head ...``).
        candidate: The candidate's held-out figures.
        reference: The baseline's figures on the same held-out crops.
        reasons: Why it was refused (empty when passed); each with numbers.
        p_value: One-sided binomial p-value of the candidate's accuracy against the majority
            class's (first heads only).

    """

    passed: bool
    baseline: str
    candidate: Evaluation
    reference: Evaluation
    reasons: tuple[str, ...] = field(default_factory=tuple)
    p_value: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready verdict."""
        return {
            "passed": self.passed,
            "baseline": self.baseline,
            "reasons": list(self.reasons),
            "p_value": None if self.p_value is None else round(self.p_value, 6),
            "candidate": {
                "accuracy": round(self.candidate.accuracy, 4),
                "macro_f1": round(self.candidate.macro_f1, 4),
            },
            "reference": {
                "accuracy": round(self.reference.accuracy, 4),
                "macro_f1": round(self.reference.macro_f1, 4),
            },
        }


def majority_class(train: LabelledVectors) -> str:
    """The most frequent training label (ties: the first in sorted order)."""
    counts = Counter(train.labels)
    return sorted(counts, key=lambda name: (-counts[name], name))[0]


def gate(
    candidate: Evaluation,
    reference: Evaluation,
    *,
    baseline: str,
    first: bool,
    min_heldout: int = 10,
) -> GateVerdict:
    """Decide whether the candidate beats the baseline on the same held-out crops.

    A first head (no active head for the node) must beat the majority class: higher macro-F1
    and an accuracy above the majority class's beyond chance (one-sided binomial test,
    p < :data:`SIGNIFICANCE`), so a head that learned nothing (shuffled labels) is refused
    however the classes are balanced. A head that replaces an active one must have a higher
    macro-F1 and no lower accuracy on the same crops. Fewer than ``min_heldout`` held-out crops
    decide nothing: refused.

    """
    reasons: list[str] = []
    p_value = None
    n = candidate.n
    if n < min_heldout:
        reasons.append(f"only {n} held-out crops, at least {min_heldout} needed to measure a head")
    if candidate.macro_f1 <= reference.macro_f1:
        reasons.append(
            f"macro-F1 {candidate.macro_f1:.3f} does not beat {reference.macro_f1:.3f} "
            f"({baseline}) on the same {n} held-out crops"
        )
    if first and n:
        right = round(candidate.accuracy * n)
        p_value = float(binomtest(right, n, reference.accuracy, alternative="greater").pvalue)
        if p_value >= SIGNIFICANCE:
            reasons.append(
                f"accuracy {candidate.accuracy:.3f} ({right}/{n} held-out crops) is not above "
                f"{reference.accuracy:.3f} ({baseline}) beyond chance "
                f"(p = {p_value:.3f}, needs < {SIGNIFICANCE})"
            )
    elif candidate.accuracy < reference.accuracy:
        reasons.append(
            f"accuracy {candidate.accuracy:.3f} is below {reference.accuracy:.3f} ({baseline}) "
            f"on the same {n} held-out crops"
        )
    return GateVerdict(not reasons, baseline, candidate, reference, tuple(reasons), p_value)
