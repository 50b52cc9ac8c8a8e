"""The Rollouts page against a real API process: a canary's state and health, promote, rollback.

The control plane's MQTT side is not running: the edges' heartbeats and acks are recorded in
the API's database as it would record them (``tests/cloud/test_rollouts_live.py`` runs them
on real agents).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox
from pytestqt.qtbot import QtBot

from lensflow.cloud.control import ConfigService, RolloutService
from lensflow.cloud.control.configs import payload_hash
from lensflow.cloud.storage import ResultStore, create_engine_for
from lensflow.cloud.storage.models import utcnow
from lensflow.desktop.client import ApiClient
from lensflow.desktop.client_rollouts import Rollout
from lensflow.desktop.config_window import ConfigWindow
from lensflow.desktop.rollout_panel import COLUMNS, RolloutPanel
from lensflow.desktop.workers import Runner
from lensflow.shared.protocol import ConfigAck, StatusMessage
from tests.support.review_api import ReviewApi

pytestmark = pytest.mark.integration

SITE, AGENTS = "plant-b", ("cam-1", "cam-2")
CONFIG = (
    "detector: {{backend: onnxruntime, model: /models/{name}.onnx}}\n"
    "cameras: [{{name: lobby, source: {{type: folder, path: /data/lobby}}}}]\n"
)
WAIT_MS = 15_000


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReviewApi]:
    with ReviewApi(tmp_path_factory.mktemp("rollout-api"), search=False) as served:
        yield served


class Fleet:
    """The API's database, written as the control plane writes it."""

    def __init__(self, api: ReviewApi) -> None:
        self.engine = create_engine_for(api.url)
        self.configs = ConfigService(self.engine)
        self.rollouts = RolloutService(self.engine, configs=self.configs)

    def heartbeat(self, agent: str, config_hash: str, *, at: datetime, frames: int) -> None:
        status = StatusMessage(
            state="online",
            agent_version="0.1.0",
            applied_config_hash=config_hash,
            counters={"frames": frames, "detections": 2 * frames, "detect_errors": 0,
                      "source_failures": 0},
            timestamp=at,
        )  # fmt: skip
        ResultStore(self.engine).upsert_edge_status(site=SITE, agent_id=agent, status=status)
        self.rollouts.record_heartbeat(site=SITE, agent_id=agent, status=status)


@pytest.fixture
def fleet(api: ReviewApi) -> Iterator[Fleet]:
    fleet = Fleet(api)
    try:
        yield fleet
    finally:
        fleet.engine.dispose()


def started(api: ReviewApi, fleet: Fleet, name: str) -> tuple[Rollout, str]:
    """Both edges on a version for 10 s at 5 fps; a new version on cam-1 as a canary."""
    old = fleet.configs.create_version(CONFIG.format(name=f"{name}-old"), created_by="t")
    new = fleet.configs.create_version(CONFIG.format(name=name), created_by="t")
    fleet.configs.assign(old.id, [(SITE, a) for a in AGENTS], assigned_by="t")
    start = utcnow() - timedelta(seconds=12)
    for agent in AGENTS:
        fleet.heartbeat(agent, old.config_hash, at=start, frames=0)
        fleet.heartbeat(agent, old.config_hash, at=start + timedelta(seconds=10), frames=50)
    with ApiClient(api.base_url, key=api.tokens["operator"]) as client:
        return client.start_rollout(new.id, site=SITE, agent_id="cam-1"), new.config_hash


def window(qtbot: QtBot, api: ReviewApi) -> ConfigWindow:
    """The configuration window shown (its pages loaded), on its Rollouts tab."""
    client = ApiClient(api.base_url, key=api.tokens["operator"])
    runner = Runner(threads=2)
    shown = ConfigWindow(client, runner=runner, refresh_ms=0)
    runner.setParent(shown)  # no answer arrives once the window is gone
    qtbot.addWidget(shown)
    shown.destroyed.connect(client.close)
    with qtbot.waitSignal(shown.rollouts.loaded, timeout=WAIT_MS):
        shown.show()  # every page loads when first shown
    shown.tabs.setCurrentWidget(shown.rollouts)
    return shown


