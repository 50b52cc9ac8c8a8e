"""``lensflow broker acl``: the broker ACL from edge configs, and what it refuses."""

from __future__ import annotations

from pathlib import Path

import typer
import yaml
from typer.testing import CliRunner

from lensflow.cli.broker import app as broker_app

# registered in the CLI as in lensflow/cli/__init__.py: app.add_typer(broker_app, name="broker")
cli = typer.Typer()
cli.add_typer(broker_app, name="broker")


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["broker", *args])
    return result.exit_code, result.stdout, result.stderr


def edge_config(folder: Path, repo_root: Path, *, agent_id: str, cameras: list[str]) -> Path:
    """A copy of the shipped edge config with another agent id and cameras."""
    data = yaml.safe_load((repo_root / "configs" / "edge.yaml").read_text())
    source = data["cameras"][0]["source"]
    data["agent_id"] = agent_id
    data["cameras"] = [{"name": name, "source": source} for name in cameras]
    path = folder / f"{agent_id}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_acl_of_the_shipped_edge_config_is_the_shipped_acl(repo_root: Path) -> None:
    code, out, err = run("acl", str(repo_root / "configs" / "edge.yaml"))

    assert code == 0, err
    assert out == (repo_root / "configs" / "mosquitto.acl").read_text()
    assert "set mqtt.username: edge-1@demo-site" in err


def test_agents_only_prints_the_blocks_to_append(repo_root: Path, tmp_path: Path) -> None:
    path = edge_config(tmp_path, repo_root, agent_id="edge-2", cameras=["dock"])

    code, out, err = run("acl", "--agents-only", str(path))

    assert code == 0, err
    assert out.startswith("# agent edge-2 of site demo-site, cameras dock\nuser edge-2@demo-site\n")
    assert "lensflow-cloud" not in out


def test_two_agents_with_one_camera_name_are_an_error(repo_root: Path, tmp_path: Path) -> None:
    # given a second agent of the shipped config's site that also has a camera "lobby"
    second = edge_config(tmp_path, repo_root, agent_id="edge-2", cameras=["lobby"])

    code, out, err = run("acl", str(repo_root / "configs" / "edge.yaml"), str(second))

    assert code == 1
    assert out == ""
    assert "both be allowed lensflow/v1/demo-site/lobby/crops" in err


def test_an_invalid_edge_config_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("site: s\nagent_id: a\ncolour: red\n")

    code, _, err = run("acl", str(path))

    assert code == 1
    assert "edge.yaml:3" in err
