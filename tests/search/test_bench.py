"""``lensflow bench search`` on a tiny scale: it runs every index and reports sane figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer
from typer.testing import CliRunner

from lensflow.bench.search import exact_top_k, run_search_bench, synthetic
from lensflow.cli.bench_search import register


def test_exact_top_k_matches_a_full_sort() -> None:
    data = synthetic(2500, dim=16, queries=5)
    scores = data.queries @ data.vectors.T
    expected = np.argsort(-scores, axis=1)[:, :10]
    np.testing.assert_array_equal(exact_top_k(data.queries, data.vectors, k=10), expected)
    mask = data.camera_codes == 3
    filtered = exact_top_k(data.queries, data.vectors, k=10, mask=mask)
    assert mask[filtered].all()


def test_bench_reports_every_index_and_says_what_it_changed() -> None:
    bench = run_search_bench(
        sizes=[1000, 2000],
        dim=32,
        large_dim=16,
        large_from=2000,
        kinds=["exact", "faiss", "milvus"],
        queries=20,
        milvus_max=1000,
    )
    cases = {(c.index, c.size): c for c in bench.cases}
    assert set(cases) == {
        ("exact", 1000),
        ("faiss", 1000),
        ("milvus", 1000),
        ("exact", 2000),
        ("faiss", 2000),
    }
    # exact search is the ground truth; the HNSW indexes come close on this small set
    assert cases["exact", 1000].recall == cases["exact", 2000].filtered_recall == 1.0
    assert cases["faiss", 2000].recall >= 0.9 and cases["milvus", 1000].recall >= 0.9
    assert cases["faiss", 2000].dim == 16
    assert any("dimension 16" in note for note in bench.notes)
    assert any("milvus skipped at 2,000" in note for note in bench.notes)


def test_cli_prints_the_table_and_writes_json(tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # a group, so the command is addressed by name
    out = tmp_path / "bench.json"
    args = ["search", "--sizes", "2000", "--dim", "16", "--queries", "20", "--no-cache"]
    result = CliRunner().invoke(
        app,
        [*args, "--index", "exact", "--index", "faiss", "--json", str(out)],
        env={"COLUMNS": "200"},  # rich wraps the table's headers at 80
    )
    assert result.exit_code == 0, result.output
    assert "p95 / target" in result.output and "targets: p95 < 50 ms" in result.output
    data = json.loads(out.read_text())
    assert [c["index"] for c in data["cases"]] == ["exact", "faiss"]
    assert data["cases"][0]["ratios"]["recall"][1] is True
