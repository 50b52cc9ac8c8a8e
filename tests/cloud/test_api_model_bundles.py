"""The model registry's API: uploads are validated, bounded and atomic; downloads resume.

A bundle here is a small artifact folder (a model file of seeded random bytes and its card):
what the registry checks is the bundle, not the model inside it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lensflow.cloud.storage.bundles import BundleStore
from lensflow.shared.model_bundle import BundleError, inspect_bundle, pack_bundle, sha256_file
from tests.support.api import ApiHarness, running_api

TAR = {"Content-Type": "application/x-tar"}


def make_artifact(folder: Path, *, size: int = 5000, **card: object) -> Path:
    """An artifact folder: ``model.onnx`` (seeded bytes) and a card declaring its hash."""
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(random.Random(7).randbytes(size))
    doc = {
        "name": "tiny",
        "format": "onnx",
        "precision": "fp32",
        "input_size": [64, 64],
        "class_names": {"0": "person", "1": "car"},
        "artifact": "model.onnx",
        "files": {"model.onnx": sha256_file(folder / "model.onnx")},
        "source": "seeded bytes",
        "license": "Apache-2.0",
        "accuracy": {"f1": 0.9, "threshold": 0.8, "passed": True},
    } | card
    (folder / "model_card.json").write_text(json.dumps(doc))
    return folder


def packed(tmp_path: Path, **card: object) -> tuple[str, bytes]:
    folder = make_artifact(tmp_path / "artifact", **card)
    sha, _ = pack_bundle(folder, tmp_path / "bundle.tar")
    return sha, (tmp_path / "bundle.tar").read_bytes()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiHarness]:
    with running_api(
        f"sqlite:///{tmp_path / 'cloud.sqlite3'}", tmp_path, max_model_bytes=64 * 1024
    ) as harness:
        yield harness


def push(api: ApiHarness, body: bytes, *, who: str) -> Any:
    """``POST /v1/models`` with a bundle as the body."""
    return api.client.post("/v1/models", content=body, headers=api.headers(who) | TAR)


def visible_files(tmp_path: Path) -> list[str]:
    folder = BundleStore(tmp_path / "crops").folder
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_a_pushed_bundle_is_listed_with_its_card(api: ApiHarness, tmp_path: Path) -> None:
    sha, body = packed(tmp_path)

    created = push(api, body, who="operator")
    again = push(api, body, who="operator")

    assert created.status_code == 201, created.text
    assert again.status_code == 200  # content-addressed: the same bytes are the same bundle
    [item] = api.get("/v1/models", who="viewer").json()["items"]
    assert item["sha256"] == sha and item["size"] == len(body)
    assert (item["name"], item["family"], item["precision"]) == ("tiny", "yolo", "fp32")
    assert item["classes"] == {"0": "person", "1": "car"}
    assert item["input_size"] == [64, 64] and item["licence"] == "Apache-2.0"
    assert item["accuracy"]["passed"] is True and item["source"] == "seeded bytes"
    assert item["created_by"] == "operator-key"
    assert visible_files(tmp_path) == [f"{sha}.tar"]


@pytest.mark.parametrize(
    ("change", "says"),
    [
        # the card declares a hash the file does not have
        ({"files": {"model.onnx": "0" * 64}}, "expected 'model.onnx' to have sha256 " + "0" * 64),
        # the card names an artifact it does not list
        ({"artifact": "other.onnx"}, "expected the artifact 'other.onnx' among the card's files"),
        # no input size
        ({"input_size": [64]}, "expected input_size to be [height, width], got [64]"),
    ],
)
def test_an_invalid_bundle_is_refused_and_leaves_nothing(
    api: ApiHarness, tmp_path: Path, change: dict[str, object], says: str
) -> None:
    folder = make_artifact(tmp_path / "artifact")
    card = json.loads((folder / "model_card.json").read_text()) | change
    (folder / "model_card.json").write_text(json.dumps(card))
    body = _raw_tar(folder)

    answer = push(api, body, who="operator")

    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "invalid_bundle"
    assert says in answer.json()["error"]["message"]
    assert api.get("/v1/models").json()["items"] == []
    assert visible_files(tmp_path) == []  # the temporary upload is gone too


def test_a_bundle_without_a_card_is_refused(api: ApiHarness, tmp_path: Path) -> None:
    folder = make_artifact(tmp_path / "artifact")
    (folder / "model_card.json").unlink()

    answer = push(api, _raw_tar(folder), who="operator")

    assert answer.status_code == 400
    assert "expected a model_card.json in the bundle" in answer.json()["error"]["message"]


def test_a_bundle_over_the_limit_is_refused_with_413_naming_it(
    api: ApiHarness, tmp_path: Path
) -> None:
    _, body = packed(tmp_path, size=80 * 1024)  # over max_model_bytes (64 KiB)

    answer = push(api, body, who="operator")

    assert answer.status_code == 413
    message = answer.json()["error"]["message"]
    assert f"at most {64 * 1024} bytes (api.max_model_bytes)" in message
    assert visible_files(tmp_path) == []


def test_only_operators_push_and_any_key_downloads(api: ApiHarness, tmp_path: Path) -> None:
    sha, body = packed(tmp_path)

    refused = push(api, body, who="viewer")
    assert refused.status_code == 403
    assert push(api, body, who="operator").status_code == 201
    assert api.client.get(f"/v1/models/{sha}/bundle").status_code == 401
    unknown = api.get(f"/v1/models/{'a' * 64}/bundle", who="viewer")
    assert unknown.status_code == 404 and "a" * 64 in unknown.json()["error"]["message"]


def test_a_download_has_the_sha256_as_etag_and_resumes_with_range(
    api: ApiHarness, tmp_path: Path
) -> None:
    sha, body = packed(tmp_path)
    push(api, body, who="operator")
    url = f"/v1/models/{sha}/bundle"

    whole = api.get(url, who="viewer")
    rest = api.get(url, who="viewer", headers={"Range": "bytes=1000-"})
    if_range = api.get(url, who="viewer", headers={"Range": "bytes=1000-", "If-Range": f'"{sha}"'})

    assert whole.status_code == 200 and whole.content == body
    assert whole.headers["etag"] == f'"{sha}"'
    assert rest.status_code == 206 and rest.content == body[1000:]
    assert rest.headers["content-range"] == f"bytes 1000-{len(body) - 1}/{len(body)}"
    assert if_range.status_code == 206 and if_range.content == body[1000:]
    past = api.get(url, who="viewer", headers={"Range": f"bytes={len(body)}-"})
    assert past.status_code == 416  # the S3 store answers the same (test_api_s3.py)
    assert past.headers["content-range"] == f"bytes */{len(body)}"


def test_inspect_refuses_links_and_undeclared_files(tmp_path: Path) -> None:
    import tarfile

    folder = make_artifact(tmp_path / "artifact")
    (folder / "extra.txt").write_text("not in the card")
    with pytest.raises(BundleError, match=r"expected the bundle to hold the card's files"):
        inspect_bundle(_write(tmp_path / "extra.tar", _raw_tar(folder)))
    linked = tmp_path / "link.tar"
    with tarfile.open(linked, "w") as tar:
        info = tarfile.TarInfo("model.onnx")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(BundleError, match="expected only regular files in the bundle"):
        inspect_bundle(linked)


def _raw_tar(folder: Path) -> bytes:
    """A tar of every file in ``folder`` as is (pack_bundle would refuse a bad card)."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(folder.iterdir()):
            tar.add(path, arcname=path.name)
    return buffer.getvalue()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
