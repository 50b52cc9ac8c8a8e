"""``lensflow bench search``: vector indexes against exact search (p95 latency, recall@10).

Add it to the bench app with ``register(app)``.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from lensflow.shared.errors import LensflowError

if TYPE_CHECKING:
    from lensflow.bench.search import IndexKind, SearchBench

out = Console()


class IndexChoice(StrEnum):
    """``--index``: an index kind of :mod:`lensflow.cloud.search.index`."""

    EXACT = "exact"
    FAISS = "faiss"
    MILVUS = "milvus"


def search(
    sizes: Annotated[str, typer.Option(help="Comma-separated vector counts.")] = "100000,1000000",
    dim: Annotated[
        int, typer.Option(min=8, help="Vector dimension (EfficientNet-Lite0: 1280).")
    ] = 256,
    large_dim: Annotated[
        int, typer.Option(min=8, help="Dimension used from --large-from vectors on.")
    ] = 256,
    large_from: Annotated[
        int, typer.Option(min=1, help="Size from which --large-dim replaces --dim.")
    ] = 500_000,
    index: Annotated[
        list[IndexChoice] | None,
        typer.Option("--index", help="Index kinds (repeat); default: all three."),
    ] = None,
    queries: Annotated[int, typer.Option(min=20, help="Timed queries per pass.")] = 200,
    m: Annotated[int, typer.Option(min=4, help="HNSW M.")] = 32,
    ef_construction: Annotated[int, typer.Option(min=8, help="HNSW efConstruction.")] = 40,
    ef_search: Annotated[int, typer.Option(min=1, help="HNSW efSearch.")] = 256,
    intrinsic_dim: Annotated[
        int, typer.Option(min=0, help="Intrinsic dimension of the data; 0: full (hardest).")
    ] = 32,
    milvus_max: Annotated[
        int, typer.Option(min=0, help="Largest size run on Milvus Lite.")
    ] = 20_000,
    cache_dir: Annotated[
        Path, typer.Option(help="Keep built FAISS graphs here and reuse them.")
    ] = Path("var/bench/search"),
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Build every graph, reuse and keep none.")
    ] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write JSON.")] = None,
) -> None:
    """p95 query latency and recall@10 of each index vs exact search, at each size."""
    from lensflow.bench.search import HnswParams, run_search_bench

    try:
        counts = [int(part.replace("_", "")) for part in sizes.split(",") if part.strip()]
    except ValueError:
        out.print(f"--sizes must be comma-separated integers, but got {sizes!r}", markup=False)
        raise typer.Exit(2) from None
    kinds: list[IndexKind] = [choice.value for choice in (index or list(IndexChoice))]
    try:
        result = run_search_bench(
            sizes=counts,
            dim=dim,
            large_dim=large_dim,
            large_from=large_from,
            kinds=kinds,
            queries=queries,
            hnsw=HnswParams(m=m, ef_construction=ef_construction, ef_search=ef_search),
            intrinsic=intrinsic_dim,
            milvus_max=milvus_max,
            cache_dir=None if no_cache else cache_dir,
            progress=lambda line: out.print(line, markup=False, style="dim"),
        )
    except (LensflowError, MemoryError) as err:
        out.print(f"bench failed: {err}", markup=False)
        raise typer.Exit(1) from None
    print_search(result)
    if json_out:
        json_out.write_text(json.dumps(result.as_json(), indent=2) + "\n")


def print_search(result: SearchBench) -> None:
    """The table of figures and ratios, then the targets and notes."""
    from lensflow.bench.search import FILTER_CAMERA, P95_TARGET_MS, RECALL_TARGET

    table = Table(
        title=f"bench search: {result.queries} single queries, top-{result.k}, vs exact",
        title_justify="left",
    )
    columns = (
        "index",
        "vectors",
        "dim",
        "build s",  # or load time of a cached graph
        "p50 ms",
        "p95 ms",
        f"recall@{result.k}",
        "filtered p95 ms",
        "filtered recall",
        "p95 / target",
        "recall / target",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "index" else "right")
    for case in result.cases:
        ratios = case.ratios()
        table.add_row(
            case.index,
            f"{case.size:,}",
            str(case.dim),
            f"{case.build_s:.1f}" + (" (loaded)" if case.loaded else ""),
            f"{case.p50_ms:.2f}",
            f"{case.p95_ms:.2f}",
            f"{case.recall:.3f}",
            f"{case.filtered_p95_ms:.2f}",
            f"{case.filtered_recall:.3f}",
            _ratio(*ratios["p95"]),
            _ratio(*ratios["recall"]),
        )
    out.print(table)
    params = result.hnsw
    hnsw = f"M {params.m}, efConstruction {params.ef_construction}, efSearch {params.ef_search}"
    out.print(
        f"targets: p95 < {P95_TARGET_MS:g} ms and recall@{result.k} >= {RECALL_TARGET}; ratios "
        f"take the worse of plain and filtered (camera = {FILTER_CAMERA}, 10 % of vectors); "
        f"HNSW: {hnsw}; data: clustered, intrinsic dimension {result.intrinsic or 'full'}",
        markup=False,
    )
    for note in result.notes:
        out.print(f"note: {note}", markup=False)


def _ratio(value: float, ok: bool) -> str:
    colour = "green" if ok else "red"
    return f"[{colour}]{value:.2f}[/{colour}]"


def register(app: typer.Typer) -> None:
    """Add ``search`` to the ``lensflow bench`` app."""
    app.command("search")(search)
