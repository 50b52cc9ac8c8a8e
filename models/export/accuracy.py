"""Accuracy gate: how closely an exported model reproduces its source model's detections.

Detection F1 at IoU 0.5 between the two models' outputs, pooled over a folder of images:
a candidate detection matches a reference one of the same class with IoU >= 0.5 (greedy,
highest IoU first, each used once). Precision = matched / candidate detections, recall =
matched / reference detections.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lensflow.shared.detectors.base import Detection


@dataclass(frozen=True)
class F1Report:
    """Agreement of a candidate model with a reference model over some images."""

    images: int
    reference: int  # detections of the reference model
    candidate: int  # detections of the candidate model
    matched: int

    @property
    def precision(self) -> float:
        """Matched share of the candidate's detections (1.0 when it found none and none exist)."""
        return self.matched / self.candidate if self.candidate else float(self.reference == 0)

    @property
    def recall(self) -> float:
        """Matched share of the reference's detections."""
        return self.matched / self.reference if self.reference else float(self.candidate == 0)

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def as_dict(self) -> dict[str, float | int]:
        """JSON-ready figures, for the model card."""
        return {
            "images": self.images,
            "reference_detections": self.reference,
            "candidate_detections": self.candidate,
            "matched": self.matched,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
        }


def iou_matrix(a: Sequence[Detection], b: Sequence[Detection]) -> npt.NDArray[np.float64]:
    """Pairwise IoU of two lists of boxes, shape (len(a), len(b))."""
    if not a or not b:
        return np.zeros((len(a), len(b)))
    boxes_a = np.array([d.box for d in a], dtype=np.float64)[:, None, :]
    boxes_b = np.array([d.box for d in b], dtype=np.float64)[None, :, :]
    w = np.minimum(boxes_a[..., 2], boxes_b[..., 2]) - np.maximum(boxes_a[..., 0], boxes_b[..., 0])
    h = np.minimum(boxes_a[..., 3], boxes_b[..., 3]) - np.maximum(boxes_a[..., 1], boxes_b[..., 1])
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)
    area_a = (boxes_a[..., 2] - boxes_a[..., 0]) * (boxes_a[..., 3] - boxes_a[..., 1])
    area_b = (boxes_b[..., 2] - boxes_b[..., 0]) * (boxes_b[..., 3] - boxes_b[..., 1])
    ious: npt.NDArray[np.float64] = inter / np.maximum(area_a + area_b - inter, 1e-9)
    return ious


def match(
    reference: Sequence[Detection], candidate: Sequence[Detection], *, iou: float = 0.5
) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matching of same-class boxes by IoU: (ref index, cand index, IoU)."""
    ious = iou_matrix(reference, candidate)
    pairs = [
        (float(ious[i, j]), i, j)
        for i, r in enumerate(reference)
        for j, c in enumerate(candidate)
        if r.class_id == c.class_id and ious[i, j] >= iou
    ]
    used_r: set[int] = set()
    used_c: set[int] = set()
    matches = []
    for value, i, j in sorted(pairs, reverse=True):
        if i not in used_r and j not in used_c:
            used_r.add(i)
            used_c.add(j)
            matches.append((i, j, value))
    return matches


def detection_f1(
    reference: Sequence[Sequence[Detection]],
    candidate: Sequence[Sequence[Detection]],
    *,
    iou: float = 0.5,
) -> F1Report:
    """Pool matches over images (both lists in the same image order)."""
    if len(reference) != len(candidate):
        raise ValueError(
            f"expected detections for the same images, got {len(reference)} "
            f"reference and {len(candidate)} candidate lists"
        )
    matched = sum(len(match(r, c, iou=iou)) for r, c in zip(reference, candidate, strict=True))
    return F1Report(
        images=len(reference),
        reference=sum(len(r) for r in reference),
        candidate=sum(len(c) for c in candidate),
        matched=matched,
    )
