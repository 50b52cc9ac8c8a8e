"""``lensflow models triton-repo OUT``: a Triton model repository from the exported models.

Which models: each ``--model NAME=SOURCE`` (SOURCE an ``.onnx`` file, a folder holding the
``model.onnx`` that ``lensflow models export-hf`` writes, or a manifest classifier, exported
with its features output as ``vehicle_type`` and ``embeddings`` run it), and every node of
``--pipeline FILE`` with ``runtime: triton`` (served under its ``triton.model`` name, from its
``model`` param). Without either: the manifest's ``efficientnet-lite0`` as
``efficientnet-lite0``, the model of the shipped ``vehicle_type`` and ``embeddings`` nodes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from lensflow.cli.defaults import manifest_or_default
from lensflow.cli.models import DEFAULT_MANIFEST, ManifestOption, fail, out
from lensflow.shared.errors import LensflowError

DEFAULT_MODEL = "efficientnet-lite0"
_EFFNET_NODES = {"vehicle_type", "embeddings"}


def triton_repo(
    out_dir: Annotated[Path, typer.Argument(help="Repository folder to write (created).")],
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            help="NAME=SOURCE: an .onnx file, an export-hf folder or a manifest classifier.",
        ),
    ] = None,
    pipeline: Annotated[
        Path | None,
        typer.Option(help="Serve every node of this pipeline YAML with runtime: triton."),
    ] = None,
    backend: Annotated[
        str, typer.Option(help="onnxruntime (production) or python (ONNX Runtime in Python).")
    ] = "onnxruntime",
    max_batch: Annotated[int, typer.Option(min=1, help="Triton's max_batch_size.")] = 32,
    queue_delay_us: Annotated[
        int, typer.Option(min=0, help="Dynamic batcher's max queue delay, microseconds.")
    ] = 2000,
    dynamic_batching: Annotated[
        bool, typer.Option(help="Merge concurrent requests into one model run.")
    ] = True,
    instances: Annotated[int, typer.Option(min=1, help="Model instances per model.")] = 1,
    kind: Annotated[str, typer.Option(help="Instances on auto, cpu or gpu.")] = "auto",
    tensorrt: Annotated[
        bool, typer.Option(help="TensorRT execution accelerator on GPUs (onnxruntime backend).")
    ] = False,
    threads: Annotated[
        int | None, typer.Option(min=1, help="ONNX Runtime threads per instance.")
    ] = None,
    manifest: ManifestOption = DEFAULT_MANIFEST,
) -> None:
    """Write a Triton model repository (config.pbtxt with dynamic batching, one model each)."""
    from lensflow.models.export.triton_repo import RepoSettings, write_repository

    if backend not in ("onnxruntime", "python"):
        fail(f"--backend must be onnxruntime or python, got {backend!r}")
    if kind not in ("auto", "cpu", "gpu"):
        fail(f"--kind must be auto, cpu or gpu, got {kind!r}")
    manifest = manifest_or_default(manifest)
    try:
        settings = RepoSettings(
            backend=backend,  # type: ignore[arg-type]  # checked above
            max_batch_size=max_batch,
            max_queue_delay_us=queue_delay_us if dynamic_batching else 0,
            dynamic_batching=dynamic_batching,
            instances=instances,
            kind=kind,  # type: ignore[arg-type]  # checked above
            tensorrt=tensorrt,
            intra_op_threads=threads,
        )
        wanted = [_parse(item) for item in model or []]
        if pipeline is not None:
            wanted += pipeline_models(pipeline)
        if not wanted:
            wanted = [(DEFAULT_MODEL, DEFAULT_MODEL)]
        models = unique([(name, resolve(source, manifest=manifest)) for name, source in wanted])
        written = write_repository(out_dir, models, settings)
    except LensflowError as err:
        fail(f"triton-repo failed: {err}")
    for (name, source), config in zip(models, written, strict=True):
        out.print(f"{name}: {source} -> {config.parent}", markup=False)
    out.print(
        f"serve it: tritonserver --model-repository={out_dir.resolve()} (nodes: runtime: triton, "
        "triton: {url: HOST:8001, model: NAME})",
        markup=False,
    )


def unique(models: list[tuple[str, Path]]) -> list[tuple[str, Path]]:
    """Each (name, file) once: nodes sharing a model (vehicle_type and embeddings) share it.

    Raises:
        LensflowError: One name is given two different files.

    """
    chosen: dict[str, Path] = {}
    for name, path in models:
        if name in chosen and chosen[name].resolve() != path.resolve():
            raise LensflowError(
                f"model {name!r} is given two files, {chosen[name]} and {path}: expected one"
            )
        chosen.setdefault(name, path)
    return list(chosen.items())


def _parse(item: str) -> tuple[str, str]:
    name, sep, source = item.partition("=")
    if not sep or not name or not source:
        fail(f"--model must be NAME=SOURCE, got {item!r}")
    return name, source


def pipeline_models(path: Path) -> list[tuple[str, str]]:
    """``(triton model name, model source)`` of each ``runtime: triton`` node of a pipeline.

    Raises:
        LensflowError: The file cannot be read, or a triton node names no model.

    """
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise LensflowError(f"cannot read pipeline {path}: {err}") from err
    found = []
    for node in document.get("pipeline") or []:
        params: dict[str, Any] = (node or {}).get("params") or {}
        if params.get("runtime") != "triton":
            continue
        name = (params.get("triton") or {}).get("model")
        if not name:
            raise LensflowError(f"{path}: node {node.get('name')!r} has no triton.model")
        source = params.get("model")
        if source is None and node.get("class") in _EFFNET_NODES:
            source = DEFAULT_MODEL
        if source is None:
            raise LensflowError(
                f"{path}: node {node.get('name')!r} names no model file to serve; add its "
                "model param or use --model NAME=SOURCE"
            )
        if node.get("class") == "car_make_vit":
            source = str(Path(source) / params.get("onnx_file", "model.onnx"))
        found.append((str(name), str(source)))
    return found


def resolve(source: str, *, manifest: Path) -> Path:
    """The ONNX file of a source: the file, ``<folder>/model.onnx``, or a manifest export.

    Raises:
        LensflowError: No such file or folder, and no such manifest classifier.

    """
    path = Path(source)
    if path.is_file():
        return path
    if path.is_dir() and (path / "model.onnx").is_file():
        return path / "model.onnx"
    if source.endswith(".onnx") or path.is_dir():
        raise LensflowError(f"expected an ONNX file at {source!r}, got none")
    from lensflow.models.export.artifacts import classifier_artifact_for

    return classifier_artifact_for(source, manifest=manifest, features=True, log=out.print)


def register(app: typer.Typer) -> None:
    """Add the command to the ``models`` sub-app."""
    app.command("triton-repo")(triton_repo)
