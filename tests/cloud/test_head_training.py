"""Specs of training and gating heads (pure computation; seeded synthetic clusters).

The real-embedding version of "a head beats the gate, shuffled labels do not" runs on the demo's
crops in tests/cloud/test_heads_real.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from lensflow.cloud.heads.training import (
    LabelledVectors,
    TrainingError,
    TrainingOptions,
    evaluate,
    fit,
    gate,
    is_heldout,
    majority_class,
    split,
)

MODEL = "embeddings-v1/test@sha256:0000000000000000"


def labelled(per_class: dict[str, int], *, seed: int = 0, dim: int = 32) -> LabelledVectors:
    """Seeded clusters, one per label, with stable crop ids."""
    rng = np.random.default_rng(seed)
    vectors, labels = [], []
    for name, n in per_class.items():
        centre = rng.normal(size=dim)
        vectors.append(centre + 0.8 * rng.normal(size=(n, dim)))
        labels += [name] * n
    x = np.concatenate(vectors).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = tuple(f"crop-{seed}-{i:05d}" for i in range(len(labels)))
    return LabelledVectors(ids, x, tuple(labels), MODEL)


def shuffled(data: LabelledVectors, seed: int) -> LabelledVectors:
    order = np.random.default_rng(seed).permutation(len(data.labels))
    return LabelledVectors(
        data.crop_ids, data.vectors, tuple(data.labels[i] for i in order), data.embedding_model
    )


def test_the_split_is_a_function_of_the_crop_id_alone() -> None:
    data = labelled({"a": 200, "b": 200})
    more = LabelledVectors(  # more labels later: old crops stay where they were
        (*data.crop_ids, "late-1", "late-2"),
        np.concatenate([data.vectors, data.vectors[:2]]),
        (*data.labels, "a", "b"),
        MODEL,
    )

    _, heldout = split(data)
    _, heldout_later = split(more)

    assert set(heldout.crop_ids) == set(heldout_later.crop_ids) - {"late-1", "late-2"}
    assert 0.14 < len(heldout.crop_ids) / 400 < 0.26  # about the default 20 %
    assert all(is_heldout(c) for c in heldout.crop_ids)


def train_and_gate(data: LabelledVectors, options: TrainingOptions | None = None) -> Any:
    options = options or TrainingOptions()
    train, heldout = split(data, fraction=options.heldout_fraction)
    classes = sorted(set(data.labels))
    head = fit(train, classes=classes, options=options)
    majority = majority_class(train)
    candidate = evaluate(head.predict(heldout.vectors), heldout.labels, classes)
    reference = evaluate([majority] * len(heldout.labels), heldout.labels, classes)
    return head, gate(candidate, reference, baseline=f"majority class {majority!r}", first=True)


@pytest.mark.parametrize("kind", ["logistic", "knn"])
def test_a_head_that_learned_the_classes_passes_the_gate(kind: str) -> None:
    data = labelled({"car": 120, "van": 60, "bus": 30})

    head, verdict = train_and_gate(data, TrainingOptions(kind=kind))  # type: ignore[arg-type]

    assert verdict.passed, verdict.reasons
    assert verdict.candidate.accuracy > 0.9 and verdict.candidate.macro_f1 > 0.9
    assert head.classes == ("bus", "car", "van")  # the order it was given, ids for exports
    assert head.card["train_counts"] == {
        c: sum(
            1
            for lab, h in zip(data.labels, data.crop_ids, strict=True)
            if lab == c and not is_heldout(h)
        )
        for c in ("bus", "car", "van")
    }


@pytest.mark.parametrize("seed", range(5))  # five shuffles: none passes
def test_a_head_trained_on_shuffled_labels_is_refused(seed: int) -> None:
    data = shuffled(labelled({"car": 100, "van": 100, "bus": 100}, seed=seed), seed)

    _, verdict = train_and_gate(data)

    assert not verdict.passed
    assert any("beyond chance" in reason for reason in verdict.reasons), verdict.reasons


def test_too_few_labels_of_a_class_is_refused_with_the_counts() -> None:
    data = labelled({"car": 50, "van": 50, "tram": 4})

    with pytest.raises(TrainingError, match=r"at least 5 training labels per class: 'tram' has \d"):
        train_and_gate(data)


def test_a_single_class_cannot_be_trained() -> None:
    with pytest.raises(TrainingError, match="at least two classes, got {'car': "):
        train_and_gate(labelled({"car": 50}))


def test_a_replacement_must_beat_the_active_head_on_the_same_crops() -> None:
    data = labelled({"car": 100, "van": 100})
    train, heldout = split(data)
    classes = ["car", "van"]
    good = fit(train, classes=classes, options=TrainingOptions())
    good_eval = evaluate(good.predict(heldout.vectors), heldout.labels, classes)

    verdict = gate(good_eval, good_eval, baseline="active head abc", first=False)

    assert not verdict.passed
    assert verdict.reasons[0].startswith("macro-F1 1.000 does not beat 1.000 (active head abc)")


def test_evaluation_counts_a_missing_prediction_as_wrong_and_keeps_schema_order() -> None:
    result = evaluate(["car", None, "van", "car"], ["car", "van", "van", "van"], ["van", "car"])

    assert result.accuracy == 0.5
    assert result.labels == ("van", "car", "(none)")
    assert result.confusion == ((1, 1, 1), (0, 1, 0), (0, 0, 0))
    assert result.per_class["van"]["recall"] == pytest.approx(1 / 3, abs=1e-4)
