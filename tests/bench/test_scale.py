"""``lensflow bench scale`` in small: 1 and 2 real worker processes, a kill, every crop once.

The command runs as a user runs it, with a private RabbitMQ (MQTT plugin), SQLite files and
the real EfficientNet-Lite0; the ratio is printed and checked to be a number, not against
the 1.8 target (two shared cores make a short run's ratio noise).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lensflow.bench.scale_workers import parse_log, steady_rate

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CROPS = 120


def _line(at: str, message: str) -> str:
    return json.dumps({"time": f"2026-01-01T00:00:{at}+00:00", "message": message})


def test_steady_rate_counts_only_while_every_worker_consumes() -> None:
    # given two worker logs: w1 up at 0 s, w2 up at 1 s; w1 runs out of crops at 4 s
    commit = "crop stored crop_id={} topic=t worker=w redelivered=False"
    first = parse_log(
        "\n".join(
            [_line("00", "amqp up consumer=w1 generation=1")]
            + [_line(f"{s:02d}", commit.format(f"a{s}")) for s in (1, 2, 3, 4)]
        )
    )
    second = parse_log(
        "not json: a traceback line\n"
        + "\n".join(
            [_line("01", "amqp up consumer=w2 generation=1")]
            + [_line(f"{s:02d}", commit.format(f"b{s}")) for s in (2, 3, 4, 5)]
            + [_line("05", "crop duplicate crop_id=a4 topic=t worker=w redelivered=True")]
        )
    )
    # when the steady window is taken
    crops, seconds = steady_rate([first, second])
    # then it runs from 1 s (both up) to 4 s (w1's last commit): w1's 2,3,4 and w2's 2,3,4
    assert (crops, seconds) == (6, 3.0)
    assert [c.outcome for c in second.commits][-1] == "duplicate"
    assert second.commits[-1].redelivered
    assert steady_rate([]) == (0, 0.0)


def test_bench_scale_stores_every_crop_once_with_one_and_two_workers_and_a_kill(
    repo_root: Path, tmp_path: Path
) -> None:
    # given a small run: 120 crops a phase, published over MQTT before the workers start
    out = tmp_path / "scale.json"
    command = [sys.executable, "-m", "lensflow", "bench", "scale", "--crops", str(CROPS)]
    command += ["--json", str(out)]
    # when the benchmark runs (1 worker, 2 workers, 2 workers with one SIGKILLed)
    result = subprocess.run(
        command,
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    # then it succeeds and prints the ratio as a number
    assert result.returncode == 0, result.stdout + result.stderr
    printed = re.search(r"2 workers / 1 worker: (\d+\.\d+) \(target >= 1\.80\)", result.stdout)
    assert printed, result.stdout
    document = json.loads(out.read_text())
    ratio = document["ratio"]["value"]
    assert math.isfinite(ratio) and ratio > 0
    assert float(printed.group(1)) == pytest.approx(ratio, abs=0.006)
    # and every phase holds each published crop exactly once, with one ok result each
    assert document["ok"] is True
    phases = {phase["name"]: phase for phase in document["phases"]}
    assert set(phases) == {"1 worker", "2 workers", "2 workers, 1 SIGKILLed"}
    for name, phase in phases.items():
        assert phase["problems"] == [], name
        assert phase["stored_rows"] == phase["distinct_crop_ids"] == CROPS, name
        assert phase["result_rows"] == CROPS and phase["results_not_ok"] == 0, name
        assert phase["missing"] == phase["dead_letters"] == phase["left_in_queue"] == 0, name
    assert phases["1 worker"]["per_s"] > 0 and phases["2 workers"]["per_s"] > 0
    assert all(count > 0 for count in phases["2 workers"]["by_worker"].values())
    # and the killed worker's unacknowledged crops went to the survivor
    killed = phases["2 workers, 1 SIGKILLed"]
    assert killed["exit_codes"] == {"w1": -9, "w2": 0}
    assert 0 < killed["stored_at_kill"] < CROPS
    assert killed["redelivered"] > 0
    # (a crop the victim committed and acked just before the kill may miss its log line)
    assert CROPS - 8 <= sum(killed["by_worker"].values()) <= CROPS
