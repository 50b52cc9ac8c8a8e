"""Running the DAG: context passing, conditions, skip reasons, timing, failure isolation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lensflow.shared.classifiers.registry import PluginRegistry
from lensflow.shared.dag.compiler import load_pipeline
from lensflow.shared.dag.engine import Pipeline

BRIGHT = np.full((64, 48, 3), 200, dtype=np.uint8)
DARK = np.full((64, 48, 3), 10, dtype=np.uint8)

PIPELINE = """
pipeline:
  - {name: det, class: edge_detection}
  - name: car_make
    class: car_make_vit
    depends_on: det
    when: "'car' in context['det']['detected_classes']"
  - name: shirt
    class: tshirt_color
    depends_on: det
    when: {contains: [det.detected_classes, person]}
  - {name: fragile, class: fails_on_dark, depends_on: det}
  - {name: after_fragile, class: echo, depends_on: fragile}
  - {name: sibling, class: echo, depends_on: det}
  - {name: after_car, class: echo, depends_on: car_make}
"""


@pytest.fixture
def pipeline(tmp_path: Path, registry: PluginRegistry) -> Pipeline:
    path = tmp_path / "p.yaml"
    path.write_text(PIPELINE)
    return Pipeline(load_pipeline(path, registry=registry))


def detection(class_name: str) -> dict[str, object]:
    return {"detection": {"class_name": class_name, "score": 0.9, "box": [0, 0, 48, 64]}}


def test_condition_decides_per_image(pipeline: Pipeline) -> None:
    car, person = pipeline.run_batch(
        [BRIGHT, BRIGHT], inputs=[detection("car"), detection("person")]
    )
    assert car.nodes["car_make"].status == "ok"
    assert car.nodes["shirt"].status == "skipped"
    assert person.nodes["car_make"].status == "skipped"
    assert person.nodes["shirt"].status == "ok"


def test_skip_reason_says_why(pipeline: Pipeline) -> None:
    result = pipeline.run(BRIGHT, inputs=detection("person"))
    assert "car" in result.nodes["car_make"].reason
    assert "person" in result.nodes["car_make"].reason  # the value that made it false
    assert result.nodes["after_car"].status == "skipped"
    assert result.nodes["after_car"].reason == "upstream node 'car_make' was skipped"


def test_downstream_sees_upstream_outputs_and_the_input(pipeline: Pipeline) -> None:
    result = pipeline.run(BRIGHT, inputs=detection("car"))
    saw = result.nodes["after_car"].output["saw"]
    assert {"det", "car_make", "input"} <= set(saw)
    assert "shirt" not in saw  # skipped nodes have no output in the context


def test_failing_node_does_not_lose_sibling_results(pipeline: Pipeline) -> None:
    dark = pipeline.run(DARK, inputs=detection("person"))
    assert dark.nodes["fragile"].status == "error"
    assert "image too dark" in dark.nodes["fragile"].reason
    assert dark.nodes["after_fragile"].status == "error"
    assert dark.nodes["after_fragile"].reason == "upstream node 'fragile' failed"
    assert dark.nodes["sibling"].status == "ok"
    assert dark.nodes["shirt"].status == "ok"


def test_a_failure_in_a_batch_only_fails_that_image(pipeline: Pipeline) -> None:
    results = pipeline.run_batch([BRIGHT, DARK, BRIGHT], inputs=[detection("person")] * 3)
    assert [r.nodes["fragile"].status for r in results] == ["ok", "error", "ok"]


def test_batch_gives_the_same_outputs_as_one_by_one(pipeline: Pipeline) -> None:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(6)]
    inputs = [detection("car" if i % 2 else "person") for i in range(6)]
    batched = pipeline.run_batch(images, inputs=inputs)
    single = [pipeline.run(image, inputs=meta) for image, meta in zip(images, inputs, strict=True)]
    for b, s in zip(batched, single, strict=True):
        assert {n: r.output for n, r in b.nodes.items()} == {
            n: r.output for n, r in s.nodes.items()
        }
    # the car node got the three car images in one call
    assert pipeline.plugins["car_make"].batch_sizes[0] == 3  # type: ignore[attr-defined]


def test_results_carry_timing_version_and_batch_size(pipeline: Pipeline) -> None:
    a, _ = pipeline.run_batch([BRIGHT, BRIGHT], inputs=[detection("car")] * 2)
    node = a.nodes["car_make"]
    assert node.duration_ms > 0
    assert node.batch_size == 2
    assert (node.plugin, node.version) == ("car_make_vit", "test-1")


def test_missing_declared_output_is_an_error(tmp_path: Path, registry: PluginRegistry) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("pipeline:\n  - {name: f, class: forgetful}\n  - {name: e, class: echo}\n")
    result = Pipeline(load_pipeline(path, registry=registry)).run(BRIGHT)
    assert result.nodes["f"].status == "error"
    assert "lacks declared keys ['label']" in result.nodes["f"].reason
    assert result.nodes["e"].status == "ok"


def test_disabled_node_and_its_dependants_are_skipped(
    tmp_path: Path, registry: PluginRegistry
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "pipeline:\n  - {name: a, class: echo, enabled: false}\n"
        "  - {name: b, class: echo, depends_on: a}\n"
    )
    result = Pipeline(load_pipeline(path, registry=registry)).run(BRIGHT)
    assert (result.nodes["a"].status, result.nodes["a"].reason) == ("skipped", "node is disabled")
    assert result.nodes["b"].status == "skipped"


def test_a_node_never_gets_more_than_its_max_batch(
    tmp_path: Path, registry: PluginRegistry
) -> None:
    path = tmp_path / "small.yaml"
    path.write_text(
        PIPELINE.replace("class: car_make_vit", "class: car_make_vit\n    batch: {max_size: 2}")
    )
    pipeline = Pipeline(load_pipeline(path, registry=registry))
    images = [BRIGHT] * 5

    results = pipeline.run_batch(images, inputs=[detection("car")] * 5)

    assert pipeline.plugins["car_make"].batch_sizes == [2, 2, 1]  # type: ignore[attr-defined]
    assert [r.nodes["car_make"].batch_size for r in results] == [2, 2, 2, 2, 1]
    assert all(r.nodes["car_make"].status == "ok" for r in results)
