"""``lensflow pipeline check``: the compiled DAG on success, FILE:LINE: message on errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

LENSFLOW = [sys.executable, "-m", "lensflow"]


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LENSFLOW, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


def test_check_prints_the_compiled_dag(repo_root: Path) -> None:
    result = run(
        "pipeline",
        "check",
        "configs/pipeline.yaml",
        "--plugins",
        "tests.support.plugins",
        cwd=repo_root,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.index("object_detection") < out.index("car_make_classification")
    assert "'car' in object_detection.detected_classes" in out
    assert "ok: 5 nodes, no errors" in out


def test_check_prints_file_line_for_every_error(repo_root: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "pipeline:\n"
        "  - {name: a, class: nope}\n"
        "  - name: b\n"
        "    class: edge_detection\n"
        "    depends_on: a\n"
        "    when: \"__import__('os').system('id')\"\n"
        "  - {name: c, class: edge_detection, depends_on: c}\n"
    )
    result = run("pipeline", "check", str(bad), cwd=repo_root)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith(str(bad))]
    assert sorted(int(line.split(":")[1]) for line in lines) == [2, 6, 7], result.stderr


def test_check_of_a_missing_file_fails_cleanly(repo_root: Path, tmp_path: Path) -> None:
    result = run("pipeline", "check", str(tmp_path / "missing.yaml"), cwd=repo_root)
    assert result.returncode == 1
    assert "config file not found" in result.stderr
    assert "Traceback" not in result.stderr
