"""A missing model fails when the pipeline is loaded, naming the node, the path and the fix.

For vehicle_type and embeddings (EfficientNet-Lite0 export) and car_make_vit (model folder).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from lensflow.models.export.artifacts import ManifestModelStore
from lensflow.shared.classifiers.embeddings import Embeddings, EmbeddingsParams
from lensflow.shared.classifiers.registry import default_registry
from lensflow.shared.classifiers.vehicle_type import VehicleType, VehicleTypeParams
from lensflow.shared.dag.compiler import load_pipeline
from lensflow.shared.errors import ConfigError, ModelError
from tests.support.plugins import with_store

LENSFLOW = [sys.executable, "-m", "lensflow"]
EXPORTED = Path("efficientnet-lite0") / "export" / "onnx-fp32-features" / "model.onnx"


def lensflow(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LENSFLOW, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"COLUMNS": "300", "PATH": "/usr/bin:/bin", **(env or {})},
    )


@pytest.mark.parametrize("params", [VehicleTypeParams, EmbeddingsParams])
def test_a_missing_onnx_file_is_refused_with_the_fix(
    params: type[VehicleTypeParams], tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "model.onnx"
    with pytest.raises(ValidationError) as info:
        params(model=str(missing))
    message = str(info.value)
    assert f"model file {str(missing)!r} does not exist" in message
    assert "lensflow models export-classifier efficientnet-lite0 --out DIR" in message


def test_an_unexported_model_without_the_export_extra_names_the_expected_path(
    repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an empty model cache, and an export step that cannot run (its module is absent)
    monkeypatch.setenv("LENSFLOW_MODEL_CACHE", str(tmp_path))
    store = ManifestModelStore(export_modules=("lensflow_no_such_module",))
    manifest = str(repo_root / "configs" / "models.yaml")
    # when the params are read, then the error names the expected file and the command
    with pytest.raises(ValidationError) as info:
        with_store(VehicleTypeParams, store, manifest=manifest)
    message = str(info.value)
    assert f"expected {tmp_path / EXPORTED}" in message
    assert "export extra (lensflow_no_such_module) is not installed" in message
    assert "`lensflow models export-classifier efficientnet-lite0`" in message


def test_an_unknown_or_wrong_kind_manifest_model_is_refused(repo_root: Path) -> None:
    manifest = str(repo_root / "configs" / "models.yaml")
    with pytest.raises(ValidationError, match="unknown model 'efficientnet-lite9'"):
        with_store(EmbeddingsParams, model="efficientnet-lite9", manifest=manifest)
    with pytest.raises(ValidationError, match="expected a classifier of kind timm-state-dict"):
        with_store(EmbeddingsParams, model="yolov8s-person", manifest=manifest)
    with pytest.raises(ValidationError, match="manifest 'no/such.yaml', which does not exist"):
        with_store(EmbeddingsParams, manifest="no/such.yaml")


def test_a_corrupt_model_fails_when_the_plugin_is_created(tmp_path: Path) -> None:
    corrupt = tmp_path / "model.onnx"
    corrupt.write_bytes(b"not an onnx model")
    params = VehicleTypeParams(model=str(corrupt))  # the file exists: the params pass
    with pytest.raises(ModelError, match=r"vehicle_type: cannot load ONNX model .*model\.onnx"):
        VehicleType(params)


@pytest.mark.integration
@pytest.mark.slow
def test_a_logits_only_export_is_refused_with_the_fix(model_cache: Path, tmp_path: Path) -> None:
    from lensflow.models.export.classifier import export_timm_classifier
    from tests.conftest import fetch

    weights = fetch("efficientnet-lite0", model_cache)
    logits_only = export_timm_classifier(weights, arch="efficientnet_lite0", out_dir=tmp_path)
    with pytest.raises(
        ModelError, match="has outputs \\['logits'\\], expected 'logits' and 'features'"
    ):
        Embeddings(EmbeddingsParams(model=str(logits_only)))


def test_pipeline_check_names_each_node_its_missing_model_and_the_fix(
    repo_root: Path, tmp_path: Path
) -> None:
    # given a pipeline whose three model-backed nodes point at files that are not there
    missing = tmp_path / "missing"
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        "pipeline:\n"
        "  - name: object_detection\n"
        "    class: edge_detection\n"
        "  - name: vehicle_kind\n"
        "    class: vehicle_type\n"
        "    depends_on: object_detection\n"
        f"    params: {{model: {missing / 'vehicle.onnx'}}}\n"
        "  - name: embedding\n"
        "    class: embeddings\n"
        f"    params: {{model: {missing / 'embed.onnx'}}}\n"
        "  - name: car_make\n"
        "    class: car_make_vit\n"
        f"    params: {{model: {missing / 'car-make-vit'}}}\n"
    )
    # when it is checked
    result = lensflow("pipeline", "check", str(pipeline), cwd=repo_root)
    # then it fails with one FILE:LINE error per node, naming the node, the path and the fix
    assert result.returncode == 1
    errors = result.stderr.replace("\n", " ")
    assert "3 error(s)" in errors
    for line, node, plugin, path, fix in [
        (7, "vehicle_kind", "vehicle_type", "vehicle.onnx", "lensflow models export-classifier"),
        (10, "embedding", "embeddings", "embed.onnx", "lensflow models export-classifier"),
        (13, "car_make", "car_make_vit", "car-make-vit", "lensflow models export-hf"),
    ]:
        assert f"{pipeline}:{line}:" in errors
        assert f"node {node!r} ({plugin})" in errors
        assert str(missing / path) in errors
        assert fix in errors


@pytest.mark.integration
@pytest.mark.slow
def test_export_classifier_makes_what_the_plugins_need(repo_root: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    out = tmp_path / "export"
    result = lensflow(
        "models", "export-classifier", "efficientnet-lite0", "--out", str(out), cwd=repo_root
    )
    assert result.returncode == 0, result.stderr
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["logits", "features"]
    assert Embeddings(EmbeddingsParams(model=str(out / "model.onnx"))).model_path.is_file()


@pytest.mark.parametrize("strict", [True, False])
def test_a_model_missing_on_this_machine_is_an_error_for_a_worker_and_a_warning_for_a_check(
    repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, strict: bool
) -> None:
    # given an empty model cache and a machine that cannot build the export
    monkeypatch.setenv("LENSFLOW_MODEL_CACHE", str(tmp_path))
    store = ManifestModelStore(export_modules=("lensflow_no_such_module",), strict=strict)
    registry = default_registry().with_models(store)
    pipeline = repo_root / "configs" / "demo" / "pipeline.yaml"
    if strict:  # a worker loading it: the load fails, naming the node and the fix
        with pytest.raises(ConfigError, match="vehicle_type_classification") as info:
            load_pipeline(pipeline, registry=registry)
        assert "lensflow models export-classifier efficientnet-lite0" in str(info.value)
    else:  # a check of a pipeline meant for other machines: it compiles, with warnings
        compiled = load_pipeline(pipeline, registry=registry)
        assert [w.field for w in compiled.warnings] == [
            "pipeline.2.params",
            "pipeline.3.params",
        ]
        assert all("export extra" in w.message for w in compiled.warnings)
