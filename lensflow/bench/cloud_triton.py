"""Classifiers on Triton: crops/s of worker processes sending to Triton, batched or not, vs local.

The classifier is the shipped ``vehicle_type`` plugin (real EfficientNet-Lite0 weights), built
from node params as a worker builds it, and called as the DAG calls it (``process_batch``):

* **Triton, dynamic batching**: ``runtime: triton`` on a model whose config has
  ``dynamic_batching`` (``lensflow models triton-repo`` defaults);
* **Triton, no batching**: the same file under a second name, written with
  ``--no-dynamic-batching``: every request runs alone;
* **in-worker ONNX Runtime**: ``runtime: onnxruntime`` in each process (one thread each, so
  the processes together use the machine's cores, as Triton's instance does).

``processes`` worker processes each send requests of ``request_size`` crops from ``senders``
threads (a thread stands for a worker's batch loop: a worker at a low crop rate sends small
batches, and more workers mean more of them at once). Every mode classifies the same crops;
rounds alternate the modes and the medians are kept; the vehicle types must equal the
in-worker runtime's.
"""

from __future__ import annotations

import multiprocessing
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lensflow.bench.samples import crop_images
from lensflow.models.export.triton_repo import RepoSettings, write_repository
from lensflow.services.triton import TritonServer

MODES = ("triton batched", "triton unbatched", "in-worker onnxruntime")
_READY_S = 300.0
"""How long the processes may take to load and warm up their classifier."""
TARGET = 1.5
"""Triton with dynamic batching over Triton without, at least."""


@dataclass
class TritonBench:
    """Crops per second of each mode (medians of rounds) and the agreement of their outputs."""

    crops: int
    processes: int
    senders: int
    request_size: int
    per_s: dict[str, float] = field(default_factory=dict)
    rounds: dict[str, list[float]] = field(default_factory=dict)
    same_types: dict[str, float] = field(default_factory=dict)
    max_score_diff: dict[str, float] = field(default_factory=dict)
    average_batch: float = 0.0

    @property
    def ratio(self) -> float:
        """Triton batched over Triton unbatched crops/s."""
        unbatched = self.per_s.get("triton unbatched", 0.0)
        return self.per_s.get("triton batched", 0.0) / unbatched if unbatched else 0.0


def run_triton_bench(
    artifact: Path,
    *,
    folder: Path,
    crops: int = 256,
    processes: int = 2,
    senders: int = 4,
    request_size: int = 1,
    rounds: int = 3,
    progress: Callable[[str], object] = print,
) -> TritonBench:
    """Serve ``artifact`` from a real Triton twice (batched, unbatched) and measure every mode.

    Args:
        artifact: EfficientNet-Lite0's ONNX export with ``logits`` and ``features`` outputs.
        folder: Scratch folder (the repository, the server's log).
        crops: Crops classified per measurement.
        processes: Worker processes sending at once.
        senders: Threads per process, each sending its requests one after the other.
        request_size: Crops per request.
        rounds: Alternated measurements of every mode.
        progress: Called with a line per round.

    Raises:
        LensflowError: The Triton server cannot be started (its venv missing, say).

    """
    result = TritonBench(crops, processes, senders, request_size)
    repository = folder / "triton-repository"
    common: dict[str, Any] = {"backend": "python", "kind": "cpu", "max_batch_size": 64}
    write_repository(repository, [("batched", artifact)], RepoSettings(**common))
    write_repository(
        repository,
        [("unbatched", artifact)],
        RepoSettings(**common, dynamic_batching=False, max_queue_delay_us=0),
    )
    outputs: dict[str, list[tuple[str, float]]] = {}
    with TritonServer(repository, data_dir=folder / "triton") as server:
        params = {
            "triton batched": _on_triton(server.grpc_url, "batched"),
            "triton unbatched": _on_triton(server.grpc_url, "unbatched"),
            "in-worker onnxruntime": {"model": str(artifact), "threads": 1},
        }
        before = _batch_counts(server.grpc_url, "batched")
        for round_index in range(rounds):
            for mode in MODES:
                rate, found = _measure(params[mode], result)
                result.rounds.setdefault(mode, []).append(rate)
                outputs[mode] = found
                progress(f"triton round {round_index + 1}/{rounds}: {mode} {rate:.1f} crops/s")
        inferences, executions = (
            a - b for a, b in zip(_batch_counts(server.grpc_url, "batched"), before, strict=True)
        )
    result.average_batch = inferences / executions if executions else 0.0
    result.per_s = {mode: statistics.median(rates) for mode, rates in result.rounds.items()}
    reference = outputs["in-worker onnxruntime"]
    for mode in MODES[:2]:
        pairs = list(zip(outputs[mode], reference, strict=True))
        result.same_types[mode] = sum(a[0] == b[0] for a, b in pairs) / len(pairs)
        result.max_score_diff[mode] = max(abs(a[1] - b[1]) for a, b in pairs)
    return result


