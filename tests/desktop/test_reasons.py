"""Skip reasons folded to a few words, from the explanations the DAG engine really stores."""

from __future__ import annotations

from typing import Any

import pytest

from lensflow.desktop.reasons import MAX_CHARS, short_reason
from lensflow.shared.dag.condition_compile import compile_condition

PERSON = {"object_detection": {"detected_classes": ["person"], "count": 1, "score": 0.3}}


def _explained(when: Any, context: dict[str, Any] = PERSON) -> str:
    """What the engine stores for a node skipped by ``when`` (engine.py: ``explain``)."""
    return compile_condition(when).explain(context)


@pytest.mark.parametrize(
    ("reason", "short"),
    [
        # the demo's vehicle node on a person: the same test three times, folded to one line
        (
            _explained(
                {
                    "any": [
                        {"contains": ["object_detection.detected_classes", name]}
                        for name in ("car", "truck", "bus")
                    ]
                }
            ),
            "no car, truck or bus detected",
        ),
        # the string form of one test
        (
            _explained("'car' in context['object_detection']['detected_classes']"),
            "no car detected",
        ),
        # an all-of: the test that failed
        (
            _explained(
                {
                    "all": [
                        {"contains": ["object_detection.detected_classes", "person"]},
                        {"contains": ["object_detection.detected_classes", "bicycle"]},
                    ]
                }
            ),
            "no bicycle detected",
        ),
        # not_contains that was false: the value was there
        (
            _explained({"not_contains": ["object_detection.detected_classes", "person"]}),
            "person detected",
        ),
        # a list that is not of classes keeps its path
        (
            _explained({"contains": ["object_detection.zones", "dock"]}),
            "no dock in object_detection.zones",
        ),
        # what the engine says of a disabled node and of a skipped upstream
        ("node is disabled", "disabled"),
        ("upstream node 'object_detection' was skipped", "object_detection was skipped"),
    ],
)
def test_a_reason_is_folded_to_a_few_words(reason: str, short: str) -> None:
    assert short_reason(reason) == short


def test_a_reason_it_cannot_fold_is_cut_not_repeated() -> None:
    reason = _explained({"ge": ["object_detection.score", 0.5]})
    assert reason.startswith("condition false: object_detection.score >= 0.5")

    short = short_reason(reason)

    assert short == "object_detection.score >= 0.5 (value: 0.3)"
    assert len(short_reason(reason + " and more" * 20)) == MAX_CHARS
