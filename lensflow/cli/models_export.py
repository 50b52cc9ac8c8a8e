"""``lensflow models export``, ``lensflow models export-hf`` and ``lensflow models calib-set``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from lensflow.cli.choices import FormatChoice, PrecisionChoice
from lensflow.cli.defaults import manifest_or_default, shipped_help
from lensflow.shared.errors import LensflowError

if TYPE_CHECKING:
    from lensflow.models.export.exporter import Format, Precision

out = Console()
err_console = Console(stderr=True)


def export(
    weights: Annotated[str, typer.Option("--weights", "-w", help="A .pt file or a manifest name.")],
    fmt: Annotated[
        FormatChoice, typer.Option("--format", "-f", help="Artifact format.")
    ] = FormatChoice.OPENVINO,
    precision: Annotated[
        PrecisionChoice, typer.Option(help="Artifact precision (int8 needs --calib).")
    ] = PrecisionChoice.FP32,
    calib: Annotated[Path | None, typer.Option(help="Calibration images (int8, gate).")] = None,
    holdout: Annotated[Path | None, typer.Option(help="Hold-out images for the gate.")] = None,
    imgsz: Annotated[int, typer.Option(help="Input size (square).")] = 640,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Artifact folder.")] = None,
    min_f1: Annotated[float, typer.Option(help="Accuracy gate: least F1 vs source.")] = 0.90,
    manifest: Annotated[
        Path | None, typer.Option(help=shipped_help("Model manifest", "models.yaml"))
    ] = None,
) -> None:
    """Export W to ONNX/OpenVINO (INT8 with calibration), gate its accuracy, write its card."""
    from lensflow.models.export.exporter import (
        AccuracyGateError,
        ExportRequest,
        default_out_dir,
        export_model,
    )

    kind: Format = fmt.value
    bits: Precision = precision.value
    try:
        if _runs_as_published(weights, manifest_or_default(manifest)):
            return
        weights_path, name, licence = _resolve_weights(weights, manifest_or_default(manifest))
        target = out_dir or default_out_dir(weights_path, fmt=kind, precision=bits)
        request = ExportRequest(
            weights=weights_path,
            format=kind,
            precision=bits,
            out_dir=target,
            calib_dir=calib,
            holdout_dir=holdout,
            imgsz=imgsz,
            min_f1=min_f1,
            name=name,
            license=licence,
        )
        with out.status(f"exporting {weights_path.name} to {kind} {bits} ..."):
            result = export_model(request)
    except AccuracyGateError as err:
        err_console.print(str(err), markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except LensflowError as err:
        err_console.print(f"export failed: {err}", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    card = result.card
    table = Table(title=f"{card.name}: {card.format} {card.precision}", title_justify="left")
    for column in ("artifact", "classes", "input", "F1 vs source", "precision", "recall"):
        table.add_column(column)
    acc = card.accuracy
    assert acc is not None
    table.add_row(
        str(result.artifact),
        str(len(card.class_names)),
        f"{card.input_size}",
        f"{acc.f1:.3f} (>= {acc.threshold})",
        f"{acc.precision:.3f}",
        f"{acc.recall:.3f}",
    )
    out.print(table)
    out.print(f"model card: {result.card_path}")


def calib_set(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write images into.")],
    count: Annotated[int, typer.Option(help="Number of images.")] = 32,
    source: Annotated[list[Path] | None, typer.Option(help="Source photos.")] = None,
) -> None:
    """Write varied views of a few photos (default: the sample photos) as a calibration set."""
    from lensflow.models.export.calibration import make_calibration_set
    from lensflow.shared.images import sample_image_paths

    try:
        paths = make_calibration_set(source or sample_image_paths(), out_dir, count=count)
    except LensflowError as err:
        err_console.print(f"calib-set failed: {err}", markup=False)
        raise typer.Exit(1) from None
    out.print(f"wrote {len(paths)} images to {out_dir}")


def export_hf(
    source: Annotated[
        Path, typer.Argument(help="Hugging Face checkpoint folder (save_pretrained).")
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="Artifact folder.")],
    int8: Annotated[
        bool, typer.Option("--int8", help="Also write model.int8.onnx (dynamic INT8).")
    ] = False,
    images: Annotated[
        Path | None, typer.Option(help="Check images (default: views of the sample photos).")
    ] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 17,
    atol: Annotated[float, typer.Option(help="Check: largest logit difference (FP32).")] = 1e-3,
    min_int8_agreement: Annotated[
        float, typer.Option(help="Check: least top-1 agreement of INT8 with transformers.")
    ] = 0.9,
) -> None:
    """Export SOURCE to ONNX (+ INT8), check it against transformers, write labels beside it."""
    from lensflow.models.export.calibration import load_images
    from lensflow.models.export.hf import export_hf_classifier

    try:
        check = [image for _, image in load_images(images)] if images is not None else None
        with out.status(f"exporting {source} to ONNX ..."):
            report = export_hf_classifier(
                source,
                out_dir=out_dir,
                int8=int8,
                images=check,
                opset=opset,
                atol=atol,
                min_int8_agreement=min_int8_agreement,
            )
    except LensflowError as err:
        err_console.print(f"export-hf failed: {err}", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    table = Table(title=f"{source.name}: ONNX opset {report.opset}", title_justify="left")
    for column in ("artifact", "classes", "input", "check"):
        table.add_column(column)
    size = f"{report.input_size[0]}x{report.input_size[1]}"
    check_fp32 = f"max logit diff {report.max_abs_logit_diff:.2e} (<= {report.atol:g})"
    table.add_row(str(out_dir / "model.onnx"), str(len(report.labels)), size, check_fp32)
    if report.int8_top1_agreement is not None:
        agreement = f"top-1 agreement {report.int8_top1_agreement:.0%}"
        check_int8 = f"{agreement} (>= {report.min_int8_agreement:.0%})"
        table.add_row(str(out_dir / "model.int8.onnx"), "", "", check_int8)
    out.print(table)
    out.print(f"checked on {report.check_images} images; report: {out_dir / 'export.json'}")


def _runs_as_published(weights: str, manifest: Path) -> bool:
    """Say so, and give its file, when the model is not exported (a uint8 TFLite SSD)."""
    from lensflow.models.export.artifacts import RUN_AS_PUBLISHED
    from lensflow.models.export.fetch import default_cache_dir, fetch_model
    from lensflow.models.export.manifest import load_manifest

    if Path(weights).suffix == ".tflite":
        path, kind = Path(weights), "ssd-tflite"
    elif Path(weights).exists():
        return False
    else:
        entry = load_manifest(manifest).entry(weights)
        if entry.kind not in RUN_AS_PUBLISHED:
            return False
        kind = entry.kind
        path = fetch_model(entry, cache_dir=default_cache_dir(), manifest_dir=manifest.parent)
    backends, own = RUN_AS_PUBLISHED[kind]
    out.print(
        f"{weights} is published as {own} ({kind}) and runs as is on {' and '.join(backends)}: "
        f"nothing to export or re-quantize. Use it as it is: {path}",
        markup=False,
        soft_wrap=True,
    )
    return True


def _resolve_weights(weights: str, manifest: Path) -> tuple[Path, str | None, str | None]:
    """A path as it is; otherwise a manifest name, fetched into the cache: path, name, licence."""
    path = Path(weights)
    if path.exists() or path.suffix in {".pt", ".yaml", ".yml"}:
        return path, None, None
    from lensflow.models.export.fetch import default_cache_dir, fetch_model
    from lensflow.models.export.manifest import load_manifest

    entry = load_manifest(manifest).entry(weights)
    path = fetch_model(entry, cache_dir=default_cache_dir(), manifest_dir=manifest.parent)
    return path, weights, " ".join(entry.license.split()) or None


def register(app: typer.Typer) -> None:
    """Add these commands to the ``models`` sub-app."""
    app.command("export")(export)
    app.command("calib-set")(calib_set)
    app.command("export-hf")(export_hf)
