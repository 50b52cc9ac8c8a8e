"""A node whose inference service is down stops the batch: no error result, no one-by-one retry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lensflow.shared.classifiers.registry import PluginRegistry
from lensflow.shared.dag.compiler import load_pipeline
from lensflow.shared.dag.engine import Pipeline
from lensflow.shared.errors import ServiceUnavailableError
from tests.support.plugins import RemoteBrightness

IMAGES = [np.full((8, 8, 3), value, dtype=np.uint8) for value in (10, 200, 90)]


def remote_pipeline(
    tmp_path: Path, registry: PluginRegistry, *, unavailable_calls: int
) -> Pipeline:
    path = tmp_path / "p.yaml"
    path.write_text(
        "pipeline:\n"
        "  - {name: det, class: edge_detection}\n"
        "  - name: remote\n"
        "    class: remote_brightness\n"
        "    depends_on: det\n"
        f"    params: {{unavailable_calls: {unavailable_calls}}}\n"
    )
    return Pipeline(load_pipeline(path, registry=registry))


def test_an_unavailable_service_propagates_without_retrying_image_by_image(
    tmp_path: Path, registry: PluginRegistry
) -> None:
    # given a node whose server refuses its first call
    pipeline = remote_pipeline(tmp_path, registry, unavailable_calls=1)
    plugin = pipeline.plugins["remote"]
    assert isinstance(plugin, RemoteBrightness)

    # when a batch runs, then the outage propagates after one call (no image is blamed)
    with pytest.raises(ServiceUnavailableError, match="not ready"):
        pipeline.run_batch(IMAGES, inputs=[{} for _ in IMAGES])
    assert plugin.calls == 1

    # and the same batch runs once the server answers
    results = pipeline.run_batch(IMAGES, inputs=[{} for _ in IMAGES])
    assert [r.nodes["remote"].status for r in results] == ["ok", "ok", "ok"]
    assert [r.nodes["remote"].output["label"] for r in results] == ["dark", "bright", "dark"]
