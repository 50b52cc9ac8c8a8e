"""Compose file, Dockerfiles and the deployment's config files, checked offline.

The compose file is parsed by compose-spec (bindings of the Rust compose_spec crate, which
rejects unknown keys and bad values) after compose's own variable interpolation; the configs
by the real pydantic schemas with the environment each service sets; the Dockerfiles by
dockerfile-parse, against the repository (COPY sources, extras) and the lensflow CLI.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pika
import pytest
import yaml
from compose_spec import PyOptions
from dockerfile_parse import DockerfileParser

from lensflow.services.rabbitmq import RabbitNode
from lensflow.shared.config import load_cloud_config, load_edge_config
from lensflow.shared.config.cloud import AmqpIntake, S3CropStoreConfig
from tests.deploy.support import (
    COMPOSE,
    DEPLOY,
    DOCKERFILES,
    ROOT,
    env_example,
    interpolate,
    parse_cli,
)
from tests.support.rabbit import rabbit_node  # noqa: F401 - fixture

CLOUD_SERVICES = ("api", "worker", "queue-setup")


def _compose(text: str | None = None) -> dict[str, Any]:
    source = COMPOSE.read_text() if text is None else text
    parsed = PyOptions(apply_merge=True).from_yaml(interpolate(source, env_example()))
    parsed.validate()
    return parsed.to_dict()


def _instructions(path: Path) -> list[dict[str, Any]]:
    with path.open("rb") as file:
        return [
            i for i in DockerfileParser(fileobj=file).structure if i["instruction"] != "COMMENT"
        ]


def _mounted(service: dict[str, Any], target: str) -> Path:
    for volume in service["volumes"]:
        source, _, rest = str(volume).partition(":")
        if rest.split(":")[0] == target:
            return Path(DEPLOY, source).resolve()
    raise AssertionError(f"nothing mounted at {target}")


def test_compose_file_is_valid() -> None:
    services = _compose()["services"]
    assert {"rabbitmq", "postgres", "api", "worker", "edge"} <= set(services)
    assert services["worker"]["deploy"]["replicas"] == 2


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("    restart: unless-stopped\n", "    restartt: unless-stopped\n"),  # unknown key
        ("condition: service_healthy", "condition: service_happy"),  # bad enum value
        ("interval: 10s", "interval: soon"),  # bad duration
    ],
)
def test_compose_validation_rejects_a_broken_copy(old: str, new: str) -> None:
    text = COMPOSE.read_text()
    assert old in text
    with pytest.raises(ValueError):
        _compose(text.replace(old, new, 1))


def test_compose_needs_the_passwords_from_deploy_env() -> None:
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
        interpolate(COMPOSE.read_text(), {})


def test_compose_references_resolve() -> None:
    compose = _compose()
    services, volumes = compose["services"], set(compose["volumes"])
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if rule["condition"] == "service_healthy":
                assert "test" in services[dependency].get("healthcheck", {}), dependency
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                made = ("models", "triton-repository")  # by `models export` / `models triton-repo`
                if not any(part in source for part in made):
                    assert (DEPLOY / source).exists(), f"{name}: {source}"
            else:
                assert source in volumes, f"{name}: undeclared volume {source}"


def test_rabbitmq_gets_the_mqtt_plugin() -> None:
    rabbit = _compose()["services"]["rabbitmq"]
    plugins = _mounted(rabbit, "/etc/rabbitmq/enabled_plugins").read_text()
    assert "rabbitmq_mqtt" in plugins
    assert plugins.strip().endswith("].")


@pytest.mark.parametrize("name", CLOUD_SERVICES)
def test_cloud_config_loads_with_the_service_environment(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = _compose()["services"][name]
    for variable, value in service["environment"].items():
        monkeypatch.setenv(variable, value)
    config = load_cloud_config(_mounted(service, "/etc/lensflow/cloud.yaml"))
    assert config.database.url.get_secret_value().startswith("postgresql+psycopg://")
    assert isinstance(config.intake, AmqpIntake)
    assert config.intake.url.get_secret_value().startswith("amqp://lensflow:")
    assert config.control is not None and config.control.mqtt.protocol == "v311"
    assert config.pipeline == "/etc/lensflow/pipeline.yaml"
    assert _mounted(service, config.pipeline).is_file()


def test_edge_config_loads_with_the_service_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    service = _compose()["services"]["edge"]
    for variable, value in service["environment"].items():
        monkeypatch.setenv(variable, value)
    config = load_edge_config(_mounted(service, "/etc/lensflow/edge.yaml"))
    assert config.mqtt.protocol == "v311"  # RabbitMQ's MQTT plugin
    assert config.mqtt.password is not None
    assert config.mqtt.host in _compose()["services"]


def test_deploy_pipeline_compiles() -> None:
    from typer.testing import CliRunner

    from lensflow.cli import app

    result = CliRunner().invoke(app, ["pipeline", "check", str(DEPLOY / "config/pipeline.yaml")])
    assert result.exit_code == 0, result.output


def test_compose_commands_are_lensflow_commands() -> None:
    services = _compose()["services"]
    assert services["api"]["command"][:2] == ["cloud", "api"]
    assert services["worker"]["command"][:2] == ["cloud", "worker"]
    for service in services.values():
        # without a command: the image's CMD, checked with the Dockerfile
        lensflow = service.get("image", "").startswith("lensflow-")
        if lensflow and "entrypoint" not in service and "command" in service:
            parse_cli(service["command"])


def _copy_problems(path: Path, ignore: Path) -> list[str]:
    """COPY sources (not from a stage) that are missing or that the .dockerignore leaves out."""
    allowed = [line[1:].rstrip("/") for line in ignore.read_text().splitlines() if line[:1] == "!"]
    problems = []
    for i in _instructions(path):
        if i["instruction"] != "COPY" or i["value"].startswith("--from="):
            continue
        *sources, _target = shlex.split(i["value"])
        for source in sources:
            if not (ROOT / source).exists():
                problems.append(f"COPY {source}: no such file")
            if not any(source == a or source.startswith(a + "/") for a in allowed):
                problems.append(f"COPY {source}: excluded by {ignore.name}")
    return problems


def _extras_problems(path: Path) -> list[str]:
    """pip installs of the project without constraints, or naming extras pyproject lacks."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = set(pyproject["project"]["optional-dependencies"])
    instructions = _instructions(path)
    args = dict(
        i["value"].split("=", 1)
        for i in instructions
        if i["instruction"] == "ARG" and "=" in i["value"]
    )
    installs = [
        i["value"] for i in instructions if i["instruction"] == "RUN" and '".[' in i["value"]
    ]
    problems = [] if installs else ["no pip install of the project"]
    for run in installs:
        spec = re.search(r'"\.\[([^\]]+)\]"', run)
        names = set(
            re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], spec.group(1) if spec else "").split(
                ","
            )
        )
        if "-c constraints.txt" not in run:
            problems.append("pip install without -c constraints.txt")
        if not names <= extras:
            problems.append(f"unknown extras {sorted(names - extras)}")
        if {"cpu", "gpu"} <= names:
            problems.append("cpu and gpu install the same module")
    return problems


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_copies_files_that_exist_and_are_not_ignored(path: Path) -> None:
    assert _copy_problems(path, path.parent / f"{path.name}.dockerignore") == []


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_installs_extras_that_exist_with_constraints(path: Path) -> None:
    assert _extras_problems(path) == []
    assert re.search(r"ARG ORT=cpu|ARG EXTRAS=edge,cpu", path.read_text())


