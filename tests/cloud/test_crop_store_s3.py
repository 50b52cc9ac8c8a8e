"""The S3 crop store against a real moto_server: conditional puts, outages, refusals, config.

The behaviour both stores share is specified once, on both, in ``test_storage.py``; here is
what only the bucket has. moto checks no signatures and keeps nothing on disk (see
:mod:`tests.support.s3`): that credentials and bucket policies work is for a real MinIO or S3.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import httpx
import pytest

from lensflow.cloud.storage import StorageError, open_crop_store
from lensflow.cloud.storage.crops import Redirect, S3CropStore, crop_key
from lensflow.cloud.worker.retry import is_transient
from lensflow.services.moto_s3 import MotoS3Server
from lensflow.shared.config import load_cloud_config
from lensflow.shared.config.cloud import S3CropStoreConfig
from lensflow.shared.errors import ConfigError
from tests.support.s3 import admin_client, moto_s3, new_bucket, s3_env, s3_store_config  # noqa: F401

JPEG = b"\xff\xd8 a crop \xff\xd9"
SHA = hashlib.sha256(JPEG).hexdigest()


@pytest.fixture
def store(moto_s3: MotoS3Server, s3_env: dict[str, str]) -> S3CropStore:  # noqa: F811
    """An S3 crop store on a fresh bucket of the session's moto_server."""
    opened = open_crop_store(s3_store_config(moto_s3, prefix="site-a/"))
    assert isinstance(opened, S3CropStore)
    return opened


def put_directly(store: S3CropStore, key: str, body: bytes) -> None:
    """Another writer's object, put behind the store's back."""
    location = store.location
    admin_client(location.client.meta.endpoint_url).put_object(
        Bucket=location.bucket, Key=key, Body=body
    )


def test_keys_are_content_addressed_under_the_prefix(store: S3CropStore) -> None:
    sha = store.put(JPEG, expected_sha256=SHA)

    assert store.key(sha) == f"site-a/crops/{SHA[:2]}/{SHA[2:4]}/{SHA}.jpg"
    assert crop_key(sha, prefix="site-a/") == store.key(sha)


def test_a_put_of_an_object_another_writer_stored_is_a_no_op(store: S3CropStore) -> None:
    # given the same bytes already put by another worker
    put_directly(store, store.key(SHA), JPEG)

    # when this worker puts them: the conditional put is refused (412), which is success
    assert store.put(JPEG, expected_sha256=SHA) == SHA

    assert store.get(SHA) == JPEG


def test_other_bytes_under_a_content_address_are_a_permanent_error(store: S3CropStore) -> None:
    put_directly(store, store.key(SHA), b"not these bytes")

    with pytest.raises(
        StorageError, match=f"to hold the {len(JPEG)} bytes of its sha256, got 15"
    ) as info:
        store.put(JPEG)

    assert not is_transient(info.value)  # retrying would never help


def test_other_bytes_of_the_same_size_are_a_permanent_error(store: S3CropStore) -> None:
    # given another writer's bytes of the same size, stored with their sha256 checksum
    other = JPEG[:-1] + b"\x00"
    location = store.location
    admin_client(location.client.meta.endpoint_url).put_object(
        Bucket=location.bucket, Key=store.key(SHA), Body=other, ChecksumAlgorithm="SHA256"
    )

    # then the checksum shows it, where the size alone would not
    with pytest.raises(StorageError, match=f"to hold bytes with sha256 {SHA}, got") as info:
        store.put(JPEG)

    assert not is_transient(info.value)


