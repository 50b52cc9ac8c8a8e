"""Run a compiled DAG on images: conditions, context passing, timing and failure isolation."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from lensflow.shared.classifiers.base import BaseClassifier, Image, Output
from lensflow.shared.dag.compiler import INPUT_KEY, CompiledNode, CompiledPipeline
from lensflow.shared.errors import ServiceUnavailableError

logger = logging.getLogger(__name__)

Status = Literal["ok", "skipped", "error"]


@dataclass(frozen=True)
class NodeResult:
    """What one node did for one image."""

    node: str
    status: Status
    output: Output = field(default_factory=dict)
    reason: str = ""  # why it was skipped, or the error
    duration_ms: float = 0.0  # this image's share of the (batch) call
    batch_size: int = 0
    plugin: str = ""
    version: str = ""


@dataclass(frozen=True)
class ImageResult:
    """Every node's result for one image, in execution order."""

    nodes: dict[str, NodeResult]

    def context(self) -> dict[str, Output]:
        """Outputs of the nodes that ran successfully, by node name."""
        return {name: r.output for name, r in self.nodes.items() if r.status == "ok"}


class Pipeline:
    """A compiled DAG with its plugins instantiated, ready to run images."""

    def __init__(self, compiled: CompiledPipeline) -> None:
        """Instantiate every enabled node's plugin (loads models; may be slow)."""
        self.compiled = compiled
        self.plugins: dict[str, BaseClassifier] = {
            node.name: node.plugin(node.params) for node in compiled.nodes if node.config.enabled
        }

    @property
    def name(self) -> str:
        """The pipeline's name."""
        return self.compiled.name

    @property
    def needs_pixels(self) -> bool:
        """Whether some enabled node reads the images' pixels (else none need decoding)."""
        return any(plugin.needs_pixels for plugin in self.plugins.values())

    def warmup(self) -> None:
        """Warm every plugin up (load models, first inference)."""
        for plugin in self.plugins.values():
            plugin.warmup()

    def run(self, image: Image, *, inputs: Mapping[str, Any] | None = None) -> ImageResult:
        """Run the DAG on one image; ``inputs`` is its metadata, seen as ``context['input']``."""
        return self.run_batch([image], inputs=[inputs or {}])[0]

    def run_batch(
        self, images: Sequence[Image], *, inputs: Sequence[Mapping[str, Any]] | None = None
    ) -> list[ImageResult]:
        """Run the DAG on a batch: each node processes, in one call, the images it applies to.

        A node's condition is evaluated per image; a node whose dependency did not succeed is
        skipped (dependency skipped) or fails (dependency failed); a node that raises records
        an error for the images concerned and for its dependants, while other nodes still run.

        Raises:
            ServiceUnavailableError: If a node's inference service is down: not the images'
                fault, so no result is recorded; the caller retries the batch later.

        """
        metas = list(inputs) if inputs is not None else [{} for _ in images]
        if len(metas) != len(images):
            raise ValueError(
                f"expected one inputs mapping per image ({len(images)}), got {len(metas)}"
            )
        results: list[dict[str, NodeResult]] = [{} for _ in images]
        for node in self.compiled.nodes:
            runnable = []
            for i, per_image in enumerate(results):
                verdict = self._gate(node, per_image, metas[i])
                if verdict is None:
                    runnable.append(i)
                else:
                    per_image[node.name] = verdict
            if runnable:
                self._run_node(node, runnable, images, metas, results)
        return [ImageResult(per_image) for per_image in results]

    def _gate(
        self, node: CompiledNode, done: dict[str, NodeResult], meta: Mapping[str, Any]
    ) -> NodeResult | None:
        """Decide whether ``node`` runs for one image; a result when it does not."""
        if not node.config.enabled:
            return self._result(node, "skipped", reason="node is disabled")
        for dep in node.config.depends_on:
            status = done[dep].status
            if status == "error":
                return self._result(node, "error", reason=f"upstream node {dep!r} failed")
            if status == "skipped":
                return self._result(node, "skipped", reason=f"upstream node {dep!r} was skipped")
        context = self._context(done, meta)
        try:
            passed = node.condition.evaluate(context)
        except Exception as err:  # a condition must never take the worker down
            logger.exception("condition of node %s raised", node.name)
            return self._result(node, "error", reason=f"condition raised {err!r}")
        if not passed:
            return self._result(node, "skipped", reason=node.condition.explain(context))
        return None

    def _run_node(
        self,
        node: CompiledNode,
        runnable: list[int],
        images: Sequence[Image],
        metas: Sequence[Mapping[str, Any]],
        results: list[dict[str, NodeResult]],
    ) -> None:
        """Run a node on the images it applies to, in chunks of at most its ``batch.max_size``."""
        size = node.config.batch.max_size
        for first in range(0, len(runnable), size):
            self._run_chunk(node, runnable[first : first + size], images, metas, results)

    def _run_chunk(
        self,
        node: CompiledNode,
        runnable: list[int],
        images: Sequence[Image],
        metas: Sequence[Mapping[str, Any]],
        results: list[dict[str, NodeResult]],
    ) -> None:
        plugin = self.plugins[node.name]
        contexts = [self._context(results[i], metas[i]) for i in runnable]
        batch = [images[i] for i in runnable]
        start = time.perf_counter()
        try:
            outputs: list[Output | BaseException] = list(plugin.process_batch(batch, contexts))
            if len(outputs) != len(batch):
                raise RuntimeError(
                    f"process_batch returned {len(outputs)} outputs for {len(batch)} images"
                )
        except ServiceUnavailableError:
            raise  # the service is down, not the images at fault: the caller retries later
        except Exception as err:
            logger.warning(
                "node %s failed on a batch of %d: %r; retrying one by one",
                node.name,
                len(batch),
                err,
            )
            outputs = self._one_by_one(plugin, batch, contexts) if len(batch) > 1 else [err]
        share = (time.perf_counter() - start) * 1000 / len(batch)
        for i, output in zip(runnable, outputs, strict=True):
            results[i][node.name] = self._checked(node, plugin, output, share, len(batch))

    @staticmethod
    def _one_by_one(
        plugin: BaseClassifier, batch: Sequence[Image], contexts: Sequence[Mapping[str, Any]]
    ) -> list[Output | BaseException]:
        """Isolate the images that fail from those that do not."""
        outputs: list[Output | BaseException] = []
        for image, context in zip(batch, contexts, strict=True):
            try:
                outputs.append(plugin.process(image, context))
            except ServiceUnavailableError:
                raise
            except Exception as err:
                outputs.append(err)
        return outputs

    def _checked(
        self,
        node: CompiledNode,
        plugin: BaseClassifier,
        output: Output | BaseException,
        duration_ms: float,
        batch_size: int,
    ) -> NodeResult:
        if isinstance(output, BaseException):
            return self._result(
                node,
                "error",
                reason=f"{type(output).__name__}: {output}",
                duration_ms=duration_ms,
                batch_size=batch_size,
            )
        if not isinstance(output, dict):
            reason = f"plugin returned {type(output).__name__}, expected dict"
            return self._result(
                node, "error", reason=reason, duration_ms=duration_ms, batch_size=batch_size
            )
        missing = [key for key in plugin.outputs if key not in output]
        if missing:
            reason = f"plugin output lacks declared keys {missing}"
            return self._result(
                node, "error", reason=reason, duration_ms=duration_ms, batch_size=batch_size
            )
        return self._result(
            node, "ok", output=output, duration_ms=duration_ms, batch_size=batch_size
        )

    @staticmethod
    def _context(done: Mapping[str, NodeResult], meta: Mapping[str, Any]) -> dict[str, Any]:
        context: dict[str, Any] = {n: r.output for n, r in done.items() if r.status == "ok"}
        context[INPUT_KEY] = meta
        return context

    @staticmethod
    def _result(node: CompiledNode, status: Status, **fields: Any) -> NodeResult:
        return NodeResult(
            node=node.name,
            status=status,
            plugin=node.plugin.key,
            version=node.plugin.version,
            **fields,
        )
