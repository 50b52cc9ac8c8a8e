"""The replay dialog against a served API over real crops: the report before "Activate".

The API holds what the demo's detector and DAG made of its inputs; the operator replays a
version of the demo DAG without the vehicle-type node (the issue's scenario): the dialog shows
the node as removed with every vehicle newly skipped, the other nodes unchanged, and only then
activates.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from lensflow.desktop.client import ApiClient
from lensflow.desktop.replay_dialog import ReplayDialog
from lensflow.desktop.workers import Runner
from tests.support.review_api import ReviewApi
from tests.support.review_real import EMBEDDING_NODE

ROOT = Path(__file__).resolve().parents[2]
WAIT_MS = 120_000
VEHICLE_NODE = "vehicle_type_classification"
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReviewApi]:
    with ReviewApi(tmp_path_factory.mktemp("replay-api"), search_node=EMBEDDING_NODE) as served:
        served.seed_detected()
        yield served


def without_vehicles() -> str:
    document = yaml.safe_load((ROOT / "configs" / "demo" / "pipeline.yaml").read_text())
    document["pipeline"] = [n for n in document["pipeline"] if n["name"] != VEHICLE_NODE]
    return yaml.safe_dump(document, sort_keys=False)


def test_the_report_shows_what_would_change_before_activation(
    qtbot: QtBot, api: ReviewApi, tmp_path: Path
) -> None:
    runner = Runner(threads=1)
    with ApiClient(api.base_url, key=api.tokens["operator"]) as client:
        version = client.create_pipeline(without_vehicles())
        dialog = ReplayDialog(client, version, runner=runner, limit=200)
        qtbot.addWidget(dialog)
        dialog.show()

        with qtbot.waitSignal(dialog.reported, timeout=WAIT_MS) as ended:
            dialog.start()

        job = ended.args[0]
        assert job is not None and job.state == "done", job
        rows = {
            dialog.nodes.item(r, 0).text(): [
                int(dialog.nodes.item(r, c).text()) for c in range(1, 6)
            ]
            for r in range(dialog.nodes.rowCount())
        }
        removed = rows[f"{VEHICLE_NODE} (removed)"]
        vehicles = job.report["nodes"][VEHICLE_NODE]
        assert removed[3] == vehicles["newly_skipped"] > 0, "every vehicle is newly skipped"
        assert rows["tshirt_color_classification"][1] == 0, "shirt colours do not change"
        assert version.id not in [v.id for v in client.pipelines(active=True)], "not yet active"
        dialog.grab().save(str(tmp_path / "replay.png"))

        with qtbot.waitSignal(dialog.activated, timeout=WAIT_MS):
            qtbot.mouseClick(dialog.activate_button, Qt.MouseButton.LeftButton)  # type: ignore[no-untyped-call]
        assert client.pipelines(name=version.name, active=True)[0].id == version.id
    runner.wait()
