"""``lensflow bench classifiers``, tiny counts: a row of figures per plugin, ratios that agree."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PLUGINS = ("vehicle_type", "embeddings", "tshirt_color", "car_make_vit")
ROW = re.compile(r"^\W*(\w+)\W+([\d.]+)\W+([\d.]+)\W+([\d.]+)\W")


def test_bench_classifiers_prints_crops_per_second_at_batch_1_and_8(
    repo_root: Path, tmp_path: Path
) -> None:
    # given tiny counts, and the 32-pixel ViT standing in for a car-make checkpoint
    out = tmp_path / "bench.json"
    command = [sys.executable, "-m", "lensflow", "bench", "classifiers"]
    command += ["--crops", "8", "--rounds", "1", "--vit", "test", "--json", str(out)]
    # when the benchmark runs
    result = subprocess.run(
        command,
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env={**os.environ, "COLUMNS": "250"},
    )
    # then it prints a row per plugin: crops/s at batch 1 and 8, and their ratio
    assert result.returncode == 0, result.stdout + result.stderr
    assert "crops/s b1" in result.stdout and "crops/s b8" in result.stdout
    assert "b8/b1" in result.stdout
    rows = {}
    for line in result.stdout.splitlines():
        match = ROW.match(line)
        if match and match.group(1) in PLUGINS:
            rows[match.group(1)] = [float(x) for x in match.groups()[1:]]
    assert set(rows) == set(PLUGINS), result.stdout
    for b1, b8, ratio in rows.values():
        assert b1 > 0 and b8 > 0
        assert ratio == pytest.approx(b8 / b1, abs=0.01 + 0.01 * ratio)
    # and the JSON holds the same figures
    figures = json.loads(out.read_text())
    assert figures["batch_sizes"] == [1, 8] and figures["skipped"] == {}
    for entry in figures["results"]:
        b1, b8, _ = rows[entry["plugin"]]
        assert entry["crops_per_s"]["1"] == pytest.approx(b1, abs=0.051)
        assert entry["crops_per_s"]["8"] == pytest.approx(b8, abs=0.051)


def test_an_unknown_plugin_is_refused(repo_root: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lensflow", "bench", "classifiers", "--plugin", "nope"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "nope" in result.stdout + result.stderr
