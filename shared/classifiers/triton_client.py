"""``runtime: triton``: a classifier's ONNX model served by a Triton Inference Server.

:class:`TritonSession` stands in for an ONNX Runtime session where the classifier plugins use
one (``get_inputs``, ``get_outputs``, ``run``): the plugins keep their preprocessing and
postprocessing, and each batch becomes one KServe v2 request over gRPC (``tritonclient``; its
gRPC client is thread-safe, unlike its HTTP one) that Triton's dynamic batcher may merge with
other workers' requests.

At load the server must be live and ready and the model ready, else the pipeline does not load
(:class:`~lensflow.shared.errors.ServiceUnavailableError`, naming the url and the model). When
the node also names the ONNX file, the sha256 the model's Triton config carries
(``lensflow_sha256``, written by ``lensflow models triton-repo``) must be that file's: a node
never runs another model than its config says. A request that fails for the connection's sake
(server down or restarting) is retried ``retries`` times, then raised as
``ServiceUnavailableError``: the worker holds the batch and tries it again later, nothing is
recorded as the node's error. A request whose deadline passes is not sent again (the server
may still be running it): if the server is down that is an outage as well, but with the server
and the model ready it is the request that is too slow for ``timeout_s`` — a
:class:`~lensflow.shared.errors.ModelError`, on which the DAG runs the batch's crops one by
one — so a batch that can never finish in time is not held forever. A request the server
refuses (wrong shape) is a ``ModelError`` too.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import Field

from lensflow.shared.config.base import StrictModel
from lensflow.shared.errors import (
    ModelError,
    PluginError,
    PluginUnavailableError,
    ServiceUnavailableError,
)

logger = logging.getLogger(__name__)

SHA256_PARAMETER = "lensflow_sha256"
_CHANNEL_ARGS = [
    ("grpc.max_send_message_length", 2**31 - 1),  # tritonclient's defaults, which these replace
    ("grpc.max_receive_message_length", 2**31 - 1),
    # reconnect soon after a server restart (gRPC's default backoff grows to 120 s)
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
_NUMPY = {"FP32": np.float32, "FP16": np.float16, "FP64": np.float64, "INT64": np.int64}


class TritonParams(StrictModel):
    """Where a ``runtime: triton`` node's model is served."""

    url: str = Field(
        "127.0.0.1:8001", description="host:port of the server's gRPC endpoint (KServe v2)."
    )
    model: str = Field(description="The model's name in the repository (triton-repo's NAME).")
    version: str = Field("", description="Model version; the server's latest when empty.")
    timeout_s: float = Field(10.0, gt=0, description="Deadline of one request or check.")
    retries: int = Field(2, ge=0, le=10, description="Retries of a request the server missed.")


@dataclass(frozen=True)
class TensorInfo:
    """A model input or output as the plugins read it from a session."""

    name: str
    shape: list[int | str]
    datatype: str