def rows(page: RolloutPanel) -> dict[str, dict[str, str]]:
    table = page.table
    cells = [
        {COLUMNS[c]: table.item(r, c).text() for c in range(table.columnCount())}
        for r in range(table.rowCount())
    ]
    return {row["Edge"]: row for row in cells}


def answer(qtbot: QtBot, page: RolloutPanel, *, names: str) -> None:
    """Check the confirmation names the edges, then accept it."""
    qtbot.waitUntil(lambda: page.confirm_box is not None and page.confirm_box.isVisible())
    box = page.confirm_box
    assert box is not None and names in box.text(), box.text()
    [button] = [b for b in box.buttons() if box.buttonRole(b) == QMessageBox.ButtonRole.AcceptRole]
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)  # type: ignore[no-untyped-call]


def test_the_canary_shows_its_health_then_promote_and_rollback_ask_naming_the_edges(
    qtbot: QtBot, api: ReviewApi, fleet: Fleet
) -> None:
    rollout, new_hash = started(api, fleet, "good")
    fleet.rollouts.record_ack(
        site=SITE, agent_id="cam-1", ack=ConfigAck(hash=new_hash, status="applied")
    )
    now = utcnow()
    fleet.heartbeat("cam-1", new_hash, at=now, frames=60)
    fleet.heartbeat("cam-1", new_hash, at=now + timedelta(seconds=10), frames=100)

    config_window = window(qtbot, api)
    page = config_window.rollouts

    assert page.current is not None and page.current.id == rollout.id
    canary = rows(page)[f"{SITE}/cam-1"]
    assert (canary["Role"], canary["State"]) == ("canary", "applied")
    assert canary["fps (before)"] == "4 (5)"
    assert canary["detections/frame (before)"] == "2 (2)"
    assert canary["errors (before)"] == "0 (0)"
    assert page.promote_button.isEnabled()

    with qtbot.waitSignal(page.changed, timeout=WAIT_MS) as promoted:
        qtbot.mouseClick(page.promote_button, Qt.MouseButton.LeftButton)  # type: ignore[no-untyped-call]
        answer(qtbot, page, names=f"Promote this rollout: {SITE}/cam-2?")
    assert promoted.args[0].state == "promoted"
    qtbot.waitUntil(lambda: f"{SITE}/cam-2" in rows(page), timeout=WAIT_MS)
    assert rows(page)[f"{SITE}/cam-2"]["State"] == "pending"

    with qtbot.waitSignal(page.changed, timeout=WAIT_MS) as rolled:
        qtbot.mouseClick(page.rollback_button, Qt.MouseButton.LeftButton)  # type: ignore[no-untyped-call]
        answer(qtbot, page, names=f"{SITE}/cam-1, {SITE}/cam-2")
    assert rolled.args[0].state == "rolled_back"
    qtbot.waitUntil(lambda: not page.rollback_button.isEnabled(), timeout=WAIT_MS)
    assert not page.promote_button.isEnabled()


def test_promoting_a_rejected_canary_shows_the_apis_refusal(
    qtbot: QtBot, api: ReviewApi, fleet: Fleet
) -> None:
    rollout, _hash = started(api, fleet, "bad")
    version = fleet.configs.get_version(rollout.config_version_id)
    assert version is not None
    ack = ConfigAck(hash=payload_hash(version.config_text), status="rejected", error="bad bundle")
    fleet.rollouts.record_ack(site=SITE, agent_id="cam-1", ack=ack)

    config_window = window(qtbot, api)
    page = config_window.rollouts
    assert rows(page)[f"{SITE}/cam-1"]["State"] == "rejected"
    assert rows(page)[f"{SITE}/cam-1"]["Reason"] == "bad bundle"

    with qtbot.waitSignal(page.failed, timeout=WAIT_MS) as failure:
        qtbot.mouseClick(page.promote_button, Qt.MouseButton.LeftButton)  # type: ignore[no-untyped-call]
        answer(qtbot, page, names="Promote this rollout")
    assert "got rejected: bad bundle" in failure.args[0]
    assert "got rejected: bad bundle" in page.summary.text()
