"""Compile a pipeline config into a checked, ordered DAG — every error found at load time.

Checks, all reported together with the YAML line of each: duplicate node names, unknown
``depends_on``, cycles, conditions outside the condition language, conditions referring to
nodes that are not upstream, unknown or unavailable plugin classes, invalid ``params``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pydantic import BaseModel, ValidationError

from lensflow.shared.classifiers.base import BaseClassifier, validate_params
from lensflow.shared.classifiers.head_store import CONTEXT_KEY as HEADS_KEY
from lensflow.shared.classifiers.model_store import CONTEXT_KEY, WARNINGS_KEY
from lensflow.shared.classifiers.registry import PluginRegistry, default_registry
from lensflow.shared.config.pipeline import NodeConfig, PipelineConfig
from lensflow.shared.config.yaml_loader import YamlDocument, load_model, read_yaml
from lensflow.shared.dag.condition_compile import compile_condition
from lensflow.shared.dag.conditions import Condition
from lensflow.shared.errors import ConditionError, ConfigError, ConfigIssue, PluginError

INPUT_KEY = "input"  # context key of the image's own metadata; not a valid node name


@dataclass(frozen=True)
class CompiledNode:
    """A node after compilation: its plugin class, validated params and compiled condition."""

    config: NodeConfig
    plugin: type[BaseClassifier]
    params: BaseModel
    condition: Condition
    upstream: frozenset[str]  # every node this one transitively depends on

    @property
    def name(self) -> str:
        """The node's name."""
        return self.config.name


@dataclass(frozen=True)
class CompiledPipeline:
    """A checked DAG in execution (topological) order."""

    name: str
    nodes: tuple[CompiledNode, ...]
    warnings: tuple[ConfigIssue, ...] = ()
    """Problems of this machine rather than of the file: a model a node names is missing here
    (only with a non-strict model store; a strict one makes them errors)."""

    def node(self, name: str) -> CompiledNode:
        """Return the node called ``name``."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)


class _Issues:
    """Collects issues, locating each by its path in the YAML document."""

    def __init__(self, doc: YamlDocument | None) -> None:
        self.doc = doc
        self.items: list[ConfigIssue] = []
        self.warnings: list[ConfigIssue] = []

    def add(self, message: str, *loc: int | str) -> None:
        self.items.append(self.issue(message, *loc))

    def issue(self, message: str, *loc: int | str) -> ConfigIssue:
        where = self.doc.location(("pipeline", *loc)) if self.doc else None
        field = ".".join(str(p) for p in ("pipeline", *loc))
        return ConfigIssue(message, where, field)


def compile_pipeline(
    config: PipelineConfig,
    *,
    registry: PluginRegistry | None = None,
    doc: YamlDocument | None = None,
) -> CompiledPipeline:
    """Check ``config`` and order its nodes.

    Args:
        config: the validated pipeline file.
        registry: where plugin classes are resolved, with the model store their model names
            resolve through; the discovered default (no model store) when None.
        doc: the YAML document the config came from, to give each error its line.

    Raises:
        ConfigError: listing every problem found.

    """
    registry = registry or default_registry()
    issues = _Issues(doc)
    index = _check_names(config.pipeline, issues)
    deps = {  # valid dependency edges only; the invalid ones are already reported
        n.name: [d for d in n.depends_on if d in index and d != n.name]
        for n in config.pipeline
        if n.name in index
    }
    order = _topological_order(deps, index, issues)
    upstream = _upstream_sets(deps, order)
    compiled: dict[str, CompiledNode] = {}
    for i, node in enumerate(config.pipeline):
        condition = _compile_when(node, i, upstream.get(node.name), issues)
        plugin_params = _resolve_plugin(node, i, registry, issues)
        if condition is not None and plugin_params is not None:
            compiled[node.name] = CompiledNode(
                node, *plugin_params, condition, upstream.get(node.name, frozenset())
            )
    if issues.items:
        raise ConfigError(issues.items)
    return CompiledPipeline(
        config.name, tuple(compiled[name] for name in order), tuple(issues.warnings)
    )


def load_pipeline(
    path: str | os.PathLike[str], *, registry: PluginRegistry | None = None
) -> CompiledPipeline:
    """Read, validate and compile a pipeline YAML file (errors carry ``FILE:LINE``)."""
    doc = read_yaml(path)
    return compile_pipeline(load_model(PipelineConfig, doc), registry=registry, doc=doc)


def _check_names(nodes: list[NodeConfig], issues: _Issues) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, node in enumerate(nodes):
        if node.name == INPUT_KEY:
            issues.add(f"node name {INPUT_KEY!r} is reserved for the image's metadata", i, "name")
        elif node.name in index:
            issues.add(
                f"duplicate node name {node.name!r} (first used by node {index[node.name]})",
                i,
                "name",
            )
        else:
            index[node.name] = i
    for i, node in enumerate(nodes):
        for j, dep in enumerate(node.depends_on):
            if dep not in index:
                known = ", ".join(sorted(index)) or "none"
                issues.add(f"depends on unknown node {dep!r} (known: {known})", i, "depends_on", j)
            elif dep == node.name:
                issues.add("a node cannot depend on itself", i, "depends_on", j)
    return index


def _topological_order(
    deps: dict[str, list[str]], index: dict[str, int], issues: _Issues
) -> list[str]:
    """Kahn's algorithm, keeping file order among ready nodes; reports a cycle."""
    remaining = dict(deps)
    order: list[str] = []
    while True:
        ready = [name for name, ds in remaining.items() if all(d in order for d in ds)]
        if not ready:
            break
        for name in ready:
            order.append(name)
            del remaining[name]
    if remaining:
        cycle = _find_cycle(remaining)
        issues.add(f"dependency cycle: {' -> '.join(cycle)}", index[cycle[0]], "depends_on")
    return order


