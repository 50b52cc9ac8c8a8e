"""Every VectorIndex backend: recall against exact search, filters, add/remove, persistence."""

from __future__ import annotations

import numpy as np
import pytest

from lensflow.cloud.search.errors import SearchInputError
from lensflow.cloud.search.index.base import Metadata, SearchFilter, VectorIndex
from lensflow.cloud.search.index.exact import ExactIndex
from tests.search.conftest import CAMERAS, DIM, KINDS, Dataset, IndexMaker

T0 = 1_700_000_000.0


def filled(make_index: IndexMaker, kind: str, dataset: Dataset) -> VectorIndex:
    index = make_index(kind)
    index.add(dataset.ids, dataset.vectors, dataset.metadata)
    return index


def recall(found: list[tuple[int, float]], truth: list[tuple[int, float]]) -> float:
    return len({i for i, _ in found} & {i for i, _ in truth}) / max(1, len(truth))


@pytest.mark.parametrize("kind", KINDS)
def test_recall_at_10_against_exact_search(
    make_index: IndexMaker, dataset: Dataset, exact_reference: ExactIndex, kind: str
) -> None:
    # given an index of 3000 clustered vectors
    index = filled(make_index, kind, dataset)
    # when the 40 queries are searched
    recalls = [
        recall(index.search(q, k=10), exact_reference.search(q, k=10)) for q in dataset.queries
    ]
    # then at least 95 % of the exact top 10 come back, best first
    assert np.mean(recalls) >= 0.95
    scores = [score for _, score in index.search(dataset.queries[0], k=10)]
    assert scores == sorted(scores, reverse=True)
    assert index.count() == len(dataset.ids)


