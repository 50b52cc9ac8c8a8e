"""The desktop client's review calls against a real API process: label schemas, statuses,
safe bulk relabels, the review queue and facets, with typed refusals."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lensflow.desktop.api_review_types import QueueQuery
from lensflow.desktop.api_types import ResultQuery
from lensflow.desktop.client_reviews import (
    LabelExists,
    LabelNotInSchema,
    NearDuplicateLabel,
    PreviewChanged,
    ReviewCalls,
)
from lensflow.desktop.errors import Forbidden
from tests.support.review_api import ReviewApi
from tests.support.review_data import QuadrantColors, SeededCrop

COUNT = 24


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ReviewApi, list[SeededCrop]]]:
    with ReviewApi(tmp_path_factory.mktemp("reviews-api"), embedder=QuadrantColors()) as api:
        yield api, api.seed(COUNT)


@pytest.fixture
def client(served: tuple[ReviewApi, list[SeededCrop]]) -> Iterator[ReviewCalls]:
    api, _ = served
    connected = ReviewCalls(api.base_url, key=api.tokens["operator"])
    yield connected
    connected.close()


@pytest.fixture
def crops(served: tuple[ReviewApi, list[SeededCrop]]) -> list[SeededCrop]:
    return served[1]


def test_the_detection_schema_has_the_edge_classes_and_fixed_keys(client: ReviewCalls) -> None:
    listed = client.label_schemas().for_node("detection")
    schema = client.label_schema("detection")

    assert listed == schema
    assert schema.source == "observed"  # no card names the seeded edge model
    assert {"person", "car", "truck"} <= set(schema.names())
    assert schema.by_key()["1"].name == schema.names()[0]


def test_adding_a_label_keeps_every_key_and_refuses_near_duplicates(client: ReviewCalls) -> None:
    before = client.label_schema("detection")

    after = client.add_label("detection", "forklift", color="#112233")

    assert after.version == before.version + 1
    assert after.labels[: len(before.labels)] == before.labels
    assert after.labels[-1].name == "forklift"
    assert client.label_schema("detection", version=before.version) == before
    with pytest.raises(LabelExists):
        client.add_label("detection", "forklift")
    with pytest.raises(NearDuplicateLabel) as refused:
        client.add_label("detection", "Forklift ")
    assert "'forklift'" in refused.value.detail


def test_a_relabel_outside_the_schema_names_the_allowed_labels(
    client: ReviewCalls, crops: list[SeededCrop]
) -> None:
    with pytest.raises(LabelNotInSchema) as refused:
        client.relabel_checked([crops[0].crop_id], label="spaceship")

    assert refused.value.status == 422
    assert {"person", "car", "truck"} <= set(refused.value.allowed)


def test_a_review_is_a_status_shown_in_the_queue_and_undone_in_one_batch(
    client: ReviewCalls, crops: list[SeededCrop]
) -> None:
    ids = [crops[1].crop_id, crops[2].crop_id]

    batch = client.review(ids, "rejected")
    queue = QueueQuery(ResultQuery(node="detection"), sort="unreviewed_first")
    pages = [client.review_queue(queue, limit=10)]
    while pages[-1].next_cursor:
        pages.append(client.review_queue(queue, limit=10, cursor=pages[-1].next_cursor))
    listed = [item for page in pages for item in page.items]

    assert {event.new_status for event in batch.events} == {"rejected"}
    assert len({item.crop_id for item in listed}) == len(listed) == COUNT
    assert [item.crop_id for item in listed[-2:]] == sorted(ids, reverse=True)  # reviewed last
    reviewed = listed[-1].review()
    assert reviewed is not None
    assert (reviewed.status, reviewed.label, reviewed.by) == ("rejected", None, "review-operator")

    undone = client.undo_batch(batch.batch_id)

    assert {event.new_status for event in undone.events} == {None}
    rejected = QueueQuery(ResultQuery(node="detection"), status="rejected")
    assert client.review_queue(rejected).items == []


def test_facets_count_every_crop(client: ReviewCalls) -> None:
    facets = client.facets()

    assert sum(camera.count for camera in facets.cameras) == COUNT
    assert sum(row.count for row in facets.classes) == COUNT
    assert facets.nodes[0].value == "detection"
    assert sum(row.count for row in facets.labels["detection"]) == COUNT


def test_a_bulk_relabel_applies_its_preview_or_says_it_changed(
    client: ReviewCalls, crops: list[SeededCrop]
) -> None:
    seed_id = crops[10].crop_id
    preview = client.preview_similar(seed_id, label="truck", k=5, min_similarity=-1.0)
    assert preview.crop_ids[0] == seed_id
    moved = next(crop_id for crop_id in preview.crop_ids if crop_id != seed_id)
    client.relabel_checked([moved], label="car")  # a human label since the preview

    with pytest.raises(PreviewChanged):
        client.relabel_similar(
            seed_id, label="truck", k=5, min_similarity=-1.0, expect=preview.crop_ids
        )
    again = client.preview_similar(seed_id, label="truck", k=5, min_similarity=-1.0)
    batch = client.relabel_similar(
        seed_id, label="truck", k=5, min_similarity=-1.0, expect=again.crop_ids
    )

    assert moved not in again.crop_ids
    assert {event.crop_id for event in batch.events} <= set(again.crop_ids)
    assert {event.new_status for event in batch.events} == {"relabelled"}


def test_a_viewer_may_read_but_not_review(
    served: tuple[ReviewApi, list[SeededCrop]], crops: list[SeededCrop]
) -> None:
    api, _ = served
    viewer = ReviewCalls(api.base_url, key=api.tokens["viewer"])
    try:
        assert viewer.label_schema().node == "detection"
        with pytest.raises(Forbidden):
            viewer.review([crops[3].crop_id], "accepted")
    finally:
        viewer.close()
