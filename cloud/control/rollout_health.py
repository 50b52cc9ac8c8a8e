"""A rollout's health: an edge's figures on the new config version against the previous one.

Figures come from the edge's heartbeats (:class:`~lensflow.cloud.storage.rollouts.EdgeHeartbeat`),
whose counters are running totals since the agent started: ``frames``, ``detections``
(before filtering), ``detect_errors`` and ``source_failures``. Each pair of consecutive
heartbeats on the same config adds its increments; a pair whose totals went down (the agent
restarted) is left out. Agents older than these counters give no detections or errors: the
figures say ``None`` rather than a made-up zero.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from lensflow.cloud.storage.rollouts import EdgeHeartbeat, Rollout, RolloutEdge

BASELINE_S = 3600.0
"""How far back before its assignment an edge's heartbeats count as its previous figures."""
ERROR_COUNTERS = ("detect_errors", "source_failures")
"""Counters that add up to a rollout's errors."""


@dataclass(frozen=True)
class Figures:
    """What an edge did over some heartbeats.

    Attributes:
        heartbeats: Heartbeats the figures come from.
        seconds: Time they cover (between the first and the last).
        frames: Frames analysed meanwhile.
        fps: Frames per second; None when they cover no time.
        detections_per_frame: Detections (before filtering) per frame; None without frames
            or when the agent does not count detections.
        errors: Detector and source failures meanwhile; None when the agent does not count them.

    """

    heartbeats: int
    seconds: float
    frames: int
    fps: float | None
    detections_per_frame: float | None
    errors: int | None


def figures(beats: Sequence[EdgeHeartbeat]) -> Figures:
    """The figures of ``beats`` (one edge's, on one config, in time order)."""
    seconds, totals = 0.0, {"frames": 0, "detections": 0, **dict.fromkeys(ERROR_COUNTERS, 0)}
    counted = {key: bool(beats) for key in totals}
    for old, new in itertools.pairwise(beats):
        step = {key: _count(new, key) - _count(old, key) for key in totals}
        if any(value < 0 for value in step.values()):
            continue  # the agent restarted between the two
        seconds += max((new.at - old.at).total_seconds(), 0.0)
        for key, value in step.items():
            totals[key] += value
    for beat in beats:
        for key in counted:
            counted[key] = counted[key] and key in beat.counters
    frames = totals["frames"]
    return Figures(
        heartbeats=len(beats),
        seconds=round(seconds, 3),
        frames=frames,
        fps=round(frames / seconds, 3) if seconds > 0 else None,
        detections_per_frame=(
            round(totals["detections"] / frames, 3) if frames and counted["detections"] else None
        ),
        errors=(
            sum(totals[key] for key in ERROR_COUNTERS)
            if all(counted[key] for key in ERROR_COUNTERS)
            else None
        ),
    )


def _count(beat: EdgeHeartbeat, key: str) -> int:
    value = beat.counters.get(key, 0)
    return value if isinstance(value, int) else 0


@dataclass(frozen=True)
class EdgeHealth:
    """One touched edge's figures on the rollout's version and on its config before.

    Attributes:
        current: Since it runs the rollout's version; None until it applied it.
        previous: On the config it ran before, in the hour before the assignment.

    """

    current: Figures | None
    previous: Figures


def edge_health(session: Session, rollout: Rollout, edge: RolloutEdge) -> EdgeHealth:
    """The health of ``edge`` in ``rollout``, from the kept heartbeats."""
    beats = select(EdgeHeartbeat).where(
        EdgeHeartbeat.site == edge.site, EdgeHeartbeat.agent_id == edge.agent_id
    )
    before = beats.where(
        EdgeHeartbeat.at <= edge.assigned_at,
        EdgeHeartbeat.at >= edge.assigned_at - timedelta(seconds=BASELINE_S),
    )
    if edge.previous_config_hash is not None:
        before = before.where(EdgeHeartbeat.config_hash == edge.previous_config_hash)
    current = None
    if edge.applied_at is not None:
        after = beats.where(
            EdgeHeartbeat.at >= edge.assigned_at, EdgeHeartbeat.config_hash == rollout.config_hash
        )
        current = figures(list(session.scalars(after.order_by(EdgeHeartbeat.at))))
    return EdgeHealth(current, figures(list(session.scalars(before.order_by(EdgeHeartbeat.at)))))
