"""S3 test helpers: one real moto_server per session, a fresh bucket per test, both stores as one.

``moto_s3`` runs ``moto_server`` (:class:`~lensflow.services.moto_s3.MotoS3Server`) as a real
process on a free loopback port: the stores talk real HTTP to it through boto3. Credentials
are dummies, set in the environment by ``s3_env`` for one test only (monkeypatch), which is
where boto3's chain finds them in production too.

What moto cannot show: it checks no signatures nor policies (any key works, a presigned URL is
not verified), it keeps everything in memory (nothing durable, a restart loses every
bucket), and its consistency and throttling are not those of AWS S3 or MinIO.

``crop_backend`` parametrises a test over both crop stores (``folder`` and ``s3``), with the
few checks a spec needs that look behind the interface (which objects exist, whether one was
rewritten).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from lensflow.cloud.storage import CropStore, FolderCropStore, open_crop_store
from lensflow.cloud.storage.crops import S3CropStore
from lensflow.services.moto_s3 import MotoS3Server
from lensflow.shared.config.cloud import FolderCropStoreConfig, S3CropStoreConfig

DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "lensflow-test",
    "AWS_SECRET_ACCESS_KEY": "lensflow-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/nonexistent/lensflow-test-aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/lensflow-test-aws-credentials",
    "AWS_EC2_METADATA_DISABLED": "true",
}
"""Dummy credentials and no profile files: boto3 never looks at the host's own."""


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3Server]:
    """A moto_server on a free loopback port for the whole session."""
    with MotoS3Server(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Dummy S3 credentials in the environment, for this test only."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in DUMMY_ENV.items():
        monkeypatch.setenv(name, value)
    return dict(DUMMY_ENV)


def admin_client(endpoint: str) -> Any:
    """A boto3 client for the test's own checks, with the dummy credentials passed in."""
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=DUMMY_ENV["AWS_DEFAULT_REGION"],
        aws_access_key_id=DUMMY_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_ENV["AWS_SECRET_ACCESS_KEY"],
    )


def new_bucket(endpoint: str) -> str:
    """Create a bucket with a fresh name; its name."""
    name = f"lensflow-{uuid.uuid4().hex[:12]}"
    admin_client(endpoint).create_bucket(Bucket=name)
    return name


def s3_store_config(server: MotoS3Server, **options: Any) -> S3CropStoreConfig:
    """An ``s3`` crop store config on a new bucket of ``server`` (one try per request)."""
    return S3CropStoreConfig(
        bucket=new_bucket(server.endpoint),
        endpoint=server.endpoint,
        max_attempts=1,
        timeout_s=5,
        **options,
    )


@dataclass
class CropBackend:
    """A crop store under test, with what a spec checks behind its interface."""

    kind: str
    config: FolderCropStoreConfig | S3CropStoreConfig
    store: CropStore

    def stored(self) -> list[str]:
        """Every object or file the store holds (stray temporary files included)."""
        if isinstance(self.store, FolderCropStore):
            root = self.store.root
            return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
        assert isinstance(self.store, S3CropStore)
        location = self.store.location
        listing = location.client.list_objects_v2(Bucket=location.bucket)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def mark(self, sha256: str) -> None:
        """Mark the stored crop so that a rewrite of it would show (the object is kept)."""
        if isinstance(self.store, FolderCropStore):
            os.utime(self.store.path(sha256), ns=(1_000_000_000, 1_000_000_000))
            return
        assert isinstance(self.store, S3CropStore)
        location, key = self.store.location, self.store.key(sha256)
        location.client.copy_object(
            Bucket=location.bucket,
            Key=key,
            CopySource={"Bucket": location.bucket, "Key": key},
            Metadata={"mark": "1"},
            MetadataDirective="REPLACE",
        )

    def is_marked(self, sha256: str) -> bool:
        """Whether the crop is still the one :meth:`mark` marked (not rewritten since)."""
        if isinstance(self.store, FolderCropStore):
            return self.store.path(sha256).stat().st_mtime_ns == 1_000_000_000
        assert isinstance(self.store, S3CropStore)
        location = self.store.location
        head = location.client.head_object(Bucket=location.bucket, Key=self.store.key(sha256))
        return bool(head.get("Metadata", {}).get("mark") == "1")


@pytest.fixture(params=["folder", "s3"])
def crop_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CropBackend]:
    """Each crop store in turn: a folder in tmp_path, an S3 bucket on the session's moto."""
    config: FolderCropStoreConfig | S3CropStoreConfig
    if request.param == "folder":
        config = FolderCropStoreConfig(path=str(tmp_path / "crops"))
    else:
        request.getfixturevalue("s3_env")
        config = s3_store_config(request.getfixturevalue("moto_s3"))
    store = open_crop_store(config)
    try:
        yield CropBackend(kind=request.param, config=config, store=store)
    finally:
        store.close()
