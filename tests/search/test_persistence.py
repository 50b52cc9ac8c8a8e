"""Index folders: snapshots are atomic, and the config factory reopens what was saved."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from lensflow.cloud.search.errors import VectorIndexError
from lensflow.cloud.search.index.exact import ExactIndex
from lensflow.cloud.search.index.factory import open_index
from lensflow.cloud.search.index.faiss_hnsw import FaissHnswIndex
from lensflow.cloud.search.index.milvus import MilvusIndex
from lensflow.cloud.search.index.store import current_snapshot, write_snapshot
from lensflow.shared.config.search import SearchConfig
from tests.search.conftest import DIM, Dataset


def test_a_failed_save_keeps_the_previous_snapshot(tmp_path: Path, dataset: Dataset) -> None:
    # given a saved index
    index = ExactIndex(DIM, path=tmp_path / "idx")
    index.add(dataset.ids[:10], dataset.vectors[:10], dataset.metadata_slice(10))
    index.save()
    first = current_snapshot(tmp_path / "idx")

    # when a later save fails half-way through writing its files
    def broken(path: Path) -> None:
        path.write_bytes(b"partial")
        raise OSError("disk full")

    with pytest.raises(VectorIndexError, match="disk full"):
        write_snapshot(tmp_path / "idx", {"a.npy": broken})

    # then CURRENT still names the first snapshot, the partial one is gone, and it loads
    assert current_snapshot(tmp_path / "idx") == first
    assert [p.name for p in (tmp_path / "idx").glob("v-*")] == [first.name]  # type: ignore[union-attr]
    again = ExactIndex(DIM, path=tmp_path / "idx")
    again.load()
    assert again.count() == 10


def test_a_new_save_replaces_the_old_snapshot(tmp_path: Path, dataset: Dataset) -> None:
    index = FaissHnswIndex(DIM, path=tmp_path / "idx")
    index.add(dataset.ids[:10], dataset.vectors[:10], dataset.metadata_slice(10))
    index.save()
    index.add(dataset.ids[10:20], dataset.vectors[10:20], dataset.metadata_slice(20, 10))
    index.save()
    assert len(list((tmp_path / "idx").glob("v-*"))) == 1
    again = FaissHnswIndex(DIM, path=tmp_path / "idx")
    again.load()
    assert again.count() == 20


def test_loading_another_kind_or_dimension_is_refused(tmp_path: Path, dataset: Dataset) -> None:
    index = ExactIndex(DIM, path=tmp_path / "idx")
    index.add(dataset.ids[:3], dataset.vectors[:3], dataset.metadata_slice(3))
    index.save()
    with pytest.raises(VectorIndexError, match="expected a faiss-hnsw index of dimension"):
        FaissHnswIndex(DIM, path=tmp_path / "idx").load()
    with pytest.raises(VectorIndexError, match="dimension 8"):
        ExactIndex(8, path=tmp_path / "idx").load()
    with pytest.raises(VectorIndexError, match="no saved index"):
        ExactIndex(DIM, path=tmp_path / "empty").load()


@pytest.mark.parametrize("kind", ["exact", "faiss"])
def test_factory_opens_the_saved_index_of_a_config(
    tmp_path: Path, dataset: Dataset, kind: str
) -> None:
    config = SearchConfig.model_validate(
        {"index": {"type": kind, "dim": DIM, "path": str(tmp_path / "idx")}}
    )
    # an empty folder: an empty index
    first = open_index(config.index)
    assert first.count() == 0
    first.add(dataset.ids[:50], dataset.vectors[:50], dataset.metadata_slice(50))
    first.save()
    # the same config again: what was saved
    again = open_index(config.index)
    assert again.count() == 50
    assert again.search(dataset.vectors[7], k=1)[0][0] == dataset.ids[7]


def test_factory_opens_milvus_lite_for_a_file_uri(tmp_path: Path) -> None:
    config = SearchConfig.model_validate(
        {"index": {"type": "milvus", "dim": 8, "uri": str(tmp_path / "m.db")}}
    )
    index = open_index(config.index)
    assert isinstance(index, MilvusIndex)
    assert index.count() == 0
    index.close()


CONFIG_ERRORS = [
    # unknown backend
    ({"index": {"type": "annoy"}}, "does not match any of the expected tags"),
    # a misspelt key is an error, not ignored
    ({"index": {"type": "faiss", "efSearch": 10}}, "Extra inputs are not permitted"),
    # HNSW M below its minimum
    ({"index": {"type": "faiss", "m": 2}}, "greater than or equal to 4"),
    # a lookup URL must be http(s)
    ({"lookup": {"url": "ftp://x"}}, "should match pattern"),
    # backoff cap below its base
    ({"lookup": {"url": "http://x", "backoff_s": 2, "backoff_max_s": 1}}, "backoff_max_s"),
]


@pytest.mark.parametrize(("data", "message"), CONFIG_ERRORS)
def test_config_errors_say_what_was_expected(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SearchConfig.model_validate(data)


def test_config_defaults_are_exact_and_memory() -> None:
    config = SearchConfig()
    assert (config.index.type, config.cache.type, config.lookup) == ("exact", "memory", None)
    assert np.isclose(config.index.dim, 1280)
