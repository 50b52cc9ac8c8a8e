"""Crop store specs, one suite for both stores: a folder and an S3 bucket of a real moto_server.

Content addressing, idempotent puts, refused bytes, unknown or malformed hashes; the folder
store's layout and the bundle store's path check. See :mod:`tests.support.s3` for what moto
cannot show.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from lensflow.cloud.storage import FolderCropStore, StorageError
from lensflow.cloud.storage.bundles import BundleStore
from lensflow.cloud.storage.crops import crop_key
from tests.support.protocol_samples import real_jpeg
from tests.support.s3 import CropBackend, crop_backend, moto_s3, s3_env  # noqa: F401


def test_crop_store_puts_by_hash_and_gets_back(crop_backend: CropBackend) -> None:  # noqa: F811
    crops = crop_backend.store
    data = real_jpeg()

    sha = crops.put(data, expected_sha256=hashlib.sha256(data).hexdigest())

    assert sha == hashlib.sha256(data).hexdigest()
    assert crops.get(sha) == data
    assert crops.exists(sha)
    # content-addressed, the same layout in both: ab/cd/<sha>.jpg (under crops/ in a bucket)
    expected = {"folder": f"{sha[:2]}/{sha[2:4]}/{sha}.jpg", "s3": crop_key(sha)}
    assert crop_backend.stored() == [expected[crop_backend.kind]]


def test_crop_store_put_is_idempotent(crop_backend: CropBackend) -> None:  # noqa: F811
    crops = crop_backend.store
    sha = crops.put(b"jpeg")
    crop_backend.mark(sha)

    assert crops.put(b"jpeg") == sha

    assert crop_backend.is_marked(sha)  # not rewritten
    assert len(crop_backend.stored()) == 1


def test_crop_store_refuses_bytes_with_another_hash(crop_backend: CropBackend) -> None:  # noqa: F811
    with pytest.raises(StorageError, match="expected crop bytes with sha256 '0{64}', got") as info:
        crop_backend.store.put(b"jpeg", expected_sha256="0" * 64)

    assert crop_backend.stored() == []
    assert not isinstance(info.value.__cause__, OSError)  # refused data: not retried


@pytest.mark.parametrize(
    ("sha", "match"),
    [
        ("ab" * 32, "expected a stored crop"),  # well formed, not stored
        ("../../etc/passwd", "expected a sha256 of 64 lowercase hex digits"),  # not a hash
        ("AB" * 32, "expected a sha256 of 64 lowercase hex digits"),  # upper case
        ("ab" * 32 + "\n", "expected a sha256 of 64 lowercase hex digits"),  # trailing newline
    ],
)
def test_crop_store_get_of_unknown_or_malformed_hash_fails(
    crop_backend: CropBackend,  # noqa: F811
    sha: str,
    match: str,
) -> None:
    with pytest.raises(StorageError, match=match):
        crop_backend.store.get(sha)


def test_the_folder_store_keeps_its_layout(tmp_path: Path) -> None:
    crops = FolderCropStore(tmp_path)

    sha = crops.put(b"jpeg")

    assert crops.path(sha) == tmp_path / sha[:2] / sha[2:4] / f"{sha}.jpg"


@pytest.mark.parametrize("sha", ["ab" * 32 + "\n", "AB" * 32, "ab" * 31])
def test_a_bundle_path_of_a_malformed_hash_is_refused(tmp_path: Path, sha: str) -> None:
    # a trailing newline too: the hash names a file, it must be exactly 64 hex digits
    with pytest.raises(StorageError, match="expected a sha256 of 64 lowercase hex digits"):
        BundleStore(tmp_path).path(sha)


def test_a_bundle_store_sweeps_unfinished_uploads_and_nothing_else(tmp_path: Path) -> None:
    store = BundleStore(tmp_path)
    unfinished = store.temp_file()
    unfinished.write_bytes(b"half an upload")
    kept = store.folder / ("ab" * 32 + ".tar")
    kept.write_bytes(b"a bundle")
    assert store.sweep() == 1
    assert not unfinished.exists() and kept.exists()
    assert store.sweep() == 0
