"""``lensflow bench search``: each vector index against exact search, on the same vectors.

The data is synthetic but shaped like real embeddings: L2-normalised points around
``max(100, n / 1000)`` random centres, spread along a shared random subspace of
``intrinsic`` dimensions (as large as the centres) plus a little isotropic noise. Final-layer
CNN features have an intrinsic dimension of tens, not hundreds; uniform or full-rank noise
would make every neighbour about equally far and is far harder than real data
(``intrinsic=0`` gives that worst case). Queries come from the same distribution and are not
in the index. The ground truth is exact inner-product top-k computed with numpy; each index
is timed one query at a time, as the API calls it, and a second pass adds a camera filter
that keeps 10 % of the vectors.

Building a 1M-vector HNSW graph takes minutes on 2 cores: with ``cache_dir``, each FAISS
graph is saved there after its first build (through the index's own save) and loaded by
later runs on the same data and settings.
"""

from __future__ import annotations

import gc
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from lensflow.cloud.search.index.base import Metadata, SearchFilter, VectorIndex
from lensflow.cloud.search.index.exact import ExactIndex
from lensflow.cloud.search.index.store import current_snapshot
from lensflow.shared.errors import LensflowError

IndexKind = Literal["exact", "faiss", "milvus"]
P95_TARGET_MS = 50.0
RECALL_TARGET = 0.95
CAMERAS = tuple(f"cam-{i}" for i in range(10))
FILTER_CAMERA = "cam-3"
_CHUNK = 100_000
_DATA_VERSION = 1
"""Bump when :func:`synthetic` changes, so that cached graphs of older data are not reused."""
_MILVUS_TIMEOUT_S = 600.0
"""Milvus Lite indexes sealed segments while it takes upserts: bulk loads need long calls."""


@dataclass
class SearchCase:
    """Figures of one index at one size."""

    index: str
    size: int
    dim: int
    build_s: float
    p50_ms: float
    p95_ms: float
    recall: float
    filtered_p95_ms: float
    filtered_recall: float
    loaded: bool = False
    """The graph was loaded from the cache folder: ``build_s`` is then the load time."""

    def ratios(self) -> dict[str, tuple[float, bool]]:
        """p95 / target (met when <= 1) and recall / target (met when >= 1)."""
        p95 = max(self.p95_ms, self.filtered_p95_ms) / P95_TARGET_MS
        recall = min(self.recall, self.filtered_recall) / RECALL_TARGET
        return {"p95": (p95, p95 <= 1.0), "recall": (recall, recall >= 1.0)}


@dataclass(frozen=True)
class HnswParams:
    """HNSW settings shared by the FAISS and Milvus indexes of a run."""

    m: int = 32
    ef_construction: int = 40
    ef_search: int = 256