FILTERS = [
    # one camera: a quarter of the vectors
    SearchFilter.of(cameras="dock"),
    # two cameras and one class
    SearchFilter.of(cameras=["gate", "yard"], classes="car"),
    # a time range only: rows 500..899 ([since, until) excludes row 900)
    SearchFilter.of(since=T0 + 500, until=T0 + 900),
    # all three: few matches (about 33), still k of them must come back
    SearchFilter.of(cameras="lobby", classes="bike", since=T0 + 1000, until=T0 + 1400),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("filters", FILTERS, ids=["camera", "cameras+class", "time", "all"])
def test_filtered_search_returns_k_matching_hits(
    make_index: IndexMaker,
    dataset: Dataset,
    exact_reference: ExactIndex,
    kind: str,
    filters: SearchFilter,
) -> None:
    index = filled(make_index, kind, dataset)
    rows = {int(i): r for r, i in enumerate(dataset.ids)}
    for query in dataset.queries[:10]:
        found = index.search(query, k=10, filters=filters)
        truth = exact_reference.search(query, k=10, filters=filters)
        assert len(found) == 10
        assert recall(found, truth) >= 0.9
        for crop_id, _ in found:
            row = rows[crop_id]
            assert filters.cameras is None or dataset.metadata.cameras[row] in filters.cameras
            assert filters.classes is None or dataset.metadata.classes[row] in filters.classes
            moment = dataset.metadata.captured_at[row]
            assert filters.since is None or moment >= filters.since
            assert filters.until is None or moment < filters.until


@pytest.mark.parametrize("kind", KINDS)
def test_filter_matching_fewer_than_k_returns_all_matches(
    make_index: IndexMaker, dataset: Dataset, kind: str
) -> None:
    index = filled(make_index, kind, dataset)
    # rows 0..3 only (the until bound is exclusive)
    found = index.search(dataset.queries[0], k=10, filters=SearchFilter.of(until=T0 + 4))
    assert sorted(i for i, _ in found) == [1000, 1001, 1002, 1003]
    # a camera nobody has: nothing, not an error
    assert index.search(dataset.queries[0], k=5, filters=SearchFilter.of(cameras="roof")) == []


@pytest.mark.parametrize("kind", KINDS)
def test_removed_ids_are_never_returned_and_readding_replaces(
    make_index: IndexMaker, dataset: Dataset, kind: str
) -> None:
    index = filled(make_index, kind, dataset)
    target = dataset.vectors[10]
    assert index.search(target, k=1)[0][0] == 1010
    # when 1010 and an unknown id are removed
    assert index.remove([1010, 99_999_999]) == 1
    # then it is gone from plain and filtered searches, and from the count
    assert 1010 not in {i for i, _ in index.search(target, k=10)}
    assert 1010 not in {
        i for i, _ in index.search(target, k=10, filters=SearchFilter.of(cameras=CAMERAS[2]))
    }
    assert index.count() == len(dataset.ids) - 1
    # when id 1011 is added again with 1010's old vector and another camera
    index.add([1011], target, Metadata(("roof",), ("car",), np.array([T0])))
    # then it replaced the old 1011: the count stays, the new camera filters it in
    assert index.count() == len(dataset.ids) - 1
    assert index.search(target, k=1)[0][0] == 1011
    roof = index.search(target, k=3, filters=SearchFilter.of(cameras="roof"))
    assert [(i, round(score, 4)) for i, score in roof] == [(1011, 1.0)]


@pytest.mark.parametrize("kind", KINDS)
def test_save_then_load_gives_the_same_results(
    make_index: IndexMaker, dataset: Dataset, kind: str
) -> None:
    index = filled(make_index, kind, dataset)
    index.remove([1000, 1001])
    filters = SearchFilter.of(cameras=["gate", "dock"], since=T0 + 100)
    before = [index.search(q, k=10, filters=filters) for q in dataset.queries[:5]]
    plain = [index.search(q, k=10) for q in dataset.queries[:5]]
    index.save()
    if kind == "milvus":
        index.close()  # type: ignore[attr-defined]
    # when a fresh index on the same storage loads
    again = make_index(kind)
    again.load()
    # then it holds the same rows and answers the same
    assert again.count() == len(dataset.ids) - 2
    for q, hits_before, plain_before in zip(dataset.queries[:5], before, plain, strict=True):
        assert [i for i, _ in again.search(q, k=10, filters=filters)] == [i for i, _ in hits_before]
        assert [i for i, _ in again.search(q, k=10)] == [i for i, _ in plain_before]


BAD_ADDS = [
    # wrong dimension
    (lambda d: ([1], np.ones((1, DIM + 1)), d.metadata_one), "shape"),
    # a zero vector cannot be normalised
    (lambda d: ([1], np.zeros(DIM), d.metadata_one), "non-zero"),
    # NaN
    (lambda d: ([1], np.full(DIM, np.nan), d.metadata_one), "finite"),
    # negative id
    (lambda d: ([-1], np.ones(DIM), d.metadata_one), ">= 0"),
    # ids repeat in one call
    (lambda d: ([1, 1], np.ones((2, DIM)), d.metadata_two), "distinct"),
    # fewer ids than vectors
    (lambda d: ([1], np.ones((2, DIM)), d.metadata_two), "expected 2 ids"),
]


class _Samples:
    metadata_one = Metadata(("gate",), ("car",), np.array([T0]))
    metadata_two = Metadata(("gate", "gate"), ("car", "car"), np.array([T0, T0]))


@pytest.mark.parametrize("kind", ["exact", "faiss"])
@pytest.mark.parametrize(("build", "message"), BAD_ADDS)
def test_bad_input_is_refused_with_what_was_expected(
    make_index: IndexMaker, kind: str, build: object, message: str
) -> None:
    index = make_index(kind)
    ids, vectors, metadata = build(_Samples)  # type: ignore[operator]
    with pytest.raises(SearchInputError, match=message):
        index.add(ids, vectors, metadata)
    assert index.count() == 0


def test_metadata_and_filter_validation() -> None:
    with pytest.raises(SearchInputError, match="one entry per vector"):
        Metadata(("a", "b"), ("car",), np.array([T0, T0]))
    with pytest.raises(SearchInputError, match="since < until"):
        SearchFilter.of(since=T0 + 1, until=T0)
    with pytest.raises(SearchInputError, match="timezone-aware"):
        from datetime import datetime

        SearchFilter.of(since=datetime(2024, 1, 1))
