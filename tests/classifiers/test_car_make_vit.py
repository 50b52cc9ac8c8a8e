"""The car_make_vit plugin and `lensflow models export-hf` on a tiny random ViT checkpoint.

No weights can be downloaded here, so the checkpoint is a ViT built from a tiny config,
randomly initialised (wide enough that different photos get different makes) and saved with
save_pretrained, as a fine-tuned car-make ViT would be. Inputs are crops of the real photos.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from lensflow.cli import app
from lensflow.models.export.hf import (
    ExportCheckError,
    check_logits,
    check_top1,
    export_hf_classifier,
)
from lensflow.shared.classifiers.base import Image
from lensflow.shared.classifiers.car_make_vit import CarMakeViT, CarMakeViTParams
from lensflow.shared.classifiers.registry import default_registry
from lensflow.shared.dag.compiler import load_pipeline
from lensflow.shared.dag.engine import Pipeline
from lensflow.shared.errors import ConfigError, ModelError
from tests.support.plugins import BrightnessCarMake, make_registry
from tests.support.triton import serving

MAKES = ["audi", "bmw", "ford", "toyota", "volvo"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ViT (32x32 input, 2 layers) with 5 car makes, saved like a real checkpoint."""
    from lensflow.shared.torch_env import install_torchvision_nms

    install_torchvision_nms()
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessorPil

    folder = tmp_path_factory.mktemp("car-make-vit")
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        initializer_range=0.5,  # distinct logits, so photos get different makes
        id2label=dict(enumerate(MAKES)),
        label2id={make: i for i, make in enumerate(MAKES)},
    )
    torch.manual_seed(0)
    ViTForImageClassification(config).eval().save_pretrained(folder)
    ViTImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def exported(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkpoint exported to ONNX FP32 and INT8 (the export's own check passed)."""
    out = tmp_path_factory.mktemp("car-make-onnx")
    export_hf_classifier(checkpoint, out_dir=out, int8=True)
    return out


@pytest.fixture(scope="module")
def crops(sample_images: dict[str, Image]) -> list[Image]:
    """Eight real crops of various sizes and aspect ratios."""
    bus, zidane = sample_images["bus"], sample_images["zidane"]
    return [
        bus,
        zidane,
        bus[230:768, 17:801],  # the bus
        bus[398:902, 48:245],  # a man, tall and narrow
        zidane[48:720, 743:1141],  # Zidane
        zidane[437:714, 437:524],  # his tie
        bus[:200, :300],  # street background
        np.ascontiguousarray(zidane[:, ::-1]),  # mirrored
    ]


def plugin(folder: Path, **params: Any) -> CarMakeViT:
    return CarMakeViT(CarMakeViTParams(model=str(folder), **params))


def transformers_logits(checkpoint: Path, crops: list[Image]) -> np.ndarray:
    """Logits of a plain transformers forward, preprocessed by transformers itself."""
    import torch
    from transformers import ViTForImageClassification, ViTImageProcessorPil

    model = ViTForImageClassification.from_pretrained(checkpoint).eval()
    processor = ViTImageProcessorPil.from_pretrained(checkpoint)
    rgb = [np.ascontiguousarray(crop[..., ::-1]) for crop in crops]
    with torch.no_grad():
        return model(**processor(images=rgb, return_tensors="pt")).logits.numpy()


def test_labels_and_outputs_come_from_id2label(exported: Path, crops: list[Image]) -> None:
    classifier = plugin(exported, top_k=3)
    assert classifier.labels == tuple(MAKES)
    results = classifier.process_batch(crops, [{}] * len(crops))
    for result in results:
        assert set(result) >= set(CarMakeViT.outputs)
        scores = [item["score"] for item in result["top_k"]]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True)
        assert (result["label"], result["score"]) == (result["top_k"][0]["label"], scores[0])
    assert {result["label"] for result in results} <= set(MAKES)
    assert len({result["label"] for result in results}) > 1  # the photos are told apart


@pytest.mark.parametrize("runtime", ["onnxruntime", "transformers"])
def test_a_batch_gives_what_one_by_one_gives(
    checkpoint: Path, exported: Path, crops: list[Image], runtime: str
) -> None:
    classifier = plugin(exported if runtime == "onnxruntime" else checkpoint, runtime=runtime)
    batched = classifier.process_batch(crops, [{}] * len(crops))
    single = [classifier.process(crop, {}) for crop in crops]
    assert [r["label"] for r in batched] == [r["label"] for r in single]
    assert [r["score"] for r in batched] == pytest.approx([r["score"] for r in single], abs=1e-5)


def test_transformers_runtime_equals_a_direct_transformers_forward(
    checkpoint: Path, crops: list[Image]
) -> None:
    # given the plugin on runtime transformers, and transformers' own processor and model
    classifier = plugin(checkpoint, runtime="transformers")
    # then the logits agree: same preprocessing (numpy/PIL vs transformers, equal to ~1e-7,
    # amplified by the wide random weights to ~1e-5), same model
    np.testing.assert_allclose(
        classifier.logits(crops), transformers_logits(checkpoint, crops), atol=1e-4
    )


def test_exported_onnx_equals_transformers(
    checkpoint: Path, exported: Path, crops: list[Image]
) -> None:
    onnx_logits = plugin(exported).logits(crops)
    reference = plugin(checkpoint, runtime="transformers").logits(crops)
    assert float(np.abs(onnx_logits - reference).max()) < 1e-4
    report = json.loads((exported / "export.json").read_text())
    assert report["max_abs_logit_diff"] < 1e-4
    assert report["labels"] == MAKES


def test_int8_export_agrees_on_top1_for_most_crops(
    checkpoint: Path, exported: Path, crops: list[Image]
) -> None:
    int8 = plugin(exported, onnx_file="model.int8.onnx").logits(crops)
    reference = plugin(checkpoint, runtime="transformers").logits(crops)
    assert float(np.mean(int8.argmax(axis=1) == reference.argmax(axis=1))) >= 0.75
    assert (exported / "model.int8.onnx").stat().st_size < (exported / "model.onnx").stat().st_size


def test_onnx_runtime_path_imports_no_torch(exported: Path, repo_root: Path) -> None:
    code = (
        "import sys\n"
        "from lensflow.shared.classifiers.car_make_vit import CarMakeViT, CarMakeViTParams\n"
        f"CarMakeViT(CarMakeViTParams(model={str(exported)!r})).warmup()\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "False"]


def write_pipeline(folder: Path, params: str) -> Path:
    path = folder / "pipeline.yaml"
    path.write_text(
        "pipeline:\n"
        "  - name: object_detection\n"
        "    class: edge_detection\n"
        "  - name: car_make_classification\n"
        "    class: car_make_vit\n"
        "    depends_on: object_detection\n"
        f"    params: {params}\n"
    )
    return path


@pytest.mark.parametrize(
    ("runtime", "folder", "expected"),
    [
        # no such folder
        ("onnxruntime", "missing", "is not a folder"),
        # an ONNX runtime pointed at a checkpoint folder (no model.onnx in it)
        ("onnxruntime", "checkpoint", "lacks model.onnx"),
        # transformers pointed at an empty folder
        ("transformers", "empty", "lacks config.json, preprocessor_config.json, model.safetensors"),
    ],
)
def test_a_bad_model_folder_fails_when_the_pipeline_is_loaded(
    tmp_path: Path, checkpoint: Path, runtime: str, folder: str, expected: str
) -> None:
    folders = {"missing": tmp_path / "no-such-model", "checkpoint": checkpoint}
    (tmp_path / "empty").mkdir()
    model = folders.get(folder, tmp_path / folder)
    path = write_pipeline(tmp_path, f"{{model: {model}, runtime: {runtime}}}")
    with pytest.raises(ConfigError) as caught:
        load_pipeline(path, registry=default_registry())
    message = str(caught.value)
    assert f"{path}:7" in message  # the params line
    assert str(model) in message and expected in message


@pytest.mark.parametrize(
    ("runtime", "file", "expected"),
    [
        # garbage where the exported ONNX model should be
        ("onnxruntime", "model.onnx", "model.onnx: cannot load it as an ONNX model"),
        # garbage where the checkpoint's weights should be
        ("transformers", "model.safetensors", ": cannot load a transformers image-classification"),
    ],
)
def test_a_corrupt_model_file_fails_when_the_pipeline_is_built(
    tmp_path: Path, checkpoint: Path, exported: Path, runtime: str, file: str, expected: str
) -> None:
    # given a model folder whose model file is garbage (it exists, so the YAML checks out)
    source = exported if runtime == "onnxruntime" else checkpoint
    broken = shutil.copytree(source, tmp_path / "broken")
    (broken / file).write_bytes(b"not a model")
    compiled = load_pipeline(write_pipeline(tmp_path, f"{{model: {broken}, runtime: {runtime}}}"))
    # when the pipeline's plugins are created, then a ModelError names the folder or file
    with pytest.raises(ModelError, match=f"{broken}/?[a-z.]*{expected}"):
        Pipeline(compiled)


def test_the_real_plugin_is_discovered_and_the_test_registry_swaps_in_the_fake() -> None:
    assert default_registry().resolve("car_make_vit") is CarMakeViT
    assert make_registry().resolve("car_make_vit") is BrightnessCarMake
    assert (
        make_registry().resolve("lensflow.shared.classifiers.car_make_vit.CarMakeViT") is CarMakeViT
    )


def test_cli_export_hf_writes_a_model_the_plugin_loads(
    checkpoint: Path, tmp_path: Path, crops: list[Image]
) -> None:
    out = tmp_path / "export"
    result = CliRunner().invoke(
        app, ["models", "export-hf", str(checkpoint), "--out", str(out), "--int8"]
    )
    assert result.exit_code == 0, result.output
    assert "max logit diff" in result.output and "top-1 agreement" in result.output
    assert {p.name for p in out.iterdir()} == {
        "model.onnx",
        "model.int8.onnx",
        "config.json",
        "preprocessor_config.json",
        "export.json",
    }
    assert plugin(out).process(crops[0], {})["label"] in MAKES


def test_cli_export_hf_of_a_folder_without_weights_fails_cleanly(
    checkpoint: Path, tmp_path: Path
) -> None:
    source = tmp_path / "no-weights"
    source.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        shutil.copy(checkpoint / name, source / name)
    result = CliRunner().invoke(app, ["models", "export-hf", str(source), "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "export-hf failed" in result.output and "no weights" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    ("got", "expected"),
    [
        (np.array([[0.0, 1.0]], dtype=np.float32), "differ from transformers' by up to 1.000e-02"),
        (np.array([[0.0]], dtype=np.float32), "logits of shape"),
        (np.array([[np.nan, 1.0]], dtype=np.float32), "by up to nan"),
    ],
)
def test_the_export_check_fails_loudly_when_logits_differ(got: np.ndarray, expected: str) -> None:
    reference = np.array([[0.0, 1.01]], dtype=np.float32)
    with pytest.raises(ExportCheckError, match=expected.replace("(", r"\(")):
        check_logits(reference, got, atol=1e-3)


def test_the_int8_check_fails_when_top1_agreement_is_too_low() -> None:
    reference = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=np.float32)
    got = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], dtype=np.float32)
    assert check_top1(reference, got, minimum=0.5) == 0.5
    with pytest.raises(ExportCheckError, match="on 50% of 4 images; expected at least 90%"):
        check_top1(reference, got, minimum=0.9)


@pytest.mark.integration
def test_on_a_real_triton_server_the_export_gives_the_local_results(
    exported: Path, crops: list[Image], tmp_path: Path
) -> None:
    # given the export served by Triton (Python backend, dynamic batching) under a name
    with serving([("car-make", exported / "model.onnx")], tmp_path) as server:
        triton = {"url": server.grpc_url, "model": "car-make"}
        remote = plugin(exported, runtime="triton", triton=triton, top_k=3)
        # when the same crops run on Triton and in the worker
        there = remote.process_batch(crops, [{}] * len(crops))
    here = plugin(exported, top_k=3).process_batch(crops, [{}] * len(crops))
    # then the makes are the same and the scores equal within tolerance
    assert [r["label"] for r in there] == [r["label"] for r in here]
    assert np.allclose([r["score"] for r in there], [r["score"] for r in here], atol=1e-5)
    assert remote.runtime.description == f"triton car-make at {server.grpc_url}"


def test_triton_params_go_with_runtime_triton(exported: Path) -> None:
    with pytest.raises(ValueError, match="runtime triton and triton"):
        plugin(exported, runtime="triton")
