"""The Rollouts page of the configuration window: a canary rollout, its edges, promote, roll back.

The page lists the API's rollouts (newest first) and shows the chosen one: one row per edge it
touched with its role, state (pending, downloading, applied, rejected, with the edge's reason),
its health on the new version against its previous config (fps, detections per frame,
errors) and the model it runs now. Promote and Rollback ask first, naming the edges they
change: promote the site's (or fleet's) other edges, rollback every touched edge. Every call
runs on the :class:`~lensflow.desktop.workers.Runner`, never on the UI thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from lensflow.desktop.api_types import EdgeInfo
from lensflow.desktop.client_rollouts import Figures, Rollout, RolloutEdge
from lensflow.desktop.edge_configs import MAX_NAMED, edge_name
from lensflow.desktop.workers import Runner

COLUMNS = ("Edge", "Role", "State", "fps (before)", "detections/frame (before)",
           "errors (before)", "Model now", "Reason")  # fmt: skip


class RolloutApi(Protocol):
    """What the page needs of the API (``ApiClient`` is one)."""

    def rollouts(self, *, limit: int = 20) -> list[Rollout]:
        """Rollouts, newest first."""

    def rollout(self, rollout_id: int) -> Rollout:
        """One rollout with its edges' health."""

    def promote_rollout(self, rollout_id: int) -> Rollout:
        """Promote it."""

    def rollback_rollout(self, rollout_id: int) -> Rollout:
        """Roll it back."""

    def edges(self) -> list[EdgeInfo]:
        """Every known edge."""


def _figure(now: float | int | None, before: float | int | None) -> str:
    def show(value: float | int | None) -> str:
        return "—" if value is None else f"{value:g}"

    return f"{show(now)} ({show(before)})"


def edge_cells(edge: RolloutEdge) -> list[str]:
    """The row of one touched edge, in :data:`COLUMNS` order."""
    health = edge.health
    now: Figures | None = health.current if health else None
    before: Figures | None = health.previous if health else None
    return [
        edge_name((edge.site, edge.agent_id)),
        edge.role,
        edge.state,
        _figure(now.fps if now else None, before.fps if before else None),
        _figure(
            now.detections_per_frame if now else None,
            before.detections_per_frame if before else None,
        ),
        _figure(now.errors if now else None, before.errors if before else None),
        (edge.model_sha256 or "")[:12],
        edge.error or "",
    ]


def promote_targets(rollout: Rollout, edges: Sequence[EdgeInfo]) -> list[tuple[str, str]]:
    """The edges promote would assign: the scope's known edges the rollout has not touched."""
    touched = {(e.site, e.agent_id) for e in rollout.edges}
    return [
        (e.site, e.agent_id)
        for e in edges
        if (rollout.scope == "fleet" or e.site == rollout.site)
        and (e.site, e.agent_id) not in touched
    ]


def question(
    parent: QWidget, *, action: str, targets: Sequence[tuple[str, str]], then: str
) -> QMessageBox:
    """A confirmation naming ``targets``; Cancel is the default button. Not shown yet."""
    names = [edge_name(t) for t in targets]
    shown = ", ".join(names[:MAX_NAMED]) or "no other edge"
    if len(names) > MAX_NAMED:
        shown += f" and {len(names) - MAX_NAMED} more"
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Question)
    box.setWindowTitle(f"{action} the rollout?")
    box.setText(f"{action} this rollout: {shown}?")
    box.setInformativeText(then)
    box.addButton(action, QMessageBox.ButtonRole.AcceptRole)
    cancel = box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(cancel)
    box.setEscapeButton(cancel)
    return box