def _find_cycle(graph: dict[str, list[str]]) -> list[str]:
    """Follow dependencies among nodes left in a cycle until a node repeats."""
    path = [next(iter(graph))]
    while True:
        nxt = next(d for d in graph[path[-1]] if d in graph)
        if nxt in path:
            return [*path[path.index(nxt) :], nxt]
        path.append(nxt)


def _upstream_sets(deps: dict[str, list[str]], order: list[str]) -> dict[str, frozenset[str]]:
    """Every node's transitive dependencies (nodes in a cycle get none)."""
    upstream: dict[str, frozenset[str]] = {}
    for name in order:
        upstream[name] = frozenset(deps[name]).union(*(upstream[d] for d in deps[name]))
    return upstream


def _compile_when(
    node: NodeConfig, i: int, upstream: frozenset[str] | None, issues: _Issues
) -> Condition | None:
    """Compile the node's condition and check it only reads upstream nodes.

    ``upstream`` is None for a node caught in a cycle (already reported).
    """
    try:
        condition = compile_condition(node.when)
    except ConditionError as err:
        issues.add(f"invalid condition: {err}", i, "when")
        return None
    if upstream is None:
        return condition
    for ref in sorted(condition.references() - upstream - {INPUT_KEY}):
        issues.add(
            f"condition refers to {ref!r}, which is not upstream of {node.name!r}; "
            f"add it to depends_on (upstream: {', '.join(sorted(upstream)) or 'none'})",
            i,
            "when",
        )
    return condition


def _resolve_plugin(
    node: NodeConfig, i: int, registry: PluginRegistry, issues: _Issues
) -> tuple[type[BaseClassifier], BaseModel] | None:
    try:
        plugin = registry.resolve(node.class_)
    except PluginError as err:
        issues.add(str(err), i, "class")
        return None
    warnings: list[str] = []
    context = {CONTEXT_KEY: registry.models, HEADS_KEY: registry.heads, WARNINGS_KEY: warnings}
    try:
        params = validate_params(plugin, node.params, context=context)
        issues.warnings += [
            issues.issue(
                f"node {node.name!r} ({plugin.key or plugin.__name__}): {msg}", i, "params"
            )
            for msg in warnings
        ]
        return plugin, params
    except ValidationError as err:
        for error in err.errors(include_url=False):
            loc = tuple(p for p in error["loc"] if isinstance(p, int | str))
            msg = "unknown parameter" if error["type"] == "extra_forbidden" else error["msg"]
            issues.add(
                f"node {node.name!r} ({plugin.key or plugin.__name__}): {msg}", i, "params", *loc
            )
        return None
