"""A worker storing into S3, end to end: real mosquitto, real moto_server, the worker's own loop.

The crops' JPEGs go to a bucket (``crop_store: {type: s3}``) instead of a folder; when the
store goes away mid-run the worker holds the batch and retries, acknowledging nothing, and the
crops land once the store is back. moto keeps its buckets in memory only: its restart gives an
empty server, so the test creates the bucket again (a real store keeps it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lensflow.cloud.storage import ResultStore, create_engine_for, open_crop_store
from lensflow.services.mosquitto import MosquittoBroker
from lensflow.services.moto_s3 import MotoS3Server
from lensflow.shared.classifiers.registry import PluginRegistry
from tests.support.brokers import mosquitto, wait_for  # noqa: F401
from tests.support.s3 import admin_client, moto_s3, s3_env, s3_store_config  # noqa: F401
from tests.support.worker import (
    TOPIC,
    mqtt_intake,
    publish,
    running_worker,
    sample_crops,
    write_cloud_config,
)

pytestmark = pytest.mark.integration


def test_a_worker_stores_the_jpegs_of_published_crops_in_the_bucket(
    mosquitto: MosquittoBroker,  # noqa: F811
    moto_s3: MotoS3Server,  # noqa: F811
    s3_env: dict[str, str],  # noqa: F811
    tmp_path: Path,
    registry: PluginRegistry,
) -> None:
    # given a worker whose crop store is a bucket
    store_config = s3_store_config(moto_s3)
    db_url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    config = write_cloud_config(
        tmp_path,
        db_url=db_url,
        intake=mqtt_intake(mosquitto.port, client_id="w-s3"),
        crop_store=store_config.model_dump(),
    )
    crops = sample_crops(12)

    # when an edge publishes 12 real crops
    results = ResultStore(create_engine_for(db_url))
    with running_worker(config, registry):
        publish(mosquitto.port, [(TOPIC, crop.message) for crop in crops])
        assert wait_for(lambda: results.count_crops() == len(crops), timeout_s=30)

    # then every crop is a row and its JPEG an object under its sha256
    bucket = open_crop_store(store_config)
    assert [bucket.get(crop.sha256) for crop in crops] == [crop.jpeg for crop in crops]
    results.engine.dispose()


def test_a_worker_holds_its_batch_while_the_store_is_down(
    mosquitto: MosquittoBroker,  # noqa: F811
    s3_env: dict[str, str],  # noqa: F811
    tmp_path: Path,
    registry: PluginRegistry,
) -> None:
    with MotoS3Server(tmp_path / "moto") as server:
        # given a worker on a bucket of a store that then goes away
        store_config = s3_store_config(server)
        db_url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
        config = write_cloud_config(
            tmp_path,
            db_url=db_url,
            intake=mqtt_intake(mosquitto.port, client_id="w-s3-down"),
            crop_store=store_config.model_dump(),
        )
        crops = sample_crops(4)
        results = ResultStore(create_engine_for(db_url))
        with running_worker(config, registry) as worker:
            server.stop()

            # when crops arrive: nothing is stored, the worker retries
            publish(mosquitto.port, [(TOPIC, crop.message) for crop in crops])
            retries = "lensflow_worker_storage_retries_total"
            assert wait_for(
                lambda: (worker.metrics.registry.get_sample_value(retries) or 0) >= 2,
                timeout_s=30,
            )
            assert results.count_crops() == 0

            # then, the store back (moto restarts empty: the bucket is made again), all land
            server.start()
            admin_client(server.endpoint).create_bucket(Bucket=store_config.bucket)
            assert wait_for(lambda: results.count_crops() == len(crops), timeout_s=60)

        bucket = open_crop_store(store_config)
        assert all(bucket.exists(crop.sha256) for crop in crops)
        results.engine.dispose()


def test_a_worker_holds_its_batch_while_the_bucket_is_missing(
    mosquitto: MosquittoBroker,  # noqa: F811
    moto_s3: MotoS3Server,  # noqa: F811
    s3_env: dict[str, str],  # noqa: F811
    tmp_path: Path,
    registry: PluginRegistry,
) -> None:
    # given a worker whose bucket was deleted (an operator's mistake, a store rebuilt)
    store_config = s3_store_config(moto_s3)
    admin_client(moto_s3.endpoint).delete_bucket(Bucket=store_config.bucket)
    db_url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    config = write_cloud_config(
        tmp_path,
        db_url=db_url,
        intake=mqtt_intake(mosquitto.port, client_id="w-s3-nobucket"),
        crop_store=store_config.model_dump(),
    )
    crops = sample_crops(4)
    results = ResultStore(create_engine_for(db_url))
    with running_worker(config, registry) as worker:
        # when crops arrive: the worker retries them, it dead-letters none
        publish(mosquitto.port, [(TOPIC, crop.message) for crop in crops])
        retries = "lensflow_worker_storage_retries_total"
        assert wait_for(
            lambda: (worker.metrics.registry.get_sample_value(retries) or 0) >= 2,
            timeout_s=30,
        )
        assert results.count_crops() == 0

        # then, the bucket made again, every crop lands
        admin_client(moto_s3.endpoint).create_bucket(Bucket=store_config.bucket)
        assert wait_for(lambda: results.count_crops() == len(crops), timeout_s=60)

    bucket = open_crop_store(store_config)
    assert all(bucket.exists(crop.sha256) for crop in crops)
    results.engine.dispose()
