"""Compare what a candidate version says about stored crops with what their results say.

Per node, over every replayed crop:

* ``compared``: crops replayed (the node ran, was skipped or is absent on either side);
* ``changed``: both sides ran the node and their labels differ; ``unchanged``: same label;
* ``newly_run``: the candidate runs the node where the stored result did not (skipped, failed
  or no such node); ``newly_skipped``: the other way round;
* ``errors``: the candidate's node failed;
* ``confusion``: ``old → new`` counts, a side that did not run the node being ``(not run)``
  and a run without a label ``(no label)``;
* ``examples``: up to :data:`EXAMPLES` crop ids of each kind of change.

Labels are read from a node's output exactly as the worker stores them
(:func:`lensflow.cloud.storage.rows.result_row`), so a replay compares like with like.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lensflow.cloud.storage.rows import result_row
from lensflow.shared.dag.engine import ImageResult

NOT_RUN = "(not run)"
NO_LABEL = "(no label)"
EXAMPLES = 10
"""Crop ids kept per kind of change and per node."""


@dataclass(frozen=True)
class Side:
    """One side's outcome for a node of a crop: its status and label."""

    status: str
    label: str | None

    @property
    def ran(self) -> bool:
        """Whether the node ran and succeeded."""
        return self.status == "ok"

    def shown(self) -> str:
        """How the side appears in the confusion table."""
        if not self.ran:
            return NOT_RUN
        return self.label if self.label is not None else NO_LABEL


def candidate_sides(result: ImageResult) -> dict[str, Side]:
    """Each node's side from a candidate's result, labels read as the worker stores them."""
    return {
        name: Side(node.status, result_row(0, node)["label"]) for name, node in result.nodes.items()
    }


@dataclass
class NodeTally:
    """The counts of one node over the replayed crops."""

    compared: int = 0
    changed: int = 0
    unchanged: int = 0
    newly_run: int = 0
    newly_skipped: int = 0
    errors: int = 0
    confusion: Counter[tuple[str, str]] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, crop_id: str, old: Side | None, new: Side | None) -> None:
        """Count one crop (a side is None when it has no result for the node)."""
        old_side = old or Side("absent", None)
        new_side = new or Side("absent", None)
        self.compared += 1
        self.confusion[(old_side.shown(), new_side.shown())] += 1
        if new_side.status == "error":
            self.errors += 1
        if old_side.ran and new_side.ran:
            if old_side.label != new_side.label:
                self.changed += 1
                self._example("changed", crop_id)
            else:
                self.unchanged += 1
        elif new_side.ran:
            self.newly_run += 1
            self._example("newly_run", crop_id)
        elif old_side.ran:
            self.newly_skipped += 1
            self._example("newly_skipped", crop_id)

    def _example(self, kind: str, crop_id: str) -> None:
        kept = self.examples.setdefault(kind, [])
        if len(kept) < EXAMPLES:
            kept.append(crop_id)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready counts; the confusion table as rows, most frequent first."""
        rows = sorted(self.confusion.items(), key=lambda item: (-item[1], item[0]))
        return {
            "compared": self.compared,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "newly_run": self.newly_run,
            "newly_skipped": self.newly_skipped,
            "errors": self.errors,
            "confusion": [{"old": old, "new": new, "count": n} for (old, new), n in rows],
            "examples": {kind: list(ids) for kind, ids in sorted(self.examples.items())},
        }


class Comparison:
    """The tallies of every node seen on either side, in first-seen order."""

    def __init__(self) -> None:
        """Start with no crop."""
        self.nodes: dict[str, NodeTally] = {}
        self.crops = 0
        self.old_versions: Counter[str] = Counter()

    def add(
        self,
        crop_id: str,
        *,
        old: Mapping[str, Side],
        new: Mapping[str, Side],
        old_version: str | None,
    ) -> None:
        """Count one crop: its stored sides, the candidate's, and the stored version."""
        self.crops += 1
        self.old_versions[old_version or "(unknown)"] += 1
        for name in [*new, *(n for n in old if n not in new)]:
            if name not in self.nodes:  # the crops before had it on neither side
                earlier = self.crops - 1
                self.nodes[name] = NodeTally(compared=earlier)
                if earlier:
                    self.nodes[name].confusion[(NOT_RUN, NOT_RUN)] = earlier
        for name, tally in self.nodes.items():
            tally.add(crop_id, old.get(name), new.get(name))

    def as_dict(self, *, candidate_nodes: list[str]) -> dict[str, Any]:
        """The report's per-node part; nodes the candidate lacks are marked ``removed``."""
        nodes = {}
        for name, tally in self.nodes.items():
            entry = tally.as_dict()
            entry["in_candidate"] = name in candidate_nodes
            nodes[name] = entry
        return {
            "crops": self.crops,
            "compared_with": dict(self.old_versions.most_common()),
            "nodes": nodes,
        }
