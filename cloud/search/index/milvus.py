"""Milvus collection as a :class:`VectorIndex`, through pymilvus' ``MilvusClient``.

The same code talks to Milvus Lite (``uri`` is a local ``*.db`` file; the ``milvus-lite``
package serves it in-process) and to a Milvus server or Zilliz Cloud (``uri`` is
``http(s)://host:19530``, with a ``token``): only the URI differs. The collection has an
``INT64`` primary key ``id``, a ``FLOAT_VECTOR`` ``vector`` with an HNSW index on inner product,
and scalar fields ``camera``, ``class_name`` and ``captured_at`` that filters use.

Filters are written as Milvus boolean expressions with every string escaped as a JSON string
literal and times as float literals (Milvus Lite has no expression templates), so a camera
name cannot change the expression's meaning.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc
from numpy.typing import ArrayLike
from pymilvus import DataType, MilvusClient, MilvusException

from lensflow.cloud.search.errors import VectorIndexError
from lensflow.cloud.search.index.base import (
    Hit,
    Metadata,
    SearchFilter,
    as_ids,
    as_unit_vectors,
    check_batch,
    check_k,
)

logger = logging.getLogger(__name__)

_BATCH = 2_000
"""Rows per upsert: 2,000 x 1280 floats keeps each gRPC message far below its 64 MiB limit."""
_TEXT_MAX = 256


@contextmanager
def _translated(action: str) -> Iterator[None]:
    """Turn pymilvus' errors (and the gRPC ones it lets through) into VectorIndexError."""
    try:
        yield
    except (MilvusException, grpc.RpcError) as err:
        raise VectorIndexError(f"milvus {action} failed: {err}") from err


def filter_expression(filters: SearchFilter | None) -> str:
    """The Milvus boolean expression of ``filters`` (empty when the filter is open)."""
    if filters is None:
        return ""
    parts = []
    for field, names in (("camera", filters.cameras), ("class_name", filters.classes)):
        if names is not None:
            literals = ", ".join(json.dumps(name, ensure_ascii=False) for name in sorted(names))
            parts.append(f"{field} in [{literals}]")
    if filters.since is not None:
        parts.append(f"captured_at >= {float(filters.since)!r}")
    if filters.until is not None:
        parts.append(f"captured_at < {float(filters.until)!r}")
    return " and ".join(parts)


