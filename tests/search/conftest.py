"""Search fixtures: clustered unit vectors with metadata, each index kind, a provider, Redis."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from lensflow.cloud.search.index.base import Metadata, VectorIndex
from lensflow.cloud.search.index.exact import ExactIndex
from lensflow.cloud.search.index.faiss_hnsw import FaissHnswIndex
from lensflow.cloud.search.index.milvus import MilvusIndex
from tests.search.provider import ProviderServer
from tests.support.redis import redis_server

__all__ = ["redis_server"]

DIM = 48
KINDS = ["exact", "faiss", "faiss-graph", "milvus"]
"""faiss-graph: HNSW with exact_below=0, so filtered queries always use the graph."""
CAMERAS = ("gate", "dock", "lobby", "yard")
CLASSES = ("person", "car", "bike")


@dataclass(frozen=True)
class Dataset:
    """Clustered unit vectors, their ids (1000 + row) and metadata, and nearby queries."""

    ids: np.ndarray
    vectors: np.ndarray
    metadata: Metadata
    queries: np.ndarray

    def metadata_slice(self, stop: int, start: int = 0) -> Metadata:
        """The metadata of rows ``start:stop``."""
        return Metadata(
            self.metadata.cameras[start:stop],
            self.metadata.classes[start:stop],
            self.metadata.captured_at[start:stop],
        )


def clustered(n: int, *, dim: int = DIM, clusters: int = 30, seed: int = 7) -> Dataset:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    vectors = centres[rng.integers(0, clusters, n)] + rng.standard_normal((n, dim)).astype(
        np.float32
    )
    queries = centres[rng.integers(0, clusters, 40)] + rng.standard_normal((40, dim)).astype(
        np.float32
    )
    metadata = Metadata(
        tuple(CAMERAS[i % len(CAMERAS)] for i in range(n)),
        tuple(CLASSES[(i // len(CAMERAS)) % len(CLASSES)] for i in range(n)),
        1_700_000_000.0 + np.arange(n, dtype=np.float64),
    )
    return Dataset(np.arange(n, dtype=np.int64) + 1000, vectors, metadata, queries)


@pytest.fixture(scope="session")
def dataset() -> Dataset:
    return clustered(3000)


@pytest.fixture(scope="session")
def exact_reference(dataset: Dataset) -> ExactIndex:
    index = ExactIndex(DIM)
    index.add(dataset.ids, dataset.vectors, dataset.metadata)
    return index


IndexMaker = Callable[..., VectorIndex]


@pytest.fixture
def make_index(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[IndexMaker]:
    """``make_index(kind, dim=DIM, name="a")``: an empty index; ``name`` picks its storage."""
    opened: list[MilvusIndex] = []

    def make(kind: str, *, dim: int = DIM, name: str = "a") -> VectorIndex:
        if kind == "exact":
            return ExactIndex(dim, path=tmp_path / f"exact-{name}")
        if kind in ("faiss", "faiss-graph"):
            return FaissHnswIndex(
                dim,
                m=16,
                ef_construction=40,
                exact_below=0 if kind == "faiss-graph" else 20_000,
                path=tmp_path / f"hnsw-{name}",
            )
        if kind == "milvus":
            index = MilvusIndex(dim, uri=str(tmp_path / f"milvus-{name}.db"), m=16)
            opened.append(index)
            return index
        raise ValueError(kind)

    yield make
    for index in opened:
        index.close()


@pytest.fixture
def provider() -> Iterator[ProviderServer]:
    server = ProviderServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