class RolloutPanel(QWidget):
    """The rollouts page.

    Signals:
        loaded: A rollout was shown (with its health).
        changed: Promote or rollback went through (the rollout as the API answered it).
        failed: A call failed (the message shown).

    """

    loaded = Signal(object)
    changed = Signal(object)
    failed = Signal(str)

    def __init__(
        self, api: RolloutApi, *, runner: Runner | None = None, parent: QWidget | None = None
    ) -> None:
        """Build the page; :meth:`refresh` loads it (calls run on ``runner``, else its own)."""
        super().__init__(parent)
        self.api, self.runner = api, runner or Runner(threads=2, parent=self)
        self.current: Rollout | None = None
        self.edges: list[EdgeInfo] = []
        self.confirm_box: QMessageBox | None = None
        self._rollouts: list[Rollout] = []
        self.chooser = QComboBox()
        self.chooser.currentIndexChanged.connect(self._chosen)
        self.refresh_button = QPushButton("&Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        self.promote_button = QPushButton("&Promote…")
        self.promote_button.clicked.connect(self.ask_promote)
        self.rollback_button = QPushButton("Roll &back…")
        self.rollback_button.clicked.connect(self.ask_rollback)
        self.summary = QLabel("No rollout yet: start one with POST /v1/rollouts.")
        self.summary.setWordWrap(True)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        top = QHBoxLayout()
        top.addWidget(QLabel("Rollout:"))
        top.addWidget(self.chooser, 1)
        for button in (self.refresh_button, self.promote_button, self.rollback_button):
            top.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.summary)
        layout.addWidget(self.table, 1)
        self._enable()

    def refresh(self) -> None:
        """Load the rollouts and the known edges, then show the chosen (else newest) rollout."""
        chosen = self.current.id if self.current else None

        def call() -> tuple[list[Rollout], list[EdgeInfo]]:
            return self.api.rollouts(), self.api.edges()

        self.runner.submit(
            call,
            on_done=lambda got: self._listed(*got, keep=chosen),
            on_error=self._fail,
            name="rollouts",
        )

    def show_rollout(self, rollout_id: int) -> None:
        """Load one rollout with its health and show it."""
        self.runner.submit(
            lambda: self.api.rollout(rollout_id), on_done=self._show, on_error=self._fail,
            name="rollout",
        )  # fmt: skip

    def ask_promote(self) -> None:
        """Promote the shown rollout after a confirmation naming the edges it assigns."""
        rollout = self.current
        if rollout is None:
            return
        targets = promote_targets(rollout, self.edges)
        where = "its site" if rollout.scope == "site" else "the fleet"
        then = (f"Config version #{rollout.config_version_id} is assigned to the rest of {where}; "
                "the API refuses if the canary has not applied it.")  # fmt: skip
        self._ask("Promote", targets, then, lambda: self.api.promote_rollout(rollout.id))

    def ask_rollback(self) -> None:
        """Roll the shown rollout back after a confirmation naming every touched edge."""
        rollout = self.current
        if rollout is None:
            return
        targets = [(e.site, e.agent_id) for e in rollout.edges]
        then = "Each of them is assigned the config version it had before the rollout."
        self._ask("Roll back", targets, then, lambda: self.api.rollback_rollout(rollout.id))

    def _ask(
        self,
        action: str,
        targets: Sequence[tuple[str, str]],
        then: str,
        call: Callable[[], Rollout],
    ) -> None:
        box = question(self, action=action, targets=targets, then=then)
        box.accepted.connect(lambda: self._run(action, call))
        box.finished.connect(box.deleteLater)
        self.confirm_box = box
        box.open()

    def _run(self, action: str, call: Callable[[], Rollout]) -> None:
        self.promote_button.setEnabled(False)
        self.rollback_button.setEnabled(False)
        self.runner.submit(call, on_done=self._changed, on_error=self._fail, name=action)

    # -- outcomes (UI thread) -----------------------------------------------------------------

    def _listed(self, rollouts: list[Rollout], edges: list[EdgeInfo], *, keep: int | None) -> None:
        self._rollouts, self.edges = rollouts, edges
        self.chooser.blockSignals(True)
        self.chooser.clear()
        for rollout in rollouts:
            canary = edge_name((rollout.site, rollout.agent_id))
            self.chooser.addItem(
                f"#{rollout.id}: version #{rollout.config_version_id} on {canary} — {rollout.state}"
            )
        ids = [r.id for r in rollouts]
        self.chooser.setCurrentIndex(ids.index(keep) if keep in ids else 0 if ids else -1)
        self.chooser.blockSignals(False)
        self._chosen(self.chooser.currentIndex())

    def _chosen(self, row: int) -> None:
        if 0 <= row < len(self._rollouts):
            self.show_rollout(self._rollouts[row].id)

    def _show(self, rollout: Rollout) -> None:
        self.current = rollout
        self.table.setRowCount(len(rollout.edges))
        for row, edge in enumerate(rollout.edges):
            for column, text in enumerate(edge_cells(edge)):
                self.table.setItem(row, column, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
        self.summary.setText(
            f"Rollout #{rollout.id} of config version #{rollout.config_version_id}: "
            f"{rollout.state}; canary {edge_name((rollout.site, rollout.agent_id))}, "
            f"promotes to {'its site' if rollout.scope == 'site' else 'the fleet'}. "
            "Health: on the new version (on the previous config)."
        )
        self._enable()
        self.loaded.emit(rollout)

    def _changed(self, rollout: Rollout) -> None:
        self.changed.emit(rollout)
        self.current = rollout
        self.refresh()

    def _fail(self, error: BaseException) -> None:
        self.summary.setText(f"⚠ {error}")
        self._enable()
        self.failed.emit(str(error))

    def _enable(self) -> None:
        state = self.current.state if self.current else None
        self.promote_button.setEnabled(state == "canary")
        self.rollback_button.setEnabled(state in ("canary", "promoted"))
