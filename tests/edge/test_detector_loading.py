"""The agent loads its detector for as many frames as its cameras keep in it at once."""

from __future__ import annotations

import pytest

from lensflow.edge.detector_loading import detector_parallelism
from lensflow.shared.config.edge import EdgeConfig


def config(*gated: bool) -> EdgeConfig:
    cameras = [
        {"name": f"cam{i}", "source": {"type": "usb"}, "motion": {"enabled": on}}
        for i, on in enumerate(gated)
    ]
    return EdgeConfig.model_validate(
        {
            "site": "s1",
            "agent_id": "a1",
            "detector": {"model": "m.onnx"},
            "cameras": cameras,
        }
    )


@pytest.mark.parametrize(
    ("gated", "expected"),
    [
        ((False,), 2),  # one camera pipelines two frames: two requests / interpreters
        ((True,), 1),  # a gated camera keeps one frame in flight: the latency path
        ((False, False), 2),
        ((True, True, True, True), 4),
        ((False, False, False, False), 4),  # one per camera beyond the single camera's two
    ],
)
def test_the_detector_is_loaded_for_the_frames_in_flight(
    gated: tuple[bool, ...], expected: int
) -> None:
    assert detector_parallelism(config(*gated)) == expected
