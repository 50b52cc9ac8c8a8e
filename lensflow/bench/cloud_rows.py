"""Bulk-load synthetic crops and classifier results into a migrated PostgreSQL database.

One ``INSERT ... SELECT`` over ``generate_series`` per table, inside the server: no rows
cross the wire. The tables' plain indexes are dropped first and rebuilt after the load (one
sorted build per index instead of a million inserts into each), then the tables are
vacuumed and analysed, as a long-running database would be. Values are seeded
(``setseed``), so every run loads the same rows.

The rows: 20 cameras on 4 sites, 8 classes (person and car the most common), detection
scores uniform in [0.25, 1), capture times uniform over the :data:`SPAN_DAYS` days before
:data:`END`, and one ``classifier`` node result per crop with one of 10 labels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg

CAMERAS = [f"cam{index:02d}" for index in range(20)]
CLASSES = ["person", "person", "person", "car", "car", "truck", "bicycle", "dog"]
LABELS = [f"label{index}" for index in range(10)]
NODE = "classifier"
SPAN_DAYS = 30
END = datetime(2025, 1, 31, tzinfo=UTC)
"""Exclusive end of the capture times."""
_TABLES = ("crops", "classifier_results")

_CROPS = """
INSERT INTO crops (
    crop_id, site, camera, captured_at, sent_at, received_at, class_name, class_id, score,
    box_x1, box_y1, box_x2, box_y2, frame_width, frame_height, track_id, crop_box,
    model_sha256, config_hash, agent_version, jpeg_sha256, jpeg_size, attributes,
    pipeline_name, pipeline_version)
SELECT
    'bench-' || lpad(g::text, 9, '0'),
    'site' || (r.cam %% 4),
    (%(cameras)s::text[])[r.cam + 1],
    r.at, r.at + interval '200 milliseconds', r.at + interval '500 milliseconds',
    (%(classes)s::text[])[r.cls + 1], r.cls, 0.25 + 0.75 * r.score,
    r.x, r.y, r.x + 160, r.y + 200, 1920, 1080, g %% 5000, NULL,
    repeat('ab', 32), 'bench', '0.1.0', md5(g::text) || md5('jpeg' || g::text),
    9000 + g %% 3000, '{}'::jsonb, 'bench', 'v1'
FROM generate_series(1, %(rows)s) AS g,
LATERAL (SELECT
    floor(random() * %(camera_count)s)::int AS cam,
    floor(random() * %(class_count)s)::int AS cls,
    random() AS score,
    %(end)s - random() * %(span)s * interval '1 day' AS at,
    floor(random() * 1700)::int AS x,
    floor(random() * 800)::int AS y,
    g AS tie) AS r
"""
"""A million crops; ``tie`` makes the LATERAL run per row, so random() is drawn per row."""

_RESULTS = """
INSERT INTO classifier_results (
    crop_pk, node, plugin, plugin_version, status, label, score, payload, reason,
    duration_ms, batch_size)
SELECT c.id, %(node)s, 'onnx_classifier', '1', 'ok', r.label, r.score,
    jsonb_build_object('label', r.label, 'score', r.score), '', 5.0, 16
FROM crops AS c,
LATERAL (SELECT (%(labels)s::text[])[1 + floor(random() * %(label_count)s)::int] AS label,
                random() AS score, c.id AS tie) AS r
"""

_CAMERAS = """
INSERT INTO cameras (site, name, first_seen, last_seen)
SELECT site, camera, min(captured_at), max(captured_at) FROM crops GROUP BY site, camera
ON CONFLICT (site, name) DO NOTHING
"""


@dataclass(frozen=True)
class LoadReport:
    """What was loaded and how long each step took (seconds)."""

    rows: int
    insert_s: float
    index_s: float
    vacuum_s: float

    @property
    def total_s(self) -> float:
        """The whole load."""
        return self.insert_s + self.index_s + self.vacuum_s


def load_rows(connection: psycopg.Connection[tuple[object, ...]], *, rows: int) -> LoadReport:
    """Load ``rows`` crops with one classifier result each (autocommit connection).

    Args:
        connection: An autocommit connection to the migrated, empty database.
        rows: How many crops.

    Returns:
        The step timings.

    """
    start = time.perf_counter()
    indexes = _plain_indexes(connection)
    with connection.transaction():
        connection.execute("SET LOCAL maintenance_work_mem = '256MB'")
        for name in indexes:
            connection.execute(f'DROP INDEX "{name}"')
        connection.execute("SELECT setseed(0.42)")
        connection.execute(
            _CROPS,
            {
                "rows": rows,
                "cameras": CAMERAS,
                "camera_count": len(CAMERAS),
                "classes": CLASSES,
                "class_count": len(CLASSES),
                "end": END,
                "span": SPAN_DAYS,
            },
        )
        connection.execute(_RESULTS, {"node": NODE, "labels": LABELS, "label_count": len(LABELS)})
        connection.execute(_CAMERAS)
        inserted = time.perf_counter()
        for definition in indexes.values():
            connection.execute(definition)  # the DDL pg_indexes gives
    indexed = time.perf_counter()
    for table in _TABLES:
        connection.execute(f"VACUUM ANALYZE {table}")
    done = time.perf_counter()
    return LoadReport(
        rows=rows, insert_s=inserted - start, index_s=indexed - inserted, vacuum_s=done - indexed
    )


def _plain_indexes(connection: psycopg.Connection[tuple[object, ...]]) -> dict[str, str]:
    """Name → CREATE INDEX statement of the loaded tables' indexes that back no constraint."""
    found = connection.execute(
        """
        SELECT i.indexname, i.indexdef FROM pg_indexes AS i
        WHERE i.schemaname = current_schema() AND i.tablename = ANY(%s)
          AND NOT EXISTS (SELECT 1 FROM pg_constraint AS c WHERE c.conname = i.indexname)
        ORDER BY i.indexname
        """,
        (list(_TABLES),),
    ).fetchall()
    return {str(name): str(definition) for name, definition in found}