class MilvusIndex:
    """A Milvus collection of L2-normalised vectors with camera/class/time fields.

    Creates the collection (schema and HNSW index) when it does not exist, and loads it.

    Args:
        dim: Vector dimension (checked against an existing collection).
        uri: ``path/to/file.db`` for Milvus Lite, ``http(s)://host:port`` for a server.
        collection: Collection name.
        token: Server credentials; unused by Milvus Lite.
        m: HNSW links per node (new collections only).
        ef_construction: HNSW build candidate list (new collections only).
        ef_search: HNSW candidate list per query.
        consistency_level: Milvus consistency of reads (new collections only).
        timeout_s: Timeout of each call.

    Raises:
        VectorIndexError: If Milvus cannot be reached, or the collection has another shape.

    """

    def __init__(
        self,
        dim: int,
        *,
        uri: str,
        collection: str = "lensflow_crops",
        token: str | None = None,
        m: int = 32,
        ef_construction: int = 40,
        ef_search: int = 256,
        consistency_level: str = "Session",
        timeout_s: float = 10.0,
    ) -> None:
        self._dim = dim
        self.collection = collection
        self.ef_search = ef_search
        self._timeout = timeout_s
        with _translated(f"connect to {uri}"):
            self._client = MilvusClient(uri=uri, token=token or "", timeout=timeout_s)
            if self._client.has_collection(collection, timeout=timeout_s):
                self._check_schema()
            else:
                self._create(m=m, ef_construction=ef_construction, level=consistency_level)
            self._client.load_collection(collection, timeout=timeout_s)
        logger.info("milvus index ready uri=%s collection=%s", uri, collection)

    @property
    def dim(self) -> int:
        """The dimension every vector must have."""
        return self._dim

    def add(self, ids: ArrayLike, vectors: ArrayLike, metadata: Metadata) -> None:
        """Upsert vectors (an id already present is replaced)."""
        keys, unit = check_batch(ids, vectors, metadata, dim=self._dim)
        for name in (*metadata.cameras, *metadata.classes):
            if len(name) > _TEXT_MAX:
                raise VectorIndexError(f"names are at most {_TEXT_MAX} characters: {name[:40]}…")
        for start in range(0, len(keys), _BATCH):
            rows = [
                {
                    "id": int(keys[i]),
                    "vector": unit[i].tolist(),
                    "camera": metadata.cameras[i],
                    "class_name": metadata.classes[i],
                    "captured_at": float(metadata.captured_at[i]),
                }
                for i in range(start, min(start + _BATCH, len(keys)))
            ]
            with _translated("upsert"):
                self._client.upsert(self.collection, rows, timeout=self._timeout)

    def remove(self, ids: ArrayLike) -> int:
        """Delete vectors by id; return how many were stored."""
        keys = [int(i) for i in as_ids(ids)]
        if not keys:
            return 0
        with _translated("delete"):
            present = self._client.get(
                self.collection, ids=keys, output_fields=["id"], timeout=self._timeout
            )
            if present:
                self._client.delete(
                    self.collection, ids=[row["id"] for row in present], timeout=self._timeout
                )
        return len(present)

    def search(
        self, vector: ArrayLike, *, k: int = 10, filters: SearchFilter | None = None
    ) -> list[Hit]:
        """The ``k`` most similar vectors that pass ``filters``, best first."""
        check_k(k)
        query = as_unit_vectors(vector, dim=self._dim)[0]
        with _translated("search"):
            result = self._client.search(
                self.collection,
                data=[query.tolist()],
                anns_field="vector",
                limit=k,
                filter=filter_expression(filters),
                search_params={"metric_type": "IP", "params": {"ef": max(self.ef_search, k)}},
                timeout=self._timeout,
            )
        return [(int(hit["id"]), float(hit["distance"])) for hit in result[0]]

    def count(self) -> int:
        """How many vectors are stored."""
        with _translated("count"):
            rows = self._client.query(
                self.collection, filter="", output_fields=["count(*)"], timeout=self._timeout
            )
        return int(rows[0]["count(*)"])

    def save(self) -> None:
        """Flush: Milvus persists everything it acknowledged; this seals what is buffered."""
        with _translated("flush"):
            self._client.flush(self.collection, timeout=self._timeout)

    def load(self) -> None:
        """Load the collection into Milvus' memory (it serves what it persisted)."""
        with _translated("load"):
            self._client.load_collection(self.collection, timeout=self._timeout)

    def wait_indexed(self, *, timeout_s: float = 600.0, poll_s: float = 0.5) -> None:
        """Block until Milvus has indexed every row (after a bulk load, before timing).

        Raises:
            VectorIndexError: If rows are still pending after ``timeout_s``.

        """
        deadline = time.monotonic() + timeout_s
        while True:
            with _translated("describe_index"):
                state = self._client.describe_index(
                    self.collection, "vector", timeout=self._timeout
                )
            pending = int(state.get("pending_index_rows", 0))
            if pending == 0:
                return
            if time.monotonic() > deadline:
                raise VectorIndexError(f"milvus still indexing {pending} rows after {timeout_s} s")
            time.sleep(poll_s)

    def close(self) -> None:
        """Close the connection (Milvus Lite stops serving the file)."""
        self._client.close()

    def drop(self) -> None:
        """Delete the collection and everything in it."""
        with _translated("drop"):
            self._client.drop_collection(self.collection, timeout=self._timeout)

    def _create(self, *, m: int, ef_construction: int, level: str) -> None:
        schema = self._client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self._dim)
        schema.add_field("camera", DataType.VARCHAR, max_length=_TEXT_MAX)
        schema.add_field("class_name", DataType.VARCHAR, max_length=_TEXT_MAX)
        schema.add_field("captured_at", DataType.DOUBLE)
        index = self._client.prepare_index_params()
        index.add_index(
            field_name="vector",
            index_type="HNSW",
            metric_type="IP",
            params={"M": m, "efConstruction": ef_construction},
        )
        self._client.create_collection(
            self.collection,
            schema=schema,
            index_params=index,
            consistency_level=level,
            timeout=self._timeout,
        )
        logger.info("milvus collection created name=%s dim=%s", self.collection, self._dim)

    def _check_schema(self) -> None:
        described: dict[str, Any] = self._client.describe_collection(
            self.collection, timeout=self._timeout
        )
        fields = {field["name"]: field for field in described.get("fields", [])}
        vector = fields.get("vector", {})
        found = vector.get("params", {}).get("dim")
        if found is None or int(found) != self._dim or "camera" not in fields:
            raise VectorIndexError(
                f"expected collection {self.collection} with a {self._dim}-d 'vector' and "
                f"'camera' fields, but found fields {sorted(fields)} with dim {found}"
            )