def test_a_put_keeps_the_sha256_checksum_with_the_object(store: S3CropStore) -> None:
    store.put(JPEG)

    location = store.location
    head = location.client.head_object(
        Bucket=location.bucket, Key=store.key(SHA), ChecksumMode="ENABLED"
    )
    assert head["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(JPEG).digest()).decode()


def test_a_wrong_sha_is_refused_before_anything_is_sent(store: S3CropStore) -> None:
    with pytest.raises(StorageError, match="expected crop bytes with sha256 '0{64}'") as info:
        store.put_many([(JPEG, None), (b"other", "0" * 64)])

    assert not is_transient(info.value)
    assert store.exists(SHA) and not store.exists(hashlib.sha256(b"other").hexdigest())


def test_the_store_down_is_transient_and_back_it_works(
    tmp_path: Path,
    s3_env: dict[str, str],  # noqa: F811
) -> None:
    with MotoS3Server(tmp_path / "moto") as server:
        config = s3_store_config(server)
        store = open_crop_store(config)
        assert store.put(JPEG) == SHA

        server.stop()  # moto forgets everything: the bucket comes back empty below
        with pytest.raises(StorageError, match="could not put s3://") as info:
            store.put(JPEG)
        assert is_transient(info.value)  # the worker retries it with backoff
        assert isinstance(info.value.__cause__, ConnectionError)
        with pytest.raises(StorageError) as read:
            store.get(SHA)
        assert is_transient(read.value)

        server.start()
        admin_client(server.endpoint).create_bucket(Bucket=config.bucket)
        assert store.put_many([(JPEG, SHA), (b"more", None)])[0] == SHA
        assert store.get(SHA) == JPEG


def test_missing_credentials_are_named_and_transient(
    moto_s3: MotoS3Server,  # noqa: F811
    s3_env: dict[str, str],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = s3_store_config(moto_s3)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    store = open_crop_store(config)

    with pytest.raises(StorageError, match="expected S3 credentials from the environment") as info:
        store.put(JPEG)

    # every crop would fail alike: the worker holds the batch, it dead-letters none
    assert is_transient(info.value)


def test_a_missing_bucket_is_named_and_transient(
    moto_s3: MotoS3Server,  # noqa: F811
    s3_env: dict[str, str],  # noqa: F811
) -> None:
    # given a store whose bucket was deleted (or never created)
    config = s3_store_config(moto_s3)
    admin_client(moto_s3.endpoint).delete_bucket(Bucket=config.bucket)
    store = open_crop_store(config)

    with pytest.raises(StorageError, match="the bucket does not exist") as info:
        store.put_many([(JPEG, SHA)])

    assert f"s3://{config.bucket}/" in str(info.value)
    assert is_transient(info.value)  # held until the bucket is back, not dead-lettered
    admin_client(moto_s3.endpoint).create_bucket(Bucket=config.bucket)
    assert store.put(JPEG) == SHA


def test_redirects_are_presigned_for_the_public_endpoint(
    moto_s3: MotoS3Server,  # noqa: F811
    s3_env: dict[str, str],  # noqa: F811
) -> None:
    # given servers reaching the store at 127.0.0.1 and clients at localhost (compose: minio)
    public = moto_s3.endpoint.replace("127.0.0.1", "localhost")
    assert public != moto_s3.endpoint
    store = open_crop_store(s3_store_config(moto_s3, serve="redirect", public_endpoint=public))
    assert isinstance(store, S3CropStore)
    store.put(JPEG)

    served = store.serve(SHA)

    assert isinstance(served, Redirect)
    assert served.url.startswith(f"{public}/")  # writes still go to the internal endpoint
    assert httpx.get(served.url, timeout=10).content == JPEG


@pytest.mark.parametrize(
    ("crop_store", "expected"),
    [
        # no type: the error says which forms there are
        ("{bucket: crops}", "expected a folder path, or a mapping with type: folder or type: s3"),
        # an unknown type
        ("{type: gcs, bucket: crops}", "expected tags: 'folder', 's3'"),
        # s3 without its bucket
        ("{type: s3, endpoint: 'http://minio:9000'}", "crop_store.s3.bucket"),
        # a prefix that is not a folder
        ("{type: s3, bucket: crops, prefix: lensflow}", "expected an empty prefix or one ending"),
        # credentials never go in the file
        ("{type: s3, bucket: crops, aws_secret_access_key: x}", "unknown key"),
    ],
)
def test_a_bad_crop_store_names_what_was_expected(
    tmp_path: Path, crop_store: str, expected: str
) -> None:
    path = tmp_path / "cloud.yaml"
    path.write_text(f"crop_store: {crop_store}\n")

    with pytest.raises(ConfigError, match=expected):
        load_cloud_config(path)


def test_the_crop_store_forms_that_load(tmp_path: Path) -> None:
    path = tmp_path / "cloud.yaml"
    path.write_text(
        "crop_store: {type: s3, bucket: lensflow-crops, endpoint: 'http://minio:9000', "
        "serve: redirect, public_endpoint: 'https://s3.example.com'}\n"
    )

    config = load_cloud_config(path).crop_store

    assert isinstance(config, S3CropStoreConfig)
    assert (config.bucket, config.prefix, config.serve) == ("lensflow-crops", "", "redirect")
    assert config.public_endpoint == "https://s3.example.com"
    path.write_text("crop_store: /var/lib/lensflow/crops\n")  # every older config
    assert load_cloud_config(path).crop_store.model_dump() == {
        "type": "folder",
        "path": "/var/lib/lensflow/crops",
    }