class TritonSession:
    """An ONNX Runtime-like session whose ``run`` is a request to a Triton server.

    Args:
        params: The node's ``triton`` params.
        expected_sha256: The sha256 of the ONNX file the node names, checked against the
            model's ``lensflow_sha256`` parameter when both exist.

    Raises:
        PluginUnavailableError: ``tritonclient`` is not installed.
        ServiceUnavailableError: The server is not live and ready, or the model not ready.
        ModelError: The server runs another file than ``expected_sha256``.

    """

    def __init__(self, params: TritonParams, *, expected_sha256: str | None = None) -> None:
        self.params = params
        self._client, self._module = _connect(params)
        self.where = f"Triton model {params.model!r} at {params.url}"
        self._check_ready()
        metadata = self._call(self._client.get_model_metadata, params.model, params.version)
        config = self._call(self._client.get_model_config, params.model, params.version)
        self._inputs = [_tensor(t) for t in _field(metadata, "inputs")]
        self._outputs = [_tensor(t) for t in _field(metadata, "outputs")]
        config = config.get("config", config) if isinstance(config, dict) else config
        self.max_batch_size = int(_field(config, "max_batch_size") or 0)
        first = self._inputs[0].shape[0] if self._inputs and self._inputs[0].shape else None
        # a model served without batching takes its graph's own (fixed) first axis
        self._fixed_batch = first if self.max_batch_size == 0 and isinstance(first, int) else 0
        parameters = _field(config, "parameters") or {}
        served = str((parameters.get(SHA256_PARAMETER) or {}).get("string_value") or "")
        self.sha256: str | None = served or None
        if expected_sha256 is not None and not served:
            raise ModelError(
                f"{self.where} has no {SHA256_PARAMETER} parameter in its config, so it cannot "
                "be checked against the node's model file; write the repository with "
                "`lensflow models triton-repo`, or leave the node's model file out"
            )
        if expected_sha256 is not None and served != expected_sha256:
            raise ModelError(
                f"{self.where} serves an ONNX file with sha256 {served[:16]}…, but the node's "
                f"model file has {expected_sha256[:16]}…: rebuild the repository with "
                "`lensflow models triton-repo` from the same file"
            )
        self.description = f"triton {params.model} at {params.url}"

    def get_inputs(self) -> list[TensorInfo]:
        """The model's inputs, batch axis first (``-1``) for a batching model."""
        return self._inputs

    def get_outputs(self) -> list[TensorInfo]:
        """The model's outputs."""
        return self._outputs

    def run(self, names: Sequence[str] | None, feeds: Mapping[str, npt.NDArray[Any]]) -> list[Any]:
        """Run one batch: ``feeds`` by input name; the outputs ``names`` (all when None).

        Raises:
            ServiceUnavailableError: The server did not answer after the retries.
            ModelError: The server refused the request.

        """
        wanted = list(names) if names else [t.name for t in self._outputs]
        rows = len(next(iter(feeds.values())))
        if rows == 0:
            return [
                np.zeros((0, *[d for d in self._dims(n) if isinstance(d, int)])) for n in wanted
            ]
        step = self.max_batch_size or self._fixed_batch or rows
        parts = [
            self._infer(wanted, {k: v[start : start + step] for k, v in feeds.items()})
            for start in range(0, rows, step)
        ]
        return [np.concatenate([part[i] for part in parts]) for i in range(len(wanted))]

    def _dims(self, name: str) -> list[int]:
        """An output's fixed dimensions after the batch axis (0 for a free one)."""
        for tensor in self._outputs:
            if tensor.name == name:
                return [d if isinstance(d, int) else 0 for d in tensor.shape[1:]]
        return []

    def close(self) -> None:
        """Close the connection."""
        self._client.close()

    def _infer(
        self, names: list[str], feeds: Mapping[str, npt.NDArray[Any]]
    ) -> list[npt.NDArray[Any]]:
        module = self._module
        inputs = []
        for name, array in feeds.items():
            tensor = module.InferInput(name, list(array.shape), _datatype(array))
            tensor.set_data_from_numpy(np.ascontiguousarray(array))
            inputs.append(tensor)
        outputs = [module.InferRequestedOutput(name) for name in names]
        result = self._call(
            self._client.infer,
            self.params.model,
            inputs,
            model_version=self.params.version,
            outputs=outputs,
        )
        return [result.as_numpy(name) for name in names]

    def _check_ready(self) -> None:
        problem = None
        if not self._call(self._client.is_server_live):
            problem = "is not live"
        elif not self._call(self._client.is_server_ready):
            problem = "is not ready"
        elif not self._call(self._client.is_model_ready, self.params.model, self.params.version):
            problem = "does not have the model ready (is it in the repository, and did it load?)"
        if problem:
            raise ServiceUnavailableError(f"{self.where}: the server {problem}")

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        """Call the client with the deadline; retry what the connection missed; translate."""
        if method.__name__ in {"get_model_metadata", "get_model_config"}:
            kwargs["as_json"] = True  # dicts, not protobufs
        kwargs["client_timeout"] = self.params.timeout_s
        attempts = self.params.retries + 1
        for attempt in range(attempts):
            try:
                return method(*args, **kwargs)
            except Exception as err:  # tritonclient raises InferenceServerException
                status = _status(err)
                if status == "StatusCode.DEADLINE_EXCEEDED":
                    raise self._late(err) from err  # not sent again: it may still be running
                if status != "StatusCode.UNAVAILABLE":
                    raise ModelError(f"{self.where} refused the request: {_message(err)}") from err
                if attempt + 1 == attempts:
                    raise ServiceUnavailableError(
                        f"{self.where} did not answer after {attempts} "
                        f"{'try' if attempts == 1 else 'tries'}: {_message(err)}"
                    ) from err
                time.sleep(min(0.25 * 2**attempt, 2.0))  # past the channel's reconnect backoff
        raise AssertionError("unreachable")  # pragma: no cover

    def _late(self, err: Exception) -> Exception:
        """A passed deadline: an outage if the server is not ready, else a too-slow request."""
        check_s = max(self.params.timeout_s, 2.0)  # a check answers in milliseconds
        try:
            ready = self._client.is_server_ready(client_timeout=check_s) and (
                self._client.is_model_ready(
                    self.params.model, self.params.version, client_timeout=check_s
                )
            )
        except Exception:  # the check failing too: the server is what is wrong
            ready = False
        if not ready:
            return ServiceUnavailableError(
                f"{self.where} did not answer within {self.params.timeout_s:g} s and is not "
                f"ready: {_message(err)}"
            )
        return ModelError(
            f"{self.where} did not answer within {self.params.timeout_s:g} s though it is "
            "ready: the request is too slow for timeout_s (raise it, or send smaller batches)"
        )