@dataclass
class SearchBench:
    """Every case of one run, with its settings and notes."""

    queries: int
    k: int
    hnsw: HnswParams
    intrinsic: int
    cases: list[SearchCase] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict, each case with its ratios."""
        data = asdict(self)
        for case, row in zip(self.cases, data["cases"], strict=True):
            row["ratios"] = case.ratios()
        return data


@dataclass(frozen=True)
class Synthetic:
    """Clustered unit vectors with metadata, and queries from the same clusters."""

    vectors: NDArray[np.float32]
    metadata: Metadata
    camera_codes: NDArray[np.int64]
    queries: NDArray[np.float32]
    name: str


def synthetic(n: int, *, dim: int, queries: int, intrinsic: int = 32, seed: int = 0) -> Synthetic:
    """Clustered L2-normalised vectors of low intrinsic dimension, and queries like them.

    Args:
        n: Vectors.
        dim: Their dimension.
        queries: Query vectors (not among the ``n``).
        intrinsic: Dimensions of the shared subspace the spread lies in; 0 spreads over
            every dimension (the hardest case for any approximate index).
        seed: Random seed: the same arguments give the same data.

    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(100, n // 1000), dim), dtype=np.float32)
    basis = rng.standard_normal((intrinsic, dim), dtype=np.float32) if intrinsic else None

    def draw(count: int) -> NDArray[np.float32]:
        block = centres[rng.integers(0, len(centres), count)]
        if basis is None:
            block += rng.standard_normal((count, dim), dtype=np.float32)
        else:
            block += rng.standard_normal((count, intrinsic), dtype=np.float32) @ basis
            block += 0.2 * rng.standard_normal((count, dim), dtype=np.float32)
        unit: NDArray[np.float32] = block / np.linalg.norm(block, axis=1, keepdims=True)
        return unit

    vectors = np.empty((n, dim), np.float32)
    for start in range(0, n, _CHUNK):
        vectors[start : start + _CHUNK] = draw(min(n, start + _CHUNK) - start)
    picks = draw(queries)
    codes = rng.integers(0, len(CAMERAS), n)
    metadata = Metadata(
        tuple(np.asarray(CAMERAS)[codes].tolist()),
        tuple(np.asarray(("person", "car", "bike", "truck", "dog"))[codes % 5].tolist()),
        1.7e9 + np.arange(n, dtype=np.float64),
    )
    return Synthetic(vectors, metadata, codes, picks, f"n{n}-d{dim}-i{intrinsic}-s{seed}")


def exact_top_k(
    queries: NDArray[np.float32],
    vectors: NDArray[np.float32],
    *,
    k: int,
    mask: NDArray[np.bool_] | None = None,
) -> NDArray[np.int64]:
    """Row numbers of the exact top ``k`` of each query (inner product), chunked over rows."""
    best_rows = np.zeros((len(queries), 0), np.int64)
    best_scores = np.zeros((len(queries), 0), np.float32)
    for start in range(0, len(vectors), _CHUNK):
        scores = queries @ vectors[start : start + _CHUNK].T
        if mask is not None:
            scores[:, ~mask[start : start + _CHUNK]] = -np.inf
        take = min(k, scores.shape[1])
        part = np.argpartition(-scores, take - 1, axis=1)[:, :take]
        best_rows = np.hstack([best_rows, part + start])
        best_scores = np.hstack([best_scores, np.take_along_axis(scores, part, axis=1)])
        keep = np.argsort(-best_scores, axis=1)[:, :k]
        best_rows = np.take_along_axis(best_rows, keep, axis=1)
        best_scores = np.take_along_axis(best_scores, keep, axis=1)
    return best_rows


def _latencies_and_recall(
    index: VectorIndex,
    queries: NDArray[np.float32],
    truth: NDArray[np.int64],
    *,
    k: int,
    filters: SearchFilter | None,
) -> tuple[float, float, float]:
    """p50 and p95 latency (ms) of single-query searches, and mean recall@k."""
    for query in queries[:5]:
        index.search(query, k=k, filters=filters)  # warm caches and lazy loads
    times, recalls = [], []
    for query, expected in zip(queries, truth, strict=True):
        start = time.perf_counter()
        found = index.search(query, k=k, filters=filters)
        times.append((time.perf_counter() - start) * 1000)
        # ids are row numbers in this benchmark
        recalls.append(len({i for i, _ in found} & set(expected.tolist())) / k)
    p50, p95 = np.percentile(times, [50, 95])
    return float(p50), float(p95), float(np.mean(recalls))


def _open(kind: IndexKind, dim: int, folder: Path, hnsw: HnswParams) -> VectorIndex:
    if kind == "exact":
        return ExactIndex(dim)
    if kind == "faiss":
        from lensflow.cloud.search.index.faiss_hnsw import FaissHnswIndex

        return FaissHnswIndex(
            dim,
            m=hnsw.m,
            ef_construction=hnsw.ef_construction,
            ef_search=hnsw.ef_search,
            path=folder,
        )
    from lensflow.cloud.search.index.milvus import MilvusIndex

    return MilvusIndex(
        dim,
        uri=str(folder / "milvus.db"),
        m=hnsw.m,
        ef_construction=hnsw.ef_construction,
        ef_search=hnsw.ef_search,
        timeout_s=_MILVUS_TIMEOUT_S,
    )


def _fill(
    kind: IndexKind, index: VectorIndex, data: Synthetic, progress: Callable[[str], None]
) -> None:
    """Add every vector in chunks (ids are row numbers); seal Milvus' segments after."""
    size = len(data.vectors)
    for first in range(0, size, _CHUNK):
        stop = min(size, first + _CHUNK)
        index.add(np.arange(first, stop), data.vectors[first:stop], _slice(data, first, stop))
        progress(f"  {kind}: {stop:,} of {size:,} vectors added")
    if kind == "milvus":
        index.save()  # seal the segments so that Milvus builds their indexes
        index.wait_indexed()  # type: ignore[attr-defined]


def run_case(
    kind: IndexKind,
    data: Synthetic,
    truth: tuple[NDArray[np.int64], NDArray[np.int64]],
    *,
    k: int,
    hnsw: HnswParams,
    cache_dir: Path | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> SearchCase:
    """Build (or load) one index on ``data``, then time and score plain and filtered queries."""
    size, dim = data.vectors.shape
    # Milvus Lite's background threads may still write a file while the folder goes away
    scratch_dir = TemporaryDirectory(prefix="lensflow-bench-search-", ignore_cleanup_errors=True)
    with scratch_dir as scratch:
        folder, cached = Path(scratch), kind == "faiss" and cache_dir is not None
        if cached and cache_dir is not None:
            name = f"faiss-{data.name}-m{hnsw.m}-efc{hnsw.ef_construction}-v{_DATA_VERSION}"
            folder = cache_dir / name
        index = _open(kind, dim, folder, hnsw)
        start = time.perf_counter()
        loaded = cached and current_snapshot(folder) is not None
        if loaded:
            index.load()
            progress(f"  {kind}: graph loaded from {folder}")
        else:
            _fill(kind, index, data, progress)
            if cached:
                index.save()
        build_s = time.perf_counter() - start
        p50, p95, recall = _latencies_and_recall(index, data.queries, truth[0], k=k, filters=None)
        camera = SearchFilter.of(cameras=FILTER_CAMERA)
        _, f_p95, f_recall = _latencies_and_recall(
            index, data.queries, truth[1], k=k, filters=camera
        )
        if kind == "milvus":
            index.close()  # type: ignore[attr-defined]
        del index
        gc.collect()
    _remove_with_retries(Path(scratch_dir.name))
    return SearchCase(kind, size, dim, build_s, p50, p95, recall, f_p95, f_recall, loaded)


def _remove_with_retries(folder: Path, attempts: int = 5) -> None:
    """Remove what a late writer left behind (best effort: it is a temporary folder)."""
    for _ in range(attempts):
        if not folder.exists():
            return
        shutil.rmtree(folder, ignore_errors=True)
        time.sleep(0.2)


def _slice(data: Synthetic, start: int, stop: int) -> Metadata:
    meta = data.metadata
    return Metadata(
        meta.cameras[start:stop], meta.classes[start:stop], meta.captured_at[start:stop]
    )


def run_search_bench(
    *,
    sizes: Sequence[int],
    dim: int,
    large_dim: int,
    large_from: int,
    kinds: Sequence[IndexKind],
    queries: int = 200,
    k: int = 10,
    hnsw: HnswParams | None = None,
    intrinsic: int = 32,
    milvus_max: int = 20_000,
    cache_dir: Path | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> SearchBench:
    """Every index kind at every size against exact top-``k`` on the same data.

    Args:
        sizes: Vector counts.
        dim: Dimension below ``large_from`` vectors.
        large_dim: Dimension from ``large_from`` vectors on (memory and build time).
        large_from: The size from which ``large_dim`` applies.
        kinds: Index kinds to measure.
        queries: Timed queries per pass.
        k: Neighbours per query.
        hnsw: ``m``, ``ef_construction``, ``ef_search`` of the HNSW indexes.
        intrinsic: Intrinsic dimension of the data (see :func:`synthetic`).
        milvus_max: Largest size run on Milvus Lite (pure Python: slow to fill).
        cache_dir: Where FAISS graphs are kept between runs; ``None`` builds every time.
        progress: Receives a line per step.

    """
    params = hnsw or HnswParams()
    bench = SearchBench(queries=queries, k=k, hnsw=params, intrinsic=intrinsic)
    for size in sizes:
        size_dim = large_dim if size >= large_from else dim
        if size_dim != dim:
            bench.notes.append(
                f"{size:,} vectors use dimension {size_dim}, not {dim}: {size:,} x {dim} "
                f"float32 is {size * dim * 4 / 2**30:.1f} GiB per copy (see --large-dim)"
            )
        progress(f"{size:,} x {size_dim}: generating clustered vectors and the exact top-{k}")
        data = synthetic(size, dim=size_dim, queries=queries, intrinsic=intrinsic)
        mask = data.camera_codes == CAMERAS.index(FILTER_CAMERA)
        truth = (
            exact_top_k(data.queries, data.vectors, k=k),
            exact_top_k(data.queries, data.vectors, k=k, mask=mask),
        )
        for kind in kinds:
            if kind == "milvus" and size > milvus_max:
                bench.notes.append(
                    f"milvus skipped at {size:,} vectors (--milvus-max {milvus_max:,}): Milvus "
                    "Lite is a pure-Python engine for development (about 100 ms per query at "
                    "100k x 256 here); a Milvus server is the path at that size"
                )
                continue
            progress(f"{size:,} x {size_dim}: {kind}")
            try:
                case = run_case(
                    kind, data, truth, k=k, hnsw=params, cache_dir=cache_dir, progress=progress
                )
            except LensflowError as err:
                bench.notes.append(f"{kind} failed at {size:,} vectors: {err}")
                continue
            bench.cases.append(case)
        del data, truth
        gc.collect()
    return bench
