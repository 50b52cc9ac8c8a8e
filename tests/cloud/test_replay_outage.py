"""A replay whose candidate needs an inference server that is down fails saying so.

The crops are not at fault: the job's error names the outage and says to replay again once
the service is back, and no report (no per-crop errors) is kept.
"""

from __future__ import annotations

from pathlib import Path

from tests.cloud.test_replay import V1, finished, seed_crops, store_version
from tests.support.api import running_api
from tests.support.plugins import make_registry


def test_a_replay_during_an_inference_outage_fails_saying_to_replay_again(
    tmp_path: Path,
) -> None:
    # given stored crops and a candidate with a node on an inference server that stays down
    registry = make_registry()
    db_url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    with running_api(db_url, tmp_path, registry=registry) as api:
        seed_crops(api, registry, tmp_path)
        params = {"unavailable_calls": 1_000_000}
        node = {"name": "remote", "class": "remote_brightness", "params": params}
        version_id = store_version(api, {**V1, "pipeline": [*V1["pipeline"], node]})

        # when it is replayed
        job = finished(
            api, api.post(f"/v1/pipelines/{version_id}/replay", who="operator").json()["id"]
        )

    # then the job failed on the outage, saying what to do, with no report
    assert job["state"] == "failed"
    assert "inference service" in job["error"] and "replay again" in job["error"]
    assert job["report"] is None
