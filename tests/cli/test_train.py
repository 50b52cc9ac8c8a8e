"""``lensflow train head``, ``pipeline replay`` and ``pipeline activate`` against a real API.

A served ``lensflow cloud api`` holds real crops of the sample photos with their real
EfficientNet-Lite0 embeddings; an operator labels them by kind through the API, then trains,
replays and activates from the terminal, as the README shows.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from lensflow.cloud.storage.models import PipelineVersion
from tests.support.review_api import ReviewApi
from tests.support.review_real import EMBEDDING_NODE

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.slow]

BASE = ROOT / "configs" / "demo" / "pipeline.yaml"  # what stored the crops
KIND = {"person": "person", "car": "vehicle", "bus": "vehicle", "truck": "vehicle"}
KIND |= dict.fromkeys(("dog", "horse", "zebra", "giraffe", "elephant", "bird"), "animal")


def lensflow(*args: str, key: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lensflow", *args],
        cwd=ROOT,
        env={**os.environ, "LENSFLOW_API_KEY": key},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_an_operator_trains_replays_and_activates_a_head_from_the_terminal(tmp_path: Path) -> None:
    with ReviewApi(tmp_path / "api", search_node=EMBEDDING_NODE) as api:
        crops = [c for c in api.seed_detected() if c.class_name in KIND]
        text = BASE.read_text(encoding="utf-8")
        engine = create_engine(api.url)
        with Session(engine) as session:
            session.add(
                PipelineVersion(
                    name=yaml.safe_load(text)["name"],
                    yaml_text=text,
                    sha256=hashlib.sha256(text.encode()).hexdigest(),
                    created_by="worker",
                    active=True,
                )
            )
            session.commit()
        engine.dispose()
        headers = {"Authorization": f"Bearer {api.tokens['operator']}"}
        kinds = sorted({KIND[crop.class_name] for crop in crops})
        with httpx.Client(base_url=api.base_url, headers=headers, timeout=30) as client:
            for kind in kinds:
                assert (
                    client.post("/v1/label-schemas/kind/labels", json={"name": kind}).status_code
                    == 201
                )
                ids = [c.crop_id for c in crops if KIND[c.class_name] == kind]
                answer = client.post(
                    "/v1/labels", json={"crop_ids": ids, "node": "kind", "label": kind}
                )
                assert answer.status_code == 200, answer.text
        key, url = api.tokens["operator"], api.base_url

        # when the operator trains a head on the labels
        head_file = tmp_path / "head.json"
        trained = lensflow(
            "train", "head", "--node", "kind", "--embedding", EMBEDDING_NODE, "--api", url,
            "--json", str(head_file), key=key,
        )  # fmt: skip

        # then it prints the card and the candidate version, which replays and activates
        assert trained.returncode == 0, trained.stderr + trained.stdout
        head = json.loads(head_file.read_text())
        assert "held-out accuracy" in trained.stdout and "confusion" in trained.stdout
        assert f"candidate pipeline version {head['candidate']['id']}" in trained.stdout
        candidate = str(head["candidate"]["id"])
        replayed = lensflow("pipeline", "replay", candidate, "--api", url, "--limit", "20", key=key)
        assert replayed.returncode == 0, replayed.stderr + replayed.stdout
        assert "replay of version" in replayed.stdout and "kind" in replayed.stdout
        activated = lensflow("pipeline", "activate", candidate, "--api", url, key=key)
        assert activated.returncode == 0, activated.stderr
        assert "is active" in activated.stdout

        # and a head that cannot be trained says why and exits 1
        refused = lensflow(
            "train", "head", "--node", "kind", "--embedding", EMBEDDING_NODE, "--api", url,
            "--labels", kinds[0], key=key,
        )  # fmt: skip
        assert refused.returncode == 1
        assert "too_few_labels" in refused.stderr and "at least two classes" in refused.stderr
