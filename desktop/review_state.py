"""What a crop's review looks like in the app: its status per node, as text and colours.

A review status is what the operator said about the model's answer (``accepted``,
``relabelled``, ``rejected``, ``unsure``; docs/labels.md), never a class: the label column
and the grid show it beside the crop's label, a rejected crop as rejected (a red ✗, the class
struck out), never with the green ✓ of an accepted one. :func:`with_event` applies one event of
the audit trail (a save, an undo) to a loaded row, so the list follows without a reload.
"""

from __future__ import annotations

from PySide6.QtGui import QColor

from lensflow.desktop.api_review_types import Review, ReviewEvent, ReviewItem, ReviewStatus
from lensflow.desktop.api_types import DETECTION_NODE, LabelEvent
from lensflow.desktop.theme import is_dark

MARKS: dict[ReviewStatus, str] = {
    "accepted": "✓",
    "relabelled": "✓",
    "rejected": "✗",
    "unsure": "?",
}
"""The mark of each status beside the label (rejected: a cross, never the accept tick)."""
UNSAVED = "unsaved"
"""The badge of a crop whose decision the API has not stored yet."""


def status_of(item: ReviewItem, node: str) -> ReviewStatus | None:
    """The crop's review status of ``node`` (a human label without a review: relabelled)."""
    review = item.reviews.get(node)
    if review is not None:
        return review.status
    return "relabelled" if node in item.human_labels else None


def model_label(item: ReviewItem, node: str) -> str | None:
    """What the edge (``detection``) or the node's classifier said, ignoring people."""
    if node == DETECTION_NODE:
        return item.detection.class_name
    outcome = item.classifiers.get(node)
    return outcome.label if outcome else None


def label_text(item: ReviewItem, node: str, *, unsaved: bool = False) -> str:
    """The label column's text: the label with its status mark (and "unsaved")."""
    label = item.label(node) or "-"
    status = status_of(item, node)
    text = label
    if status == "rejected":
        text = f"✗ rejected ({label})"
    elif status == "unsure":
        text = f"? unsure ({label})"
    elif status is not None:
        text = f"{label} {MARKS[status]}"
    return f"{text} · {UNSAVED}" if unsaved else text


def status_color(status: ReviewStatus | None) -> QColor | None:
    """The colour of a status's mark, readable on the palette in use (None: no status)."""
    dark = is_dark()
    colors = {
        "accepted": QColor("#86d993") if dark else QColor("#1b7a1b"),
        "relabelled": QColor("#86d993") if dark else QColor("#1b7a1b"),
        "rejected": QColor("#ff7b7b") if dark else QColor("#b00020"),
        "unsure": QColor("#f0c060") if dark else QColor("#8a5a00"),
    }
    return colors.get(status) if status is not None else None


def status_background(status: ReviewStatus | None) -> QColor | None:
    """A row's tint for its status: translucent, so light and dark text both stay readable."""
    tints = {
        "accepted": QColor(46, 160, 67, 55),
        "relabelled": QColor(46, 160, 67, 55),
        "rejected": QColor(220, 50, 60, 60),
        "unsure": QColor(230, 170, 30, 60),
    }
    return tints.get(status) if status is not None else None


def unsaved_color() -> QColor:
    """The background of the "unsaved" badge (orange: not an error yet, not done either)."""
    return QColor("#c25e00")


def with_event(item: ReviewItem, event: ReviewEvent | LabelEvent) -> ReviewItem:
    """``item`` after one audit-trail event of one of its nodes (a save or an undo)."""
    labels = dict(item.human_labels)
    if event.new_label is None:
        labels.pop(event.node, None)
    else:
        labels[event.node] = event.new_label
    update: dict[str, object] = {"human_labels": labels}
    if isinstance(event, ReviewEvent):
        reviews = dict(item.reviews)
        if event.new_status is None:
            reviews.pop(event.node, None)
        else:
            label = event.new_label
            if event.new_status == "accepted":
                label = model_label(item, event.node)
            reviews[event.node] = Review(
                status=event.new_status, label=label, by=event.actor, at=event.at
            )
        update["reviews"] = reviews
    return item.model_copy(update=update)
