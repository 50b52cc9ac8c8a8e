"""``lensflow detect IMAGE...``: run a detector on image files, as ``yolo predict`` does.

A table by default; ``--json`` prints one JSON array (an object per image, in the order given:
``{"image", "detections": [{"class_name", "score", "box": [x1, y1, x2, y2]}]}``, or
``{"image", "error"}`` for a file that is missing or does not decode — the others still run);
``--save DIR`` writes each image with its boxes drawn. The exit status is 1 when an image
failed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from lensflow.cli.choices import BackendChoice, PrecisionChoice
from lensflow.cli.defaults import manifest_or_default, shipped_help
from lensflow.shared.detectors.base import Detection, DetectorBackend
from lensflow.shared.errors import ImageError, LensflowError

DEFAULT_MODEL = "ssd-mobilenet-v2-coco"
MAX_PIXELS = 100_000_000
"""Images declaring more pixels than this are refused from their header, before decoding."""

out = Console()
err_console = Console(stderr=True)


def detect(
    images: Annotated[list[Path], typer.Argument(help="Image files (JPEG, PNG, WebP, ...).")],
    model: Annotated[
        str, typer.Option(help="A manifest model name or an artifact path.")
    ] = DEFAULT_MODEL,
    backend: Annotated[
        BackendChoice | None,
        typer.Option(help="Runtime; the model's own when omitted (litert for TFLite)."),
    ] = None,
    precision: Annotated[
        PrecisionChoice | None,
        typer.Option(help="Which export of a manifest model (the model's own when omitted)."),
    ] = None,
    conf: Annotated[float, typer.Option(min=0.0, max=1.0, help="Minimum score.")] = 0.25,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
    save: Annotated[
        Path | None, typer.Option(help="Write the images with their boxes drawn here.")
    ] = None,
    manifest: Annotated[
        Path | None, typer.Option(help=shipped_help("Model manifest", "models.yaml"))
    ] = None,
) -> None:
    """Detect objects in IMAGE files and print them (a table, or JSON with --json)."""
    try:
        detector = _load(model, backend, precision, conf=conf, manifest=manifest)
    except LensflowError as err:
        err_console.print(f"error: {err}", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    results = []
    with detector:
        for path in images:
            results.append(_detect_one(detector, path, save=save))
    if json_out:
        print(json.dumps(results, indent=2))
    else:
        _print_table(results, model=detector.info.path)
    if any("error" in result for result in results):
        raise typer.Exit(1)


def _load(
    model: str,
    backend: BackendChoice | None,
    precision: PrecisionChoice | None,
    *,
    conf: float,
    manifest: Path | None,
) -> DetectorBackend:
    """The detector for a path, or for a manifest model (fetched, exported if it needs to be)."""
    from lensflow.models.export.artifacts import RUN_AS_PUBLISHED, artifact_for
    from lensflow.models.export.manifest import load_manifest
    from lensflow.shared.detectors.factory import load_detector

    path = Path(model)
    if not path.exists():
        source = manifest_or_default(manifest)
        kind = load_manifest(source).entry(model).kind
        chosen = backend.value if backend else _default_backend(kind)
        own = RUN_AS_PUBLISHED[kind][1] if kind in RUN_AS_PUBLISHED else "int8"
        bits = precision.value if precision else own
        path = artifact_for(
            model,
            backend=chosen,  # type: ignore[arg-type]  # a BackendChoice value
            precision=bits,  # type: ignore[arg-type]  # a PrecisionChoice value
            manifest=source,
            log=lambda line: err_console.print(line, markup=False),  # stdout stays JSON
        )
    return load_detector(path, backend=backend.value if backend else "auto", conf=conf)


def _default_backend(kind: str) -> str:
    return {"ssd-tflite": "litert", "ssd-tf-pb": "openvino"}.get(kind, "openvino")


def _detect_one(detector: DetectorBackend, path: Path, *, save: Path | None) -> dict[str, Any]:
    from lensflow.shared.images import decode_image

    try:
        image = decode_image(path.read_bytes(), what=str(path), max_pixels=MAX_PIXELS)
    except OSError as err:
        return {"image": str(path), "error": f"cannot read: {err.strerror or err}"}
    except ImageError as err:
        return {"image": str(path), "error": str(err)}
    try:
        found = detector.detect([image]).detections[0]
    except LensflowError as err:
        return {"image": str(path), "error": str(err)}
    if save is not None:
        _save(image, found, save / f"{path.stem}.jpg")
    return {"image": str(path), "detections": [_as_json(d) for d in found]}


def _as_json(detection: Detection) -> dict[str, Any]:
    return {
        "class_name": detection.class_name,
        "score": round(detection.score, 4),
        "box": [round(v, 1) for v in detection.box],
    }


def _save(image: Any, found: list[Detection], target: Path) -> None:
    import cv2

    drawn = image.copy()
    for detection in found:
        x1, y1, x2, y2 = (round(v) for v in detection.box)
        cv2.rectangle(drawn, (x1, y1), (x2, y2), (0, 200, 255), 2)
        label = f"{detection.class_name} {detection.score:.2f}"
        cv2.putText(
            drawn, label, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 200, 255), 1
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(target), drawn)


def _print_table(results: list[dict[str, Any]], *, model: str) -> None:
    table = Table(title=f"detections ({model})", title_justify="left")
    for column in ("image", "class", "score", "box (x1, y1, x2, y2)"):
        table.add_column(column, overflow="fold")
    for result in results:
        if "error" in result:
            table.add_row(result["image"], "[red]error[/red]", "", result["error"])
            continue
        if not result["detections"]:
            table.add_row(result["image"], "-", "", "")
        for detection in result["detections"]:
            box = ", ".join(f"{v:.0f}" for v in detection["box"])
            table.add_row(
                result["image"], detection["class_name"], f"{detection['score']:.2f}", box
            )
    out.print(table)
