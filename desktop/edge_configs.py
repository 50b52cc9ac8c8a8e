"""Which config an edge runs, as the cloud knows it; and the question asked before publishing.

:func:`current_config` asks the API for one edge (``GET /v1/edges/{site}/{agent_id}``) and
the text of its config (``GET /v1/configs/{id}``): the version assigned to it, else a stored
version whose hash is the one the edge reports applied, else none (the edge runs its local
file, whose text the cloud never saw). The editor starts from that text.

:func:`publish_question` builds the confirmation naming every target edge; publishing to no
edge is refused before any question (nothing selected means nothing published).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from PySide6.QtWidgets import QMessageBox, QWidget

from lensflow.desktop.api_types import (
    Assignment,
    ConfigIssue,
    ConfigValidation,
    ConfigVersion,
    EdgeInfo,
)

MAX_VERSIONS_SCANNED = 500
"""How many stored versions are compared with an unassigned edge's applied hash."""
MAX_NAMED = 12
"""Edges named one by one in the publish question; the rest are counted."""

_ACK = {
    "applied": "applied by the edge",
    "pending": "assigned, not acknowledged by the edge yet",
    "rejected": "assigned, but the edge rejected it",
}


class EdgeConfigApi(Protocol):
    """What :func:`current_config` needs of the API (``ApiClient`` is one)."""

    def edge(self, site: str, agent_id: str) -> EdgeInfo:
        """One edge."""

    def config(self, version_id: int) -> ConfigVersion:
        """One config version with its text."""

    def configs(self, *, before: int | None = None, limit: int = 50) -> list[ConfigVersion]:
        """Config versions, newest first."""


@dataclass(frozen=True)
class EdgeCurrent:
    """An edge and the stored config version it runs (None: the cloud has no text of it).

    Attributes:
        edge: The edge as the API answered it.
        version: The version to start editing from, if the cloud has one.
        summary: One line for the operator: which version and why that one.

    """

    edge: EdgeInfo
    version: ConfigVersion | None
    summary: str


def edge_name(edge: tuple[str, str] | EdgeInfo) -> str:
    """``site/agent_id``."""
    site, agent = (edge.site, edge.agent_id) if isinstance(edge, EdgeInfo) else edge
    return f"{site}/{agent}"


def current_config(api: EdgeConfigApi, site: str, agent_id: str) -> EdgeCurrent:
    """The config version edge ``site/agent_id`` runs (or is meant to run); call off the UI thread.

    Raises:
        ApiError: If the API cannot be asked (the edge or version is unknown, unreachable...).

    """
    edge = api.edge(site, agent_id)
    name = edge_name(edge)
    if edge.desired is not None:
        version = api.config(edge.desired.config_version_id)
        ack = _ACK[edge.desired.ack_status]
        error = f" ({edge.desired.error})" if edge.desired.error else ""
        return EdgeCurrent(edge, version, f"{name}: version #{version.id}, {ack}{error}.")
    applied = edge.applied_config_hash
    if applied:
        for version in _versions(api):
            if version.config_hash == applied:
                return EdgeCurrent(
                    edge, version, f"{name}: version #{version.id} (the edge reports its hash)."
                )
    local = f" (hash {applied.removeprefix('sha256:')[:12]})" if applied else ""
    return EdgeCurrent(
        edge,
        None,
        f"{name} has no config from the cloud: it runs its local file{local}, whose text the "
        "cloud does not have. Write the config here, or load a stored version.",
    )


def _versions(api: EdgeConfigApi) -> list[ConfigVersion]:
    """Stored versions, newest first, up to :data:`MAX_VERSIONS_SCANNED`."""
    found: list[ConfigVersion] = []
    before: int | None = None
    while len(found) < MAX_VERSIONS_SCANNED:
        page = api.configs(before=before, limit=100)
        found += page
        if len(page) < 100:
            break
        before = page[-1].id
    return found


def publish_question(parent: QWidget, targets: Sequence[tuple[str, str]]) -> QMessageBox:
    """The question asked before publishing to ``targets`` (at least one); not shown yet.

    It names every target (the first :data:`MAX_NAMED`, then a count). Its ``Publish to N
    edges`` button has the accept role; Cancel is the default and the Escape button, so an
    Enter pressed by habit publishes nothing.
    """
    names = [edge_name(target) for target in targets]
    shown = ", ".join(names[:MAX_NAMED])
    if len(names) > MAX_NAMED:
        shown += f" and {len(names) - MAX_NAMED} more"
    count = f"{len(names)} edge{'s' * (len(names) != 1)}"
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Question)
    box.setWindowTitle("Publish the config?")
    box.setText(f"Publish this config to {count}: {shown}?")
    box.setInformativeText(
        "A new version is stored and assigned to exactly these edges; the cloud pushes it and "
        "each edge applies or rejects it."
    )
    box.addButton(f"Publish to {count}", QMessageBox.ButtonRole.AcceptRole)
    cancel = box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(cancel)
    box.setEscapeButton(cancel)
    return box


class ConfigApi(EdgeConfigApi, Protocol):
    """What the editor needs of the API (:class:`lensflow.desktop.client.ApiClient` is one)."""

    def validate_config(self, text: str) -> ConfigValidation:
        """Validate a config text."""

    def create_config(self, text: str, *, comment: str | None = None) -> ConfigVersion:
        """Store a new version."""

    def assign_config(self, version_id: int, edges: Sequence[tuple[str, str]]) -> list[Assignment]:
        """Assign a version to edges."""

    def edges(self) -> list[EdgeInfo]:
        """Every known edge."""


def count_problems(issues: Sequence[ConfigIssue]) -> str:
    """How many problems a config has, and on which lines, in a sentence."""
    lines = sorted({i.line for i in issues if i.line is not None})
    where = f" (lines {', '.join(map(str, lines))})" if lines else ""
    return f"{len(issues)} problem{'s' * (len(issues) != 1)} in the config{where}."
