"""``lensflow bench cloud`` with tiny sizes: every row of the table, ratios that are numbers."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROWS = (
    "ingest MQTT -> sqlite, crops/s",
    "classifier efficientnet-lite0, images/s",
    "API /v1/results p95, 2,000 rows",
    "p50",
    "p95, first pages",
    "plan, first page:",
    "efficientnet-lite0 on Triton, crops/s",
    "in-worker ONNX Runtime",
)


def test_bench_cloud_prints_every_figure_and_ratio(repo_root: Path, tmp_path: Path) -> None:
    # given tiny sizes (a real broker, worker, model, PostgreSQL and API server all the same)
    out = tmp_path / "bench.json"
    command = [sys.executable, "-m", "lensflow", "bench", "cloud"]
    command += ["--crops", "200", "--rows", "2000", "--images", "32", "--json", str(out)]
    command += ["--triton-crops", "24", "--triton-rounds", "1"]
    # when the benchmark runs
    result = subprocess.run(
        command,
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    # then the table has every row, and the JSON every ratio as a positive number
    assert result.returncode == 0, result.stdout + result.stderr
    for row in ROWS:
        assert row in result.stdout, f"{row!r} missing from:\n{result.stdout}"
    document = json.loads(out.read_text())
    ratios = document["ratios"]
    assert len(ratios) == 4
    for name, ratio in ratios.items():
        assert isinstance(ratio["value"], float), name
        assert math.isfinite(ratio["value"]) and ratio["value"] > 0, name
        assert isinstance(ratio["met"], bool), name
    assert document["ingest"]["stored"] == 200
    assert document["batching"]["same_labels"] == 1.0
    assert document["api"]["index_used"] is True
    # the classifier on Triton gives the in-worker runtime's vehicle types, batched or not
    assert document["triton"]["same_types"] == {"triton batched": 1.0, "triton unbatched": 1.0}
    assert "ix_crops_camera_class_name_captured_at_id" in document["api"]["plan_first_page"]
