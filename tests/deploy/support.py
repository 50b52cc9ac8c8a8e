"""Loading helpers for the deployment checks: YAML documents, compose interpolation, CLI args."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import typer
import yaml

from lensflow.cli import app

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILES = sorted(
    p for p in (DEPLOY / "docker").glob("Dockerfile.*") if p.suffix != ".dockerignore"
)
KUBERNETES_VERSION = "1.30"

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def k8s_documents() -> list[dict[str, Any]]:
    """Every resource in the files kustomization.yaml lists, in order."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return docs


def k8s_kind(docs: list[dict[str, Any]], kind: str) -> Iterator[dict[str, Any]]:
    """The documents of one kind."""
    return (doc for doc in docs if doc["kind"] == kind)


def env_example() -> dict[str, str]:
    """The variables of deploy/env.example (what a user copies to deploy/.env)."""
    values = {}
    for line in (DEPLOY / "env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` substitution.

    Raises:
        KeyError: a required (``:?``) variable is unset, with compose's error text.

    """

    def replace(match: re.Match[str]) -> str:
        name, operator, argument = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if operator in (":-", "-"):
            return argument or ""
        if operator in (":?", "?"):
            raise KeyError(f"{name}: {argument}")
        return ""

    return _VARIABLE.sub(replace, text)


def parse_cli(args: list[str]) -> dict[str, Any]:
    """Parse ``lensflow ARGS`` down to the leaf command without running it; return its params.

    Typer vendors its own click, so groups are told apart by their ``commands`` attribute.

    Raises:
        LookupError: an unknown command.
        Exception: click's usage error for an unknown option or a bad value.

    """
    command: Any = typer.main.get_command(app)
    path = ["lensflow"]
    rest = list(args)
    while hasattr(command, "commands"):
        if not rest:
            raise LookupError(f"{' '.join(path)} needs a sub-command")
        name = rest.pop(0)
        sub = command.commands.get(name)
        if sub is None:
            raise LookupError(f"no such command {' '.join([*path, name])!r}")
        command, path = sub, [*path, name]
    params: dict[str, Any] = command.make_context(" ".join(path), rest).params
    return params
