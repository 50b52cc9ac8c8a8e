"""Common base for config models and environment overrides for secrets."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def apply_env_overrides(data: Any, *, prefix: str, environ: Mapping[str, str] | None = None) -> Any:
    """Overlay environment variables onto parsed YAML data (for secrets and deployment knobs).

    ``LENSFLOW_EDGE__MQTT__PASSWORD=s3cret`` with prefix ``LENSFLOW_EDGE__`` sets
    ``data["mqtt"]["password"]``. Keys are lower-cased; intermediate mappings are created as
    needed. Values stay strings: pydantic converts them to the declared field types.

    Args:
        data: the parsed YAML (a mapping, or None for an empty file).
        prefix: environment variable prefix, including the trailing ``__``.
        environ: the environment to read; ``os.environ`` when None.

    Returns:
        The data with overrides applied (a new top-level dict).

    """
    env = os.environ if environ is None else environ
    result: dict[str, Any] = dict(data) if isinstance(data, Mapping) else {}
    for name, value in sorted(env.items()):
        if not name.startswith(prefix) or name == prefix:
            continue
        path = [part.lower() for part in name[len(prefix) :].split("__") if part]
        target = result
        for part in path[:-1]:
            child = target.get(part)
            child = dict(child) if isinstance(child, Mapping) else {}
            target[part] = child
            target = child
        target[path[-1]] = value
    return result
