"""``lensflow bench cloud``: the cloud tier against its baselines, in one run.

Four measurements, each beside a baseline taken in the same run on the same machine:

1. Ingest (:mod:`lensflow.bench.cloud_ingest`): crops/s a real worker commits from MQTT
   into the results database, over the bare broker's publish → receive rate.
2. Batching (:mod:`lensflow.bench.cloud_batching`): images/s of a real classifier plugin
   at batch N over batch 1.
3. API (:mod:`lensflow.bench.cloud_api`): p95 of filtered ``GET /v1/results`` pages on a
   million PostgreSQL rows, over the 50 ms target.
4. Triton (:mod:`lensflow.bench.cloud_triton`): crops/s of worker processes whose classifier
   runs on a real Triton with dynamic batching, over the same without, beside in-worker ONNX
   Runtime; same crops, same outputs.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from lensflow.bench.cloud_api import TARGET_MS, ApiBench, run_api_bench
from lensflow.bench.cloud_batching import BatchingBench, run_batching
from lensflow.bench.cloud_ingest import IngestBench, run_ingest
from lensflow.bench.cloud_triton import TARGET as TRITON_TARGET
from lensflow.bench.cloud_triton import TritonBench, run_triton_bench
from lensflow.services.postgres import PostgresCluster

IngestDatabase = Literal["sqlite", "postgresql"]
Ratio = tuple[float, str, bool]
"""A ratio, its target as text, and whether it meets it."""

INGEST_TARGET = 0.5
BATCHING_TARGET = 1.5


@dataclass
class CloudBench:
    """Figures of one run; a part that was skipped is None."""

    ingest: IngestBench | None = None
    batching: BatchingBench | None = None
    api: ApiBench | None = None
    triton: TritonBench | None = None
    notes: list[str] = field(default_factory=list)

    def ratios(self) -> dict[str, Ratio]:
        """Each measured ratio with its target and whether it is met."""
        rows: dict[str, Ratio] = {}
        if self.ingest is not None:
            ratio = self.ingest.ratio
            rows["ingest worker / bare broker"] = (
                ratio,
                f">= {INGEST_TARGET:.2f}",
                ratio >= INGEST_TARGET,
            )
        if self.batching is not None:
            ratio = self.batching.ratio
            rows[f"classifier batch {self.batching.batch} / batch 1"] = (
                ratio,
                f">= {BATCHING_TARGET:.2f}",
                ratio >= BATCHING_TARGET,
            )
        if self.api is not None and self.api.schema is not None:
            ratio = self.api.schema.ratio
            rows[f"API p95 / {TARGET_MS:g} ms"] = (ratio, "<= 1.00", ratio <= 1.0)
        if self.triton is not None:
            ratio = self.triton.ratio
            rows["Triton batched / unbatched"] = (
                ratio,
                f">= {TRITON_TARGET:.2f}",
                ratio >= TRITON_TARGET,
            )
        return rows

    def as_json(self) -> dict[str, Any]:
        """Everything, ratios included, as JSON-ready data."""
        return {
            **asdict(self),
            "ratios": {
                name: {"value": value, "target": target, "met": met}
                for name, (value, target, met) in self.ratios().items()
            },
        }


@dataclass(frozen=True)
class TritonOptions:
    """The Triton part's model and load: processes x senders, each sending requests of crops."""

    artifact: Path
    """EfficientNet-Lite0's export with features (what ``vehicle_type`` runs)."""
    crops: int = 256
    processes: int = 2
    senders: int = 4
    request_size: int = 1
    rounds: int = 3


def run_cloud_bench(
    *,
    crops: int,
    rows: int,
    classifier: Path | None,
    batch: int = 16,
    images: int = 64,
    ingest_database: IngestDatabase = "sqlite",
    skip_postgres: bool = False,
    triton: TritonOptions | None = None,
    progress: Callable[[str], object] = print,
) -> CloudBench:
    """Run every part of the cloud benchmark.

    Args:
        crops: Crop messages per ingest measurement.
        rows: Crops loaded into PostgreSQL for the API measurement.
        classifier: The classifier's ONNX file; the batching part is skipped when None.
        batch: The batch size compared with 1.
        images: Crops per classifier measurement.
        ingest_database: Where the ingest worker writes (a fresh database per round).
        skip_postgres: Leave out everything that needs PostgreSQL (the API part).
        triton: How to measure the classifier on Triton; that part is skipped when None.
        progress: Called with a line before each part.

    Returns:
        The figures.

    Raises:
        LensflowError: If a broker, a database or the API cannot be started.
        ValueError: If ``ingest_database`` is PostgreSQL while ``skip_postgres`` is set.

    """
    if skip_postgres and ingest_database == "postgresql":
        raise ValueError("expected --skip-postgres with a SQLite ingest, got a PostgreSQL one")
    result = CloudBench()
    with tempfile.TemporaryDirectory(prefix="lensflow-bench-cloud-") as scratch:
        folder = Path(scratch)
        progress(f"ingest: {crops} crops through mosquitto, bare and into a worker ...")
        result.ingest = _ingest(crops, folder=folder, database=ingest_database)
        if classifier is not None:
            progress(f"classifier: {classifier} at batch 1 and batch {batch} ...")
            result.batching = run_batching(classifier, batch=batch, images=images)
        else:
            result.notes.append("batching skipped: no classifier model")
        if triton is not None:
            progress(
                f"triton: {triton.crops} crops from {triton.processes} processes x "
                f"{triton.senders} senders, {triton.request_size} a request ..."
            )
            result.triton = run_triton_bench(
                triton.artifact,
                folder=folder,
                crops=triton.crops,
                processes=triton.processes,
                senders=triton.senders,
                request_size=triton.request_size,
                rounds=triton.rounds,
                progress=progress,
            )
        else:
            result.notes.append("Triton skipped (--no-triton)")
        if not skip_postgres:
            progress(f"API: loading {rows:,} rows into PostgreSQL, then timing pages ...")
            result.api = run_api_bench(rows=rows, folder=folder)
        else:
            result.notes.append("API skipped (--skip-postgres)")
    return result


def _ingest(crops: int, *, folder: Path, database: IngestDatabase) -> IngestBench:
    """The ingest part on SQLite files, or on fresh databases of a private PostgreSQL."""
    if database == "sqlite":
        return run_ingest(crops=crops, folder=folder)
    with PostgresCluster() as cluster:
        return run_ingest(
            crops=crops, folder=folder, database_url=lambda _round: cluster.create_database()
        )
