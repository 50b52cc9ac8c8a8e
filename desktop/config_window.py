"""The configuration window: edge configs and the pipeline DAG as two tabs.

``Edge configs`` is :class:`~lensflow.desktop.config_editor.ConfigEditor` on the API (each
edge's current config, validate, publish, each edge's ack and online state); ``Pipeline DAG``
is :class:`~lensflow.desktop.pipeline_editor.PipelineEditor` on the API's active pipeline
version, drawn beside its YAML, validated by the API and published through it
(``/v1/pipelines``); ``Rollouts`` is :class:`~lensflow.desktop.rollout_panel.RolloutPanel`
(a canary rollout's edges, states and health, Promote and Roll back). They load when the
window is first shown. The main window keeps one such
window per connection and raises it again when asked.
"""

from __future__ import annotations

from typing import Protocol

from PySide6.QtCore import Qt
from PySide6.QtGui import QCloseEvent, QShowEvent
from PySide6.QtWidgets import QTabWidget, QVBoxLayout, QWidget

from lensflow.desktop.config_editor import REFRESH_MS, ConfigEditor
from lensflow.desktop.edge_configs import ConfigApi
from lensflow.desktop.pipeline_api import PipelineApi
from lensflow.desktop.pipeline_editor import PipelineEditor
from lensflow.desktop.rollout_panel import RolloutApi, RolloutPanel
from lensflow.desktop.workers import Runner


class WindowApi(ConfigApi, PipelineApi, RolloutApi, Protocol):
    """What the pages need of the API (:class:`lensflow.desktop.client.ApiClient` is one)."""


class ConfigWindow(QWidget):
    """A top-level window with the edge config and pipeline pages as tabs.

    Attributes:
        configs: The edge config page.
        pipeline: The pipeline DAG page.
        rollouts: The canary rollouts page.
        tabs: The tab widget (``configs`` first).

    """

    def __init__(
        self,
        api: WindowApi,
        *,
        runner: Runner,
        refresh_ms: int = REFRESH_MS,
        parent: QWidget | None = None,
    ) -> None:
        """Build both pages; they load when the window is first shown.

        Args:
            api: The API client.
            runner: Where the calls run (the main window's).
            refresh_ms: Edge table refresh period; 0 turns the timer off.
            parent: The Qt parent (a window of its own either way).

        """
        super().__init__(parent)
        self.setWindowTitle("lensflow · configuration")
        if parent is not None:
            self.setWindowFlag(Qt.WindowType.Window, True)
        self.configs = ConfigEditor(api, runner=runner, refresh_ms=refresh_ms)
        self.pipeline = PipelineEditor(api=api, runner=runner)
        self.rollouts = RolloutPanel(api, runner=runner)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.configs, "&Edge configs")
        self.tabs.addTab(self.pipeline, "&Pipeline DAG")
        self.tabs.addTab(self.rollouts, "&Rollouts")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.tabs)
        self._started = False
        self.resize(1200, 760)

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt API
        """Load edges, configs and the active pipeline (restart the refresh timer) when shown."""
        super().showEvent(event)
        if not self._started:
            self._started = True
            self.configs.start()
            self.pipeline.load_active()
            self.rollouts.refresh()
        elif self.configs.refresh_ms > 0:
            self.configs.refresh_edges()
            self.configs.timer.start()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt API
        """Stop refreshing the edge table while hidden."""
        self.configs.timer.stop()
        super().closeEvent(event)

    def stop(self) -> None:
        """Stop the refresh timer for good (the connection is going away)."""
        self.configs.timer.stop()
