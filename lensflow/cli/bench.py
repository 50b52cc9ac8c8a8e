"""``lensflow bench ...``: benchmarks that print their figures and ratios in one run."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from lensflow.cli.choices import BackendChoice, IngestDatabaseChoice, PrecisionChoice
from lensflow.cli.defaults import manifest_or_default, shipped_help
from lensflow.shared.errors import LensflowError

if TYPE_CHECKING:
    from lensflow.bench.cloud import CloudBench
    from lensflow.models.export.artifacts import Backend
    from lensflow.models.export.exporter import Precision

app = typer.Typer(
    help="Benchmarks (figures and ratios measured in the same run).", no_args_is_help=True
)
out = Console()


@app.command("edge")
def edge(
    model: Annotated[str, typer.Option(help="Manifest name or artifact path.")] = "yolov8s-person",
    backend: Annotated[
        BackendChoice, typer.Option(help="Runtime of the artifact.")
    ] = BackendChoice.OPENVINO,
    precision: Annotated[
        PrecisionChoice, typer.Option(help="Precision of the artifact.")
    ] = PrecisionChoice.INT8,
    frames: Annotated[int, typer.Option(help="Frames per measurement.")] = 40,
    repeats: Annotated[int, typer.Option(help="Timed calls per latency figure.")] = 20,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write JSON.")] = None,
    end_to_end: Annotated[
        bool, typer.Option("--end-to-end", help="Source to acknowledged crop on a real broker.")
    ] = False,
    manifest: Annotated[
        Path | None, typer.Option(help=shipped_help("Model manifest", "models.yaml"))
    ] = None,
    threads: Annotated[
        int, typer.Option(min=1, help="Inference threads (TFLite SSDs: every runtime alike).")
    ] = 2,
    cameras: Annotated[
        list[int] | None,
        typer.Option("--cameras", min=1, help="With --end-to-end: camera counts (repeatable)."),
    ] = None,
    crop_mode: Annotated[
        list[str] | None,
        typer.Option(
            "--crop-mode",
            help="With --end-to-end: best_per_track (the product's default) or "
            "every_detection (repeatable; default: both, the product's default first).",
        ),
    ] = None,
    in_flight: Annotated[
        list[int] | None,
        typer.Option(
            "--in-flight",
            min=1,
            help="With --end-to-end: frames each camera keeps in the detector service "
            "(repeatable; 1 = one frame at a time; default: the agent's own).",
        ),
    ] = None,
) -> None:
    """Detector path vs raw engine, ultralytics predict and the engine's throughput limit.

    For a TFLite SSD (ssd-mobilenet-v2-coco): both runtimes (LiteRT whole, OpenVINO with
    lensflow's decode) beside what Frigate's CPU detector does with the same file.
    """
    from lensflow.bench.edge import run_edge_bench
    from lensflow.models.export.artifacts import artifact_for
    from lensflow.shared.images import read_image, sample_image_paths

    runtime: Backend = backend.value
    bits: Precision = precision.value
    cameras = cameras or [1, 2, 4]
    try:
        artifact = artifact_for(
            model,
            backend=runtime,
            precision=bits,
            manifest=manifest_or_default(manifest),
            log=out.print,
        )
        if artifact.suffix == ".tflite" and not end_to_end:
            _ssd(artifact, ours=runtime, threads=threads, repeats=repeats, json_out=json_out)
            return
        if end_to_end:
            from lensflow.cli.bench_edge_e2e import crop_modes, end_to_end_bench

            end_to_end_bench(
                artifact,
                backend=runtime,
                frames=frames,
                cameras=cameras,
                crop_modes=crop_modes(crop_mode),
                in_flight=[*in_flight] if in_flight else [None],
            )
            return
        fp32 = None
        if bits == "int8" and runtime == "openvino" and not Path(model).exists():
            fp32 = artifact_for(
                model,
                backend=runtime,
                precision="fp32",
                manifest=manifest_or_default(manifest),
                log=out.print,
            )
        photos = [read_image(p) for p in sample_image_paths()]
        clip = [photos[i % len(photos)] for i in range(frames)]
        with out.status("measuring ..."):
            result = run_edge_bench(
                artifact, backend=runtime, frames=clip, repeats=repeats, fp32_artifact=fp32
            )
    except LensflowError as err:
        out.print(f"bench failed: {err}", markup=False)
        raise typer.Exit(1) from None
    _print_edge(result, title=f"{model} {runtime} {bits}")
    if json_out:
        json_out.write_text(json.dumps(asdict(result), indent=2) + "\n")


def _ssd(artifact: Path, *, ours: str, threads: int, repeats: int, json_out: Path | None) -> None:
    from lensflow.bench.edge_ssd import run_ssd_bench
    from lensflow.models.export.samples import fetch_samples
    from lensflow.shared.images import read_image, sample_image_paths

    photos = [read_image(p) for p in [*sample_image_paths(), *fetch_samples()]]
    with out.status("measuring LiteRT, OpenVINO and Frigate's CPU detector ..."):
        result = run_ssd_bench(artifact, frames=photos, threads=threads, repeats=repeats)
    table = Table(
        title=f"bench edge: {artifact.name} ({result.frames} photos, {threads} threads)",
        title_justify="left",
    )
    for column in ("path", "pre", "engine", "post", "per frame", "raw engine call", "fps"):
        table.add_column(column, justify="right" if column != "path" else "left")
    names = {
        "litert": "ours, LiteRT (file whole)",
        "openvino": "ours, OpenVINO (op cut, our decode)",
    }
    for runtime, fig in result.runtimes.items():
        table.add_row(
            names[runtime],
            *(
                f"{v:.2f}"
                for v in (fig.pre_ms, fig.infer_ms, fig.post_ms, fig.frame_ms, fig.raw_ms)
            ),
            f"{1000 / fig.frame_ms:.1f}",
        )
    table.add_row(
        "Frigate CPU detector (detect_raw)", "-", "-", "-", f"{result.frigate_ms:.2f}", "-",
        f"{1000 / result.frigate_ms:.1f}",
    )  # fmt: skip
    table.add_row(
        "Frigate CPU detector + its resize", "-", "-", "-",
        f"{result.frigate_with_resize_ms:.2f}", "-", f"{1000 / result.frigate_with_resize_ms:.1f}",
    )  # fmt: skip
    out.print(table)
    out.print("milliseconds per frame, medians")
    for label, (value, target, ok) in result.ratios(ours).items():
        mark = (
            "" if target == "none" else (" [green]ok[/green]" if ok else " [red]below target[/red]")
        )
        out.print(
            f"{label}: {value:.2f}" + (f" (target {target}){mark}" if target != "none" else "")
        )
    if json_out:
        json_out.write_text(json.dumps(asdict(result), indent=2) + "\n")


def _print_edge(result: object, *, title: str) -> None:
    from lensflow.bench.edge import EdgeBench

    assert isinstance(result, EdgeBench)
    table = Table(title=f"bench edge: {title} ({result.frames} frames)", title_justify="left")
    table.add_column("measure")
    table.add_column("ms / frame", justify="right")
    table.add_column("fps", justify="right")
    stages = result.stages_ms
    rows = [
        ("ours: pre-process", stages["pre"]),
        ("ours: inference", stages["infer"]),
        ("ours: post-process", stages["post"]),
        ("ours: per frame (wall)", result.ours_ms),
        ("raw engine call", result.raw_ms),
        ("ultralytics predict loop", result.ultralytics_ms),
        ("ours: sustained, pipelined", 1000 / result.sustained_fps),
        ("engine throughput limit", 1000 / result.limit_fps),
    ]
    if result.fp32_raw_ms is not None:
        rows.append(("raw engine call, FP32 artifact (f32)", result.fp32_raw_ms))
    for label, ms in rows:
        table.add_row(label, f"{ms:.1f}", f"{1000 / ms:.1f}" if ms else "-")
    out.print(table)
    for label, (value, target, ok) in result.ratios().items():
        mark = "[green]ok[/green]" if ok else "[red]below target[/red]"
        out.print(f"{label}: {value:.2f} (target {target}) {mark}")
    out.print(f"pipelined detections equal sequential ones: F1 {result.same_detections_f1:.3f}")
    for note in result.notes:
        out.print(f"note: {note}")


@app.command("cloud")
def cloud(
    crops: Annotated[
        int, typer.Option(min=10, help="Crop messages per ingest measurement.")
    ] = 2000,
    rows: Annotated[
        int, typer.Option(min=100, help="Crops loaded into PostgreSQL for the API figure.")
    ] = 1_000_000,
    skip_postgres: Annotated[
        bool, typer.Option("--skip-postgres", help="Leave out the API (PostgreSQL) part.")
    ] = False,
    ingest_db: Annotated[
        IngestDatabaseChoice, typer.Option(help="Where the ingest worker writes.")
    ] = IngestDatabaseChoice.SQLITE,
    classifier: Annotated[
        str, typer.Option(help="Classifier: manifest name (timm-state-dict) or .onnx path.")
    ] = "efficientnet-lite0",
    batch: Annotated[int, typer.Option(min=2, help="Batch size compared with 1.")] = 16,
    images: Annotated[int, typer.Option(min=2, help="Crops per classifier measurement.")] = 64,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write JSON.")] = None,
    manifest: Annotated[
        Path | None, typer.Option(help=shipped_help("Model manifest", "models.yaml"))
    ] = None,
    triton: Annotated[
        bool, typer.Option(help="Classifier on a real Triton (from .venv-triton), batched or not.")
    ] = True,
    triton_crops: Annotated[int, typer.Option(min=8, help="Crops per Triton measurement.")] = 256,
    triton_processes: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 2,
    triton_senders: Annotated[int, typer.Option(min=1, help="Senders per process.")] = 4,
    triton_request: Annotated[int, typer.Option(min=1, help="Crops per Triton request.")] = 1,
    triton_rounds: Annotated[int, typer.Option(min=1, help="Rounds of every Triton mode.")] = 3,
) -> None:
    """Worker ingest vs bare broker, batched vs unbatched classifier, API p95, Triton batching."""
    from lensflow.bench.cloud import TritonOptions, run_cloud_bench
    from lensflow.models.export.artifacts import classifier_artifact_for

    try:
        model = classifier_artifact_for(
            classifier, manifest=manifest_or_default(manifest), log=out.print
        )
        result = run_cloud_bench(
            crops=crops,
            rows=rows,
            classifier=model,
            batch=batch,
            images=images,
            ingest_database=ingest_db.value,
            skip_postgres=skip_postgres,
            triton=TritonOptions(
                # vehicle_type's model: EfficientNet-Lite0 with its features output
                classifier_artifact_for(
                    "efficientnet-lite0", manifest=manifest_or_default(manifest), features=True
                ),
                triton_crops,
                triton_processes,
                triton_senders,
                triton_request,
                triton_rounds,
            )
            if triton
            else None,
            progress=out.print,
        )
    except (LensflowError, ValueError) as err:
        out.print(f"bench failed: {err}", markup=False)
        raise typer.Exit(1) from None
    _print_cloud(result, classifier=classifier)
    if json_out:
        json_out.write_text(json.dumps(result.as_json(), indent=2, default=str) + "\n")


def _print_cloud(result: CloudBench, *, classifier: str) -> None:
    """The table of figures and ratios, then the query plans and notes."""
    table = Table(title="bench cloud: figures and baselines of one run", title_justify="left")
    for column in ("measure", "figure", "baseline", "ratio", "target", ""):
        table.add_column(column, justify="left" if column == "measure" else "right")
    ratios = list(result.ratios().values())
    if (ingest := result.ingest) is not None:
        value, target, ok = ratios.pop(0)
        table.add_row(
            f"ingest MQTT -> {ingest.database}, crops/s",
            f"{ingest.worker_per_s:,.0f}",
            f"broker {ingest.broker_per_s:,.0f}",
            f"{value:.2f}",
            target,
            _verdict(ok),
        )
    if (batching := result.batching) is not None:
        value, target, ok = ratios.pop(0)
        table.add_row(
            f"classifier {classifier}, images/s",
            f"b{batching.batch} {batching.batched_per_s:.1f}",
            f"b1 {batching.single_per_s:.1f}",
            f"{value:.2f}",
            target,
            _verdict(ok),
        )
    if (api := result.api) is not None and api.schema is not None:
        value, target, ok = ratios.pop(0)
        latency = api.schema
        table.add_row(
            f"API /v1/results p95, {api.rows:,} rows",
            f"{latency.p95_ms:.1f} ms",
            f"{api.target_ms:g} ms",
            f"{value:.2f}",
            target,
            _verdict(ok),
        )
        table.add_row("  p50", f"{latency.p50_ms:.1f} ms", "", "", "", "")
        table.add_row("  p95, first pages", f"{latency.first_page_p95_ms:.1f} ms", "", "", "", "")
        if latency.next_pages_p95_ms:
            table.add_row(
                "  p95, next pages (cursor)", f"{latency.next_pages_p95_ms:.1f} ms", "", "", "", ""
            )
    if (on_triton := result.triton) is not None:
        value, target, ok = ratios.pop(0)
        table.add_row(
            f"{classifier} on Triton, crops/s",
            f"batched {on_triton.per_s['triton batched']:.1f}",
            f"unbatched {on_triton.per_s['triton unbatched']:.1f}",
            f"{value:.2f}",
            target,
            _verdict(ok),
        )
        local = on_triton.per_s["in-worker onnxruntime"]
        table.add_row("  in-worker ONNX Runtime", f"{local:.1f}", "", "", "", "")
    out.print(table)
    _print_cloud_details(result)


def _print_cloud_details(result: CloudBench) -> None:
    """Ingest and batching checks, the load times and the query plans."""
    if (ingest := result.ingest) is not None:
        rounds = ", ".join(
            f"{w:,.0f}/{b:,.0f}"
            for w, b in zip(ingest.worker_rounds, ingest.broker_rounds, strict=True)
        )
        out.print(
            f"ingest: {ingest.crops} crops of {ingest.message_bytes:,} B, QoS 1, MQTT 5; "
            f"worker/broker crops/s per round: {rounds}; the last round stored {ingest.stored}",
            markup=False,
        )
    if (batching := result.batching) is not None:
        out.print(
            f"classifier: same top-1 label at batch 1 and {batching.batch}: "
            f"{batching.same_labels:.0%} of {batching.images} crops",
            markup=False,
        )
    if (on_triton := result.triton) is not None:
        same = ", ".join(
            f"{mode}: {share:.0%} same type, max score diff {on_triton.max_score_diff[mode]:.1e}"
            for mode, share in on_triton.same_types.items()
        )
        rounds = "; ".join(
            f"{mode} " + "/".join(f"{rate:.0f}" for rate in rates)
            for mode, rates in on_triton.rounds.items()
        )
        out.print(
            f"triton: {on_triton.crops} crops, {on_triton.processes} processes x "
            f"{on_triton.senders} senders, {on_triton.request_size} crop(s) a request; average "
            f"batch Triton formed {on_triton.average_batch:.1f}; vs in-worker: {same}; "
            f"crops/s per round: {rounds}",
            markup=False,
        )
    if (api := result.api) is not None:
        load = " + ".join(f"{step} {seconds:.0f} s" for step, seconds in api.load_s.items())
        out.print(f"PostgreSQL load of {api.rows:,} rows: {load}", markup=False)
        out.print(f"plan, first page: {api.plan_first_page}", markup=False)
        out.print(f"plan, next page: {api.plan_next_page}", markup=False)
        if not api.index_used:
            out.print("note: the first page's plan scans no index of crops", markup=False)
    for note in result.notes:
        out.print(f"note: {note}", markup=False)


def _verdict(ok: bool) -> str:
    return "[green]ok[/green]" if ok else "[red]below target[/red]"
