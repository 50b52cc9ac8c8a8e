"""Configs pushed by the cloud: validate, merge with what must stay local, hash, acknowledge.

The cloud publishes the desired edge config (JSON or YAML text of an ``EdgeConfig``) on the
agent's config topic. Sections that only make sense on the device — the broker connection
(with its secrets), the spool, the identity and the metrics port — are taken from the local
file; a pushed config that tries to change them is rejected, because applying them would
need a restart. Everything else (cameras, filters, detector, crops, heartbeat) is applied
atomically by the agent. The same canonical hash identifies a config everywhere: in the
ack, in every heartbeat and in every crop's provenance.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import ValidationError

from lensflow.shared.config.edge import LOCAL_ONLY, EdgeConfig
from lensflow.shared.errors import ConfigError, ConfigIssue

MAX_CONFIG_BYTES = 256 * 1024
SECRETS = {"mqtt": "password", "registry": "key"}
"""The secret field of each local-only section: never pushed, never compared."""


def parse_pushed_config(payload: bytes, *, running: EdgeConfig) -> EdgeConfig:
    """Validate a pushed config against the running one.

    Raises:
        ConfigError: not JSON/YAML, not a valid edge config, too large, or it changes a
            local-only section; the running config stays in force.
    """
    if len(payload) > MAX_CONFIG_BYTES:
        raise _error(f"expected a config of at most {MAX_CONFIG_BYTES} bytes, got {len(payload)}")
    try:
        data = yaml.safe_load(payload.decode("utf-8"))  # JSON is YAML
    except (UnicodeDecodeError, yaml.YAMLError) as err:
        raise _error(f"expected JSON or YAML text, got unparsable bytes: {err}") from err
    if not isinstance(data, dict):
        raise _error(f"expected a mapping of config sections, got {type(data).__name__}")
    local = running.model_dump(mode="json", include=set(LOCAL_ONLY))
    for key in LOCAL_ONLY:
        if key in data and _comparable(data[key], key) != _comparable(local[key], key):
            raise _error(f"{key!r} can only change in the local config file (it needs a restart)")
    merged = {**data, **{key: getattr(running, key) for key in LOCAL_ONLY}}
    try:
        return EdgeConfig.model_validate(merged)
    except ValidationError as err:
        issues = [
            ConfigIssue(e["msg"], field=".".join(str(p) for p in e["loc"]))
            for e in err.errors(include_url=False)
        ]
        raise ConfigError(issues) from err


def _comparable(value: Any, key: str) -> Any:
    """Secrets are never pushed back and forth: compare sections without their secret."""
    if key in SECRETS and isinstance(value, dict):
        return {k: v for k, v in value.items() if k != SECRETS[key]}
    return value


def _error(message: str) -> ConfigError:
    return ConfigError([ConfigIssue(message)])
