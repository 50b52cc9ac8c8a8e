"""Where lensflow finds what it ships and keeps what it makes, from any working folder.

* **Shipped files** (the model manifest, example configs, the demo's configs and pipeline, the
  broker config) are package data under ``lensflow/configs``; :func:`shipped_config` finds
  them in an installed wheel as in a clone. ``$LENSFLOW_HOME/configs/<name>``, when it
  exists, takes precedence: one setting points every command at a site's own files.
* **The model cache** is ``$LENSFLOW_MODEL_CACHE``, else ``$LENSFLOW_HOME/models``, else the
  user's cache folder (``~/.cache/lensflow/models`` on Linux) — never the working folder.
  The repository's ``make demo`` and ``make test`` set ``LENSFLOW_MODEL_CACHE=var/models``.

Nothing here reads the environment at import time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import platformdirs

from lensflow.shared.errors import ConfigError, ConfigIssue

HOME_ENV = "LENSFLOW_HOME"
"""A folder holding a site's ``configs/`` (overriding the shipped ones) and ``models/``."""
CACHE_ENV = "LENSFLOW_MODEL_CACHE"
"""The model cache folder, overriding the default."""

MANIFEST = "models.yaml"
"""The shipped model manifest's name under ``configs/``."""


def _home(environ: Mapping[str, str]) -> Path | None:
    value = environ.get(HOME_ENV, "").strip()
    return Path(value).expanduser() if value else None


def shipped_configs_dir() -> Path:
    """The ``configs`` folder shipped inside the lensflow package."""
    return Path(str(resources.files("lensflow") / "configs"))


def shipped_config(name: str, *, environ: Mapping[str, str] | None = None) -> Path:
    """A shipped config file by its name under ``configs/`` (e.g. ``demo/pipeline.yaml``).

    Args:
        name: The path under ``configs/``.
        environ: The environment to read; ``os.environ`` when None.

    Returns:
        ``$LENSFLOW_HOME/configs/<name>`` when that file exists, else the shipped one.

    Raises:
        ConfigError: Neither exists (the name is wrong, or the package is incomplete).

    """
    env = os.environ if environ is None else environ
    home = _home(env)
    if home is not None and (home / "configs" / name).is_file():
        return home / "configs" / name
    path = shipped_configs_dir() / name
    if not path.is_file():
        available = sorted(
            str(p.relative_to(shipped_configs_dir()))
            for p in shipped_configs_dir().rglob("*")
            if p.is_file()
        )
        message = f"expected a shipped config named {name!r}, got none; shipped: "
        raise ConfigError([ConfigIssue(message + ", ".join(available))])
    return path


def default_manifest(*, environ: Mapping[str, str] | None = None) -> Path:
    """The model manifest commands use when none is given (see :func:`shipped_config`)."""
    return shipped_config(MANIFEST, environ=environ)


def model_cache_dir(*, environ: Mapping[str, str] | None = None) -> Path:
    """The model cache folder (not created here); see the module docstring for the order."""
    env = os.environ if environ is None else environ
    value = env.get(CACHE_ENV, "").strip()
    if value:
        return Path(value).expanduser()
    home = _home(env)
    if home is not None:
        return home / "models"
    return Path(platformdirs.user_cache_dir("lensflow")) / "models"
