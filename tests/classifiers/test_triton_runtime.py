"""``runtime: triton``: the classifier plugins on a real Triton server give what they give locally.

The server is the real ``tritonserver`` 2.51 bundled with ``nvidia-pytriton`` (its own venv),
serving the same EfficientNet-Lite0 export (real weights) through its Python backend with
dynamic batching, from a repository written by ``lensflow models triton-repo``. Also: what a
node says when the server is down or serves another file, a server killed and restarted under
a live session, and the dynamic batcher merging concurrent requests.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient

from lensflow.services.process import free_port
from lensflow.services.triton import TritonServer
from lensflow.shared.classifiers.base import Image
from lensflow.shared.classifiers.embeddings import Embeddings, EmbeddingsParams
from lensflow.shared.classifiers.onnx_classifier import OnnxClassifier, OnnxClassifierParams
from lensflow.shared.classifiers.triton_client import TritonParams, TritonSession, file_sha256
from lensflow.shared.classifiers.vehicle_type import VehicleType, VehicleTypeParams
from lensflow.shared.errors import ModelError, ServiceUnavailableError
from tests.support.triton import serving, tiny_onnx

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "efficientnet-lite0"
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def server(
    effnet_features_onnx: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    folder = tmp_path_factory.mktemp("triton")
    with serving([(MODEL, effnet_features_onnx)], folder) as running:
        yield running


@pytest.fixture(scope="module")
def crops(sample_images: dict[str, Image]) -> list[Image]:
    """Eleven real crops of different sizes (more than one chunk of the fixed-size tests)."""
    bus = sample_images["bus"]
    return [bus[20 * i : 200 + 30 * i, 15 * i : 180 + 25 * i] for i in range(11)]


def on_triton(server: TritonServer, **extra: object) -> dict[str, object]:
    return {"runtime": "triton", "triton": {"url": server.grpc_url, "model": MODEL}, **extra}


def test_vehicle_type_on_triton_gives_the_local_results(
    server: TritonServer, effnet_features_onnx: Path, crops: list[Image]
) -> None:
    # given the same export, run in the worker and on Triton
    local = VehicleType(VehicleTypeParams(model=str(effnet_features_onnx)))
    remote = VehicleType(
        VehicleTypeParams.model_validate(on_triton(server, model=str(effnet_features_onnx)))
    )
    # when a batch runs on each
    here, there = (
        local.process_batch(crops, [{}] * len(crops)),
        remote.process_batch(crops, [{}] * len(crops)),
    )
    # then the labels are the same and the scores equal within tolerance
    assert [r["type"] for r in there] == [r["type"] for r in here]
    assert [r["top_class"] for r in there] == [r["top_class"] for r in here]
    assert np.allclose([r["score"] for r in there], [r["score"] for r in here], atol=TOLERANCE)


def test_embeddings_on_triton_are_the_local_vectors_with_the_same_model_id(
    server: TritonServer, effnet_features_onnx: Path, crops: list[Image]
) -> None:
    local = Embeddings(EmbeddingsParams(model=str(effnet_features_onnx)))
    # the node names no local file: the id comes from the sha256 the served config carries
    remote = Embeddings(EmbeddingsParams.model_validate(on_triton(server)))
    assert remote.model_path is None
    assert remote.model_id.split("@")[1] == local.model_id.split("@")[1]
    assert np.allclose(remote.embed(crops), local.embed(crops), atol=TOLERANCE)


def test_a_server_that_serves_another_file_is_refused_at_load(
    server: TritonServer, tmp_path: Path, effnet_features_onnx: Path
) -> None:
    other = tmp_path / "other.onnx"
    other.write_bytes(effnet_features_onnx.read_bytes() + b"\0")  # another sha256
    with pytest.raises(ModelError, match="serves an ONNX file with sha256"):
        OnnxClassifier(OnnxClassifierParams.model_validate(on_triton(server, model=str(other))))


def test_a_server_that_is_down_is_named_at_load() -> None:
    port = free_port()
    params = TritonParams(url=f"127.0.0.1:{port}", model=MODEL, retries=0, timeout_s=2)
    with pytest.raises(ServiceUnavailableError, match=f"'{MODEL}' at 127.0.0.1:{port}"):
        TritonSession(params)


def test_a_model_the_server_lacks_is_named_at_load(server: TritonServer) -> None:
    with pytest.raises(ServiceUnavailableError, match="does not have the model ready"):
        TritonSession(TritonParams(url=server.grpc_url, model="car-make-vit", retries=0))


def test_params_name_what_runtime_triton_needs() -> None:
    with pytest.raises(ValueError, match=r"runtime triton and triton: \{url, model\} go together"):
        OnnxClassifierParams.model_validate({"runtime": "triton"})
    with pytest.raises(ValueError, match="runtime triton and triton"):
        VehicleTypeParams.model_validate({"triton": {"model": MODEL}})


def test_a_killed_server_is_an_outage_and_the_same_session_works_once_it_is_back(
    effnet_features_onnx: Path, tmp_path: Path, crops: list[Image]
) -> None:
    with serving([(MODEL, effnet_features_onnx)], tmp_path) as running:
        params = TritonParams(url=running.grpc_url, model=MODEL, retries=3, timeout_s=5)
        net = OnnxClassifier(OnnxClassifierParams(runtime="triton", triton=params))
        before = net.infer(crops[:3], ["logits"])[0]
        running.kill()
        # the input is not at fault: an outage, not a model error
        with pytest.raises(ServiceUnavailableError, match="did not answer after 4 tries"):
            net.infer(crops[:3], ["logits"])
        running.start()
        after = net.infer(crops[:3], ["logits"])[0]
    assert np.allclose(after, before, atol=TOLERANCE)


def test_the_dynamic_batcher_merges_concurrent_single_crop_requests(
    server: TritonServer, crops: list[Image]
) -> None:
    # given eight clients that each send one crop at the same moment, six times
    net = OnnxClassifier(OnnxClassifierParams.model_validate(on_triton(server)))
    session = net._session
    tensors = [net.preprocess([crop]) for crop in crops[:8]]
    together = threading.Barrier(8)
    before = _counts(server)
    errors: list[BaseException] = []

    def client(index: int) -> None:
        try:
            for _ in range(6):
                together.wait(timeout=30)
                session.run(["logits"], {net._input: tensors[index]})
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    inferences, executions = (a - b for a, b in zip(_counts(server), before, strict=True))
    # then 48 crops ran in fewer model executions: requests were batched by the server
    assert inferences == 48
    assert executions < inferences


def _counts(server: TritonServer) -> tuple[int, int]:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    stats = client.get_inference_statistics(MODEL, as_json=True)["model_stats"][0]
    return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))


def test_a_request_slower_than_its_deadline_on_a_ready_server_is_a_model_error(
    server: TritonServer, crops: list[Image]
) -> None:
    # a deadline no request can meet, with the server and the model ready: not an outage
    # (that would hold the batch forever), the node's error, on which the DAG goes one by one
    net = OnnxClassifier(OnnxClassifierParams.model_validate(on_triton(server)))
    net._session.params = net._session.params.model_copy(update={"timeout_s": 1e-4})
    with pytest.raises(ModelError, match="too slow for timeout_s"):
        net.infer(crops, ["logits"])


def test_an_empty_batch_and_a_fixed_batch_model_on_triton(tmp_path: Path) -> None:
    # a model whose graph takes exactly 2 rows, served without batching (max_batch_size 0)
    fixed = tiny_onnx(tmp_path / "fixed.onnx", batch=2)
    with serving([("fixed", fixed)], tmp_path) as running:
        session = TritonSession(TritonParams(url=running.grpc_url, model="fixed"))
        rows = np.random.default_rng(1).standard_normal((6, 3, 2, 2)).astype(np.float32)
        (logits,) = session.run(["logits"], {"pixels": rows})  # sent 2 rows at a time
        (empty,) = session.run(["logits"], {"pixels": rows[:0]})
    local = ort.InferenceSession(str(fixed))
    expected = np.concatenate([local.run(None, {"pixels": rows[i : i + 2]})[0] for i in (0, 2, 4)])
    assert np.allclose(logits, expected, atol=1e-5)
    assert empty.shape == (0, 5)


def test_a_served_model_without_its_sha256_is_refused_when_the_node_names_a_file(
    tmp_path: Path,
) -> None:
    model = tiny_onnx(tmp_path / "tiny.onnx")
    with serving([("tiny", model)], tmp_path, strip_sha256=True) as running:
        params = TritonParams(url=running.grpc_url, model="tiny")
        TritonSession(params)  # no file named: nothing to check against
        with pytest.raises(ModelError, match="has no lensflow_sha256 parameter"):
            TritonSession(params, expected_sha256=file_sha256(model))