def test_dockerfile_checks_catch_a_broken_dockerfile(tmp_path: Path) -> None:
    good = DEPLOY / "docker" / "Dockerfile.cloud"
    broken = tmp_path / "Dockerfile.broken"
    broken.write_text(
        good.read_text()
        .replace("COPY shared ./shared", "COPY sharde ./shared")
        .replace("ARG ORT=cpu", "ARG ORT=cuda")
        .replace("-c constraints.txt", "")
    )
    copies = _copy_problems(broken, good.parent / "Dockerfile.cloud.dockerignore")
    assert any("sharde: no such file" in p for p in copies)
    extras = _extras_problems(broken)
    assert "unknown extras ['cuda']" in extras
    assert "pip install without -c constraints.txt" in extras


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_runs_a_lensflow_command_as_a_non_root_user(path: Path) -> None:
    instructions = _instructions(path)
    final = instructions[max(i for i, x in enumerate(instructions) if x["instruction"] == "FROM") :]
    by_name = {i["instruction"]: i["value"] for i in final}
    assert yaml.safe_load(by_name["ENTRYPOINT"]) == ["lensflow"]
    assert by_name["USER"] not in ("root", "0")
    assert "CMD" in by_name["HEALTHCHECK"]
    parse_cli(yaml.safe_load(by_name["CMD"]))
    assert final[0]["value"].startswith("${PYTHON_IMAGE}")
    assert "python:3.11-slim" in path.read_text()


@pytest.mark.integration
def test_declare_queue_step_creates_the_queue_keda_watches(
    rabbit_node: RabbitNode,  # noqa: F811
    tmp_path: Path,
) -> None:
    config = tmp_path / "cloud.yaml"
    config.write_text(
        (DEPLOY / "config/cloud.yaml")
        .read_text()
        .replace("queue: lensflow.crops", "queue: deploy.t")
    )
    env = {**os.environ, "LENSFLOW_CLOUD__INTAKE__URL": rabbit_node.amqp_url}
    done = subprocess.run(
        [sys.executable, str(DEPLOY / "docker/declare_queue.py"), "--config", str(config)],
        env=env, capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    connection = pika.BlockingConnection(pika.URLParameters(rabbit_node.amqp_url))
    try:
        channel = connection.channel()
        channel.queue_declare("deploy.t", passive=True)  # raises when the queue is missing
    finally:
        connection.close()


@pytest.mark.parametrize("name", ("api", "worker"))
def test_crops_go_to_the_minio_bucket_with_its_keys(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = _compose()["services"]
    service, minio, setup = services[name], services["minio"], services["minio-setup"]
    for variable, value in service["environment"].items():
        monkeypatch.setenv(variable, value)
    store = load_cloud_config(_mounted(service, "/etc/lensflow/cloud.yaml")).crop_store

    assert isinstance(store, S3CropStoreConfig)
    assert store.endpoint == "http://minio:9000" and store.serve == "stream"
    assert f"store/{store.bucket}" in setup["command"][0]  # the bucket minio-setup creates
    # boto3's keys are MinIO's user; nothing mounts a crops volume any more
    env, minio_env = service["environment"], minio["environment"]
    assert env["AWS_ACCESS_KEY_ID"] == minio_env["MINIO_ROOT_USER"]
    assert env["AWS_SECRET_ACCESS_KEY"] == minio_env["MINIO_ROOT_PASSWORD"]
    assert not any("/var/lib/lensflow/crops" in str(v) for v in service["volumes"])


def test_the_api_starts_once_the_bucket_exists() -> None:
    depends = _compose()["services"]["api"]["depends_on"]
    assert depends["minio-setup"]["condition"] == "service_completed_successfully"
