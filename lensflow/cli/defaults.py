"""The shipped files commands fall back on, so every command works from any folder.

Options that name a shipped file (``--manifest``, ``--config``, the demo's ``--pipeline``)
default to None and resolve here, through :func:`lensflow.shared.paths.shipped_config`:
``$LENSFLOW_HOME/configs/<name>`` when it exists, else the copy inside the package.
"""

from __future__ import annotations

from pathlib import Path

from lensflow.shared.paths import MANIFEST, shipped_config

SHIPPED_HELP = "(default: configs/{name} of $LENSFLOW_HOME, else the one lensflow ships)"
"""Help text suffix of such an option; format it with the file's name."""


def manifest_or_default(manifest: Path | None) -> Path:
    """``manifest``, or the shipped model manifest."""
    return manifest if manifest is not None else shipped_config(MANIFEST)


def config_or_default(config: Path | None, name: str) -> Path:
    """``config``, or the shipped config ``name`` (e.g. ``edge.yaml``)."""
    return config if config is not None else shipped_config(name)


def shipped_help(what: str, name: str) -> str:
    """Help text of an option whose default is the shipped file ``name``."""
    return f"{what} {SHIPPED_HELP.format(name=name)}."
