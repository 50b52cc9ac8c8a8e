"""Common base for config models and environment overrides for secrets."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic_settings import EnvSettingsSource
from pydantic_settings.sources.utils import parse_env_vars


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class _EnvSource(EnvSettingsSource):
    """pydantic-settings' environment source, reading a given mapping instead of os.environ."""

    def __init__(self, model: type[BaseModel], *, prefix: str, environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(
            model,  # type: ignore[arg-type]  # it reads only model_config and model_fields
            case_sensitive=False,
            env_prefix=prefix,
            env_nested_delimiter="__",
        )

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._environ, False, False, None)


def env_overrides(
    model: type[BaseModel], *, prefix: str, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The settings of ``model`` given in the environment (for secrets and deployment knobs).

    ``LENSFLOW_EDGE__MQTT__PASSWORD=s3cret`` with prefix ``LENSFLOW_EDGE__`` gives
    ``{"mqtt": {"password": "s3cret"}}`` (pydantic-settings' environment source: names are
    case-insensitive, ``__`` nests). Values stay strings: pydantic converts them to the
    declared field types. A variable with the prefix that names no top-level field is kept
    under its own name, so the strict model refuses it as an unknown key rather than it
    being silently ignored.

    Args:
        model: The config model (its top-level fields are the sections).
        prefix: Environment variable prefix, including the trailing ``__``.
        environ: The environment to read; ``os.environ`` when None.

    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = _EnvSource(model, prefix=prefix, environ=env)()
    fields = set(model.model_fields)
    for name in env:
        if name.upper().startswith(prefix.upper()) and len(name) > len(prefix):
            key = name[len(prefix) :].split("__")[0].lower()
            if key not in fields:
                values[key] = env[name]
    return values


def apply_env_overrides(
    data: Any,
    *,
    model: type[BaseModel],
    prefix: str,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Overlay :func:`env_overrides` onto parsed YAML data (the environment wins, merged deep).

    Args:
        data: The parsed YAML (a mapping, or None for an empty file).
        model: The config model the data is for.
        prefix: Environment variable prefix, including the trailing ``__``.
        environ: The environment to read; ``os.environ`` when None.

    Returns:
        A new dict: the data with the overrides merged in.

    """
    base: dict[str, Any] = dict(data) if isinstance(data, Mapping) else {}
    return _merged(base, env_overrides(model, prefix=prefix, environ=environ))


def _merged(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``top`` laid over it, mappings merged key by key."""
    result = dict(base)
    for key, value in top.items():
        below = result.get(key)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            result[key] = _merged(below, value)
        else:
            result[key] = value
    return result
