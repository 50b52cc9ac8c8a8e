"""``lensflow models triton-repo``: one Triton model per ONNX file, configs Triton can read.

Each ``config.pbtxt`` is parsed back into Triton's own ``ModelConfig`` protobuf: a field Triton
does not know fails the parse. The Python-backend repositories are served by a real Triton in
tests/classifiers/test_triton_runtime.py; the onnxruntime backend's (production) are checked
here by their config, since the server bundled with nvidia-pytriton has no onnxruntime backend.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb
from typer.testing import CliRunner

from lensflow.cli import app
from lensflow.models.export.triton_repo import RepoSettings, TritonRepoError, write_repository
from lensflow.shared.errors import ModelError
from tests.support.triton import tiny_onnx


def parsed(config: Path) -> pb.ModelConfig:
    return text_format.Parse(config.read_text(), pb.ModelConfig())


def test_a_batching_model_gets_dynamic_batching_and_its_sha256(tmp_path: Path) -> None:
    source = tiny_onnx(tmp_path / "tiny.onnx")
    settings = RepoSettings(max_batch_size=16, max_queue_delay_us=500, instances=2, kind="gpu")
    (written,) = write_repository(tmp_path / "repo", [("tiny", source)], settings)
    config = parsed(written)
    assert (config.name, config.backend, config.max_batch_size) == ("tiny", "onnxruntime", 16)
    # the batch axis is Triton's, not part of dims
    assert [(t.name, list(t.dims)) for t in config.input] == [("pixels", [3, 2, 2])]
    assert [(t.name, list(t.dims)) for t in config.output] == [("logits", [5])]
    assert config.input[0].data_type == pb.TYPE_FP32
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert (config.instance_group[0].count, config.instance_group[0].kind) == (
        2,
        pb.ModelInstanceGroup.KIND_GPU,
    )
    expected = hashlib.sha256(source.read_bytes()).hexdigest()
    assert config.parameters["lensflow_sha256"].string_value == expected
    assert (tmp_path / "repo" / "tiny" / "1" / "model.onnx").read_bytes() == source.read_bytes()
    assert not (tmp_path / "repo" / "tiny" / "1" / "model.py").exists()


def test_a_fixed_batch_model_is_served_without_batching(tmp_path: Path) -> None:
    source = tiny_onnx(tmp_path / "fixed.onnx", batch=1)
    (written,) = write_repository(tmp_path / "repo", [("fixed", source)], RepoSettings())
    config = parsed(written)
    assert config.max_batch_size == 0
    assert list(config.input[0].dims) == [1, 3, 2, 2]
    assert not config.HasField("dynamic_batching")


def test_the_python_backend_gets_its_model_file_and_tensorrt_is_an_accelerator(
    tmp_path: Path,
) -> None:
    source = tiny_onnx(tmp_path / "tiny.onnx")
    python = RepoSettings(backend="python", intra_op_threads=2)
    config = parsed(write_repository(tmp_path / "py", [("tiny", source)], python)[0])
    assert config.backend == "python"
    assert config.parameters["onnx_file"].string_value == "model.onnx"
    assert config.parameters["intra_op_threads"].string_value == "2"
    assert "TritonPythonModel" in (tmp_path / "py" / "tiny" / "1" / "model.py").read_text()
    gpu = parsed(
        write_repository(tmp_path / "trt", [("tiny", source)], RepoSettings(tensorrt=True))[0]
    )
    accelerator = gpu.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert (accelerator.name, accelerator.parameters["precision_mode"]) == ("tensorrt", "FP16")


@pytest.mark.parametrize(
    ("models", "message"),
    [
        # a name Triton would not take as a folder
        ([("a/b", "tiny.onnx")], "expected a model name of letters"),
        # two models under one name
        ([("tiny", "tiny.onnx"), ("tiny", "tiny.onnx")], r"expected each model name once"),
    ],
)
def test_bad_names_are_refused(tmp_path: Path, models: list[tuple[str, str]], message: str) -> None:
    tiny_onnx(tmp_path / "tiny.onnx")
    with pytest.raises(TritonRepoError, match=message):
        write_repository(tmp_path / "repo", [(n, tmp_path / f) for n, f in models], RepoSettings())


def test_a_file_that_is_not_onnx_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="bad.onnx: expected a readable ONNX model"):
        write_repository(tmp_path / "repo", [("bad", bad)], RepoSettings())


def test_the_command_serves_the_triton_nodes_of_a_pipeline(tmp_path: Path) -> None:
    source = tiny_onnx(tmp_path / "models" / "tiny.onnx")
    other = tiny_onnx(tmp_path / "models" / "local.onnx")
    pipeline = tmp_path / "pipeline.yaml"
    served = {"model": str(source), "runtime": "triton", "triton": {"model": "tiny-a"}}
    nodes = [
        {"name": "a", "class": "onnx_classifier", "params": served},
        {"name": "b", "class": "onnx_classifier", "params": {"model": str(other)}},  # local
    ]
    pipeline.write_text(yaml.safe_dump({"version": 1, "name": "t", "pipeline": nodes}))
    out = str(tmp_path / "repo")
    options = ["--pipeline", str(pipeline), "--model", f"extra={source}", "--no-dynamic-batching"]
    result = CliRunner().invoke(app, ["models", "triton-repo", out, *options])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["extra", "tiny-a"]
    config = parsed(tmp_path / "repo" / "tiny-a" / "config.pbtxt")
    assert not config.HasField("dynamic_batching")


def test_the_command_names_a_bad_model_option(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["models", "triton-repo", str(tmp_path), "--model", "x"])
    assert result.exit_code == 1
    assert "--model must be NAME=SOURCE, got 'x'" in result.output


def test_nodes_sharing_a_model_share_one_triton_model(tmp_path: Path) -> None:
    # vehicle_type and embeddings run the same export under the same Triton name
    source = tiny_onnx(tmp_path / "models" / "tiny.onnx")
    served = {"model": str(source), "runtime": "triton", "triton": {"model": "effnet"}}
    nodes = [
        {"name": "type", "class": "vehicle_type", "params": served},
        {"name": "vector", "class": "embeddings", "params": served},
    ]
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(yaml.safe_dump({"version": 1, "name": "t", "pipeline": nodes}))
    out = str(tmp_path / "repo")
    result = CliRunner().invoke(app, ["models", "triton-repo", out, "--pipeline", str(pipeline)])
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "repo").iterdir()] == ["effnet"]
    # but one name for two different files is refused
    other = tiny_onnx(tmp_path / "models" / "other.onnx")
    clash = ["--model", f"effnet={other}", "--pipeline", str(pipeline)]
    result = CliRunner().invoke(app, ["models", "triton-repo", out, *clash])
    assert result.exit_code == 1
    assert "model 'effnet' is given two files" in result.output
