"""``lensflow bench edge`` on the COCO SSD: both runtimes and Frigate's CPU path, one table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lensflow.bench.edge_ssd import run_ssd_bench
from lensflow.shared.images import read_image

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_bench_measures_every_path_on_the_same_frames(
    ssd_coco_tflite: Path, coco_photos: dict[str, Path]
) -> None:
    frames = [read_image(coco_photos[name]) for name in ("dog", "bus")]

    result = run_ssd_bench(ssd_coco_tflite, frames=frames, threads=1, repeats=3)

    assert set(result.runtimes) == {"litert", "openvino"}
    for figures in result.runtimes.values():
        # the stages add up to about the wall time, which is never below the engine call
        stages = figures.pre_ms + figures.infer_ms + figures.post_ms
        assert figures.raw_ms > 0 and 0 < stages <= figures.frame_ms * 1.5
        assert figures.overhead > 0.5
    assert 0 < result.frigate_ms <= result.frigate_with_resize_ms * 1.5
    assert set(result.ratios("openvino")) and set(result.ratios("litert"))


def test_the_command_prints_the_table_and_writes_json(model_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lensflow",
            "bench",
            "edge",
            "--model",
            "ssd-mobilenet-v2-coco",
            "--backend",
            "litert",
            "--repeats",
            "3",
            "--threads",
            "1",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "LENSFLOW_MODEL_CACHE": str(model_cache), "COLUMNS": "200"},
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Frigate CPU detector" in result.stdout
    assert "ours (litert) per frame / raw engine call" in result.stdout
    figures = json.loads(out.read_text())
    assert set(figures["runtimes"]) == {"litert", "openvino"}