def pairing_problem(runtime: str, triton: TritonParams | None) -> str:
    """Why a node's ``runtime`` and ``triton`` params disagree, or '' when they agree."""
    if (runtime == "triton") == (triton is not None):
        return ""
    return (
        "runtime triton and triton: {url, model} go together; got runtime "
        f"{runtime!r} and triton {'set' if triton is not None else 'missing'}"
    )


def _connect(params: TritonParams) -> tuple[Any, Any]:
    try:
        import tritonclient.grpc as module
    except ImportError as err:
        raise PluginUnavailableError(
            f"runtime 'triton' needs tritonclient[grpc] (pip install 'lensflow[cloud]'): {err}"
        ) from err
    try:
        client = module.InferenceServerClient(params.url, channel_args=_CHANNEL_ARGS)
    except Exception as err:  # a malformed url
        raise ModelError(f"cannot make a Triton client for {params.url!r}: {err}") from err
    return client, module


def _status(err: Exception) -> str:
    """The gRPC status of a tritonclient error (``StatusCode.UNAVAILABLE``), '' when none."""
    status = getattr(err, "status", None)
    status = status() if callable(status) else status
    return "" if status is None else str(status)


def _message(err: Exception) -> str:
    text = getattr(err, "message", None)
    text = text() if callable(text) else text
    return str(text or err).splitlines()[0][:300]


def _field(document: Any, name: str) -> Any:
    if isinstance(document, dict):
        return document.get(name)
    return getattr(document, name, None)


def _tensor(raw: Any) -> TensorInfo:
    shape = [int(dim) for dim in _field(raw, "shape")]
    return TensorInfo(
        name=str(_field(raw, "name")),
        shape=[dim if dim >= 0 else "N" for dim in shape],
        datatype=str(_field(raw, "datatype")),
    )


def _datatype(array: npt.NDArray[Any]) -> str:
    for name, kind in _NUMPY.items():
        if array.dtype == kind:
            return name
    raise ModelError(f"expected a float32/float16/float64/int64 tensor, got {array.dtype}")


def file_sha256(path: Path) -> str:
    """The sha256 of a model file.

    Raises:
        PluginError: The file cannot be read.

    """
    try:
        with path.open("rb") as stream:
            return hashlib.file_digest(stream, "sha256").hexdigest()
    except OSError as err:
        raise PluginError(f"cannot read model file {path}: {err}") from err
