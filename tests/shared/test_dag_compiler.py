"""DAG compilation: every structural error is found at load, with its YAML line."""

from __future__ import annotations

from pathlib import Path

import pytest

from lensflow.shared.classifiers.registry import PluginRegistry
from lensflow.shared.dag.compiler import load_pipeline
from lensflow.shared.errors import ConfigError


def compile_text(tmp_path: Path, registry: PluginRegistry, text: str):
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return load_pipeline(path, registry=registry)


def errors_of(tmp_path: Path, registry: PluginRegistry, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        compile_text(tmp_path, registry, text)
    return [f"{i.location.line if i.location else '?'}: {i.message}" for i in info.value.issues]


def test_nodes_run_in_dependency_order_whatever_the_file_order(
    tmp_path: Path, registry: PluginRegistry
) -> None:
    compiled = compile_text(
        tmp_path,
        registry,
        """
pipeline:
  - {name: c, class: echo, depends_on: [a, b]}
  - {name: b, class: echo, depends_on: a}
  - {name: a, class: echo}
  - {name: d, class: echo}
""",
    )
    assert [n.name for n in compiled.nodes] == ["a", "d", "b", "c"]
    assert compiled.node("c").upstream == {"a", "b"}


def test_cycle_is_reported_with_its_path_and_line(tmp_path: Path, registry: PluginRegistry) -> None:
    errors = errors_of(
        tmp_path,
        registry,
        """
pipeline:
  - {name: a, class: echo}
  - {name: b, class: echo, depends_on: [a, d]}
  - {name: c, class: echo, depends_on: b}
  - {name: d, class: echo, depends_on: c}
""",
    )
    assert errors == ["4: dependency cycle: b -> d -> c -> b"]


def test_unknown_dependency_lists_the_known_nodes(tmp_path: Path, registry: PluginRegistry) -> None:
    errors = errors_of(
        tmp_path,
        registry,
        """
pipeline:
  - name: a
    class: echo
  - name: b
    class: echo
    depends_on: [a, detector]
""",
    )
    assert errors == ["7: depends on unknown node 'detector' (known: a, b)"]


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        # an unregistered key
        ("{name: x, class: no_such_plugin}", "unknown classifier 'no_such_plugin'"),
        # a dotted path to a module that does not exist (the design's example path)
        ("{name: x, class: classification.makes.StanfordViT}", "no module 'classification.makes'"),
        # a dotted path to something that is not a plugin
        ("{name: x, class: lensflow.shared.errors.ConfigError}", "is not a classifier"),
        # a dotted path to a missing attribute
        ("{name: x, class: lensflow.shared.errors.Nope}", "has no 'Nope'"),
        # a parameter the plugin does not take
        ("{name: x, class: edge_detection, params: {min_scroe: 0.5}}", "unknown parameter"),
        # a parameter out of range
        ("{name: x, class: edge_detection, params: {min_score: 7}}", "less than or equal to 1"),
        # the name reserved for the image's metadata
        ("{name: input, class: echo}", "reserved"),
    ],
)
def test_plugin_errors_are_found_at_load(
    tmp_path: Path, registry: PluginRegistry, node: str, expected: str
) -> None:
    (error,) = errors_of(tmp_path, registry, f"pipeline:\n  - {node}\n")
    assert error.startswith("2: ")
    assert expected in error


def test_dotted_path_resolves_a_plugin(tmp_path: Path, registry: PluginRegistry) -> None:
    compiled = compile_text(
        tmp_path, registry, "pipeline:\n  - {name: x, class: tests.support.plugins.Echo}\n"
    )
    assert compiled.node("x").plugin.key == "echo"


def test_condition_must_refer_to_upstream_nodes(tmp_path: Path, registry: PluginRegistry) -> None:
    errors = errors_of(
        tmp_path,
        registry,
        """
pipeline:
  - {name: det, class: edge_detection}
  - {name: other, class: echo}
  - name: car
    class: echo
    depends_on: det
    when: "'car' in context['other']['saw']"
""",
    )
    assert errors == [
        "8: condition refers to 'other', which is not upstream of 'car'; "
        "add it to depends_on (upstream: det)"
    ]


@pytest.mark.parametrize(
    "condition",
    [
        "__import__('os').system('id')",  # a call of a builtin by a dunder name
        "context.__class__",  # attribute access / dunder
        "[x for x in ()]",  # a comprehension
        "(lambda: 1)()",  # a lambda called
        "import os",  # a statement
        "open('/etc/passwd').read()",  # a call
    ],
)
def test_injection_attempts_are_rejected_at_load(
    tmp_path: Path, registry: PluginRegistry, condition: str
) -> None:
    quoted = condition.replace("'", "''")
    text = (
        "pipeline:\n  - {name: det, class: edge_detection}\n  - name: x\n    class: echo\n"
        f"    depends_on: det\n    when: '{quoted}'\n"
    )
    (error,) = errors_of(tmp_path, registry, text)
    assert error.startswith("6: invalid condition")


def test_all_errors_are_reported_together(tmp_path: Path, registry: PluginRegistry) -> None:
    errors = errors_of(
        tmp_path,
        registry,
        """
pipeline:
  - {name: a, class: nope}
  - {name: b, class: echo, depends_on: zzz}
  - {name: c, class: echo, depends_on: a, when: "len(context)"}
""",
    )
    assert [e.split(":")[0] for e in errors] == ["4", "3", "5"]
