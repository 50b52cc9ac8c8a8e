"""``lensflow cloud worker``: a bad config or pipeline is reported with where, and exits 1.

(The worker running for real under this command is in ``test_worker_crash`` and
``test_worker_amqp``.)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lensflow.cli.cloud import app
from tests.support.worker import mqtt_intake, write_cloud_config


@pytest.fixture(autouse=True)
def keep_root_logging() -> Iterator[None]:
    """The command sets up the root logger for its process; put the test process's back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["worker", *args])
    return result.exit_code, result.output


def test_an_unknown_config_key_is_reported_with_its_line(tmp_path: Path) -> None:
    # given a cloud config with a misspelt key on line 2
    config = tmp_path / "cloud.yaml"
    config.write_text("pipeline: p.yaml\nmax_mesage_bytes: 10\n", encoding="utf-8")

    # when the worker starts, then it names the file, the line and the key, and exits 1
    code, output = run("--config", str(config))
    assert code == 1
    assert f"{config}:2" in output
    assert "max_mesage_bytes" in output


def test_an_invalid_pipeline_is_reported_before_anything_runs(tmp_path: Path) -> None:
    # given a pipeline whose node uses a classifier nobody registered
    (tmp_path / "pipeline.yaml").write_text(
        "version: 1\npipeline:\n  - name: a\n    class: no_such_plugin\n", encoding="utf-8"
    )
    config = write_cloud_config(
        tmp_path,
        db_url=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        intake=mqtt_intake(1883, client_id="w-cli"),
    )

    # when the worker starts, then the pipeline's file and line are reported
    code, output = run("--config", str(config))
    assert code == 1
    assert f"{tmp_path / 'pipeline.yaml'}:4" in output
    assert "no_such_plugin" in output


def test_an_unknown_plugins_module_is_reported(tmp_path: Path) -> None:
    config = write_cloud_config(
        tmp_path,
        db_url=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        intake=mqtt_intake(1883, client_id="w-cli"),
    )
    code, output = run("--config", str(config), "--plugins", "no.such.module")
    assert code == 1
    assert "cloud worker cannot start" in output
    assert "no.such.module" in output