def _on_triton(url: str, model: str) -> dict[str, Any]:
    return {"runtime": "triton", "triton": {"url": url, "model": model}}


def _measure(params: dict[str, Any], bench: TritonBench) -> tuple[float, list[tuple[str, float]]]:
    """Crops/s of ``bench.processes`` processes classifying the crops, and their outputs."""
    context = multiprocessing.get_context("spawn")
    shares = [list(range(i, bench.crops, bench.processes)) for i in range(bench.processes)]
    with context.Manager() as manager:
        start = manager.Barrier(bench.processes + 1)
        with context.Pool(bench.processes) as pool:
            waiting = [
                pool.apply_async(
                    _worker, (params, share, bench.crops, bench.senders, bench.request_size, start)
                )
                for share in shares
            ]
            try:
                start.wait(timeout=_READY_S)  # every process has loaded its model, warmed up
            except threading.BrokenBarrierError:
                for item in waiting:
                    item.get(timeout=_READY_S)  # raises what broke it in the child
                raise
            began = time.perf_counter()
            answers = [item.get(timeout=600) for item in waiting]
            elapsed = time.perf_counter() - began
    found: dict[int, tuple[str, float]] = {}
    for answer in answers:
        found.update(answer)
    return bench.crops / elapsed, [found[i] for i in range(bench.crops)]


def _worker(
    params: dict[str, Any],
    share: list[int],
    total: int,
    senders: int,
    request_size: int,
    start: Any,
) -> dict[int, tuple[str, float]]:
    """One worker process: build the plugin, warm up, then classify its share of the crops."""
    from lensflow.shared.classifiers.vehicle_type import VehicleType, VehicleTypeParams

    try:
        plugin = VehicleType(VehicleTypeParams.model_validate(params))
        plugin.warmup()
        images = [image for image, _box, _frame in crop_images(total)]
    except BaseException:
        start.abort()  # the parent and the other processes stop waiting; the error goes up
        raise
    requests = [share[i : i + request_size] for i in range(0, len(share), request_size)]
    lanes = [requests[i::senders] for i in range(senders)]

    def send(lane: list[list[int]]) -> dict[int, tuple[str, float]]:
        done = {}
        for request in lane:
            results = plugin.process_batch([images[i] for i in request], [{}] * len(request))
            for index, output in zip(request, results, strict=True):
                done[index] = (str(output["type"]), float(output["score"]))
        return done

    start.wait()
    merged: dict[int, tuple[str, float]] = {}
    with ThreadPoolExecutor(senders) as pool:
        for part in pool.map(send, lanes):
            merged.update(part)
    return merged


def _batch_counts(url: str, model: str) -> tuple[int, int]:
    """(inferences, executions) Triton counted for ``model``: their ratio is the average batch."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    try:
        stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
    finally:
        client.close()
    return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))
