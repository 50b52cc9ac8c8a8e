"""Storage spec: migration 0007 turns the labels of an older database into review statuses.

A database labelled before 0007 has human labels and label events but no statuses: after the
upgrade every current human label is a ``relabelled`` review and every event carries the
statuses its labels imply, so a batch relabelled before the upgrade still undoes. On SQLite
and on a real PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from alembic import command
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.orm import Session

from lensflow.cloud.storage import ResultStore, create_engine_for, migrate
from lensflow.cloud.storage.db import alembic_config
from lensflow.cloud.storage.models import CropReview, LabelEvent
from tests.support.protocol_samples import CAPTURED, make_header


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = create_engine_for(db_url)
    yield engine
    engine.dispose()


def _alembic(engine: Engine, action: str, revision: str) -> None:
    with engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        getattr(command, action)(config, revision)


def test_human_labels_of_an_older_database_become_relabelled_reviews(engine: Engine) -> None:
    # given a database at 0006 with a crop relabelled twice on one node and undone on another
    _alembic(engine, "upgrade", "0006")
    store = ResultStore(engine)
    for crop_id in ("a", "b"):
        store.save_crop_results(make_header(crop_id=crop_id), jpeg_size=1, results={}, pipeline="p")
    at = CAPTURED + timedelta(days=1)
    with engine.begin() as connection:
        pk = {row[0]: row[1] for row in connection.execute(text("SELECT crop_id, id FROM crops"))}
        human = (
            "INSERT INTO human_labels (crop_pk, node, label, actor, created_at, undone) "
            "VALUES (:pk, :node, :label, 'ops', :at, :undone)"
        )
        connection.execute(text(human), {"pk": pk["a"], "node": "detection", "label": "bus",
                                         "at": at, "undone": False})  # fmt: skip
        connection.execute(text(human), {"pk": pk["b"], "node": "color", "label": "red",
                                         "at": at, "undone": True})  # fmt: skip
        event = (
            "INSERT INTO label_events (crop_pk, node, old_label, new_label, actor, at, batch_id) "
            "VALUES (:pk, :node, :old, :new, 'ops', :at, :batch)"
        )
        for old, new, batch in ((None, "truck", "b1"), ("truck", "bus", "b2")):
            connection.execute(text(event), {"pk": pk["a"], "node": "detection", "old": old,
                                             "new": new, "at": at, "batch": batch})  # fmt: skip

    # when it is upgraded
    migrate(engine)

    # then the current label is a relabelled review, the undone one none; events have statuses
    with Session(engine) as session:
        found = [
            (r.crop_pk, r.node, r.status, r.actor) for r in session.scalars(select(CropReview))
        ]
        events = session.scalars(select(LabelEvent).order_by(LabelEvent.id)).all()
        statuses = [(e.old_status, e.new_status) for e in events]
    assert found == [(pk["a"], "detection", "relabelled", "ops")]
    assert statuses == [(None, "relabelled"), ("relabelled", "relabelled")]


def test_downgrading_0007_drops_reviews_and_schemas(engine: Engine) -> None:
    migrate(engine)

    _alembic(engine, "downgrade", "0006")

    tables = set(inspect(engine).get_table_names())
    assert not {"crop_reviews", "label_schema_versions"} & tables
    assert "old_status" not in {
        column["name"] for column in inspect(engine).get_columns("label_events")
    }
