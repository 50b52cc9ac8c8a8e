"""Load YAML config files into pydantic models, reporting every error with its file and line.

PyYAML's composed node tree keeps the position of every key and value; pydantic reports each
error with a ``loc`` path. Walking the path through the node tree turns each validation error
into ``FILE:LINE: field: message``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from lensflow.shared.errors import ConfigError, ConfigIssue, SourceLocation

ModelT = TypeVar("ModelT", bound=BaseModel)

MAX_CONFIG_BYTES = 1_000_000


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate mapping keys instead of keeping the last one."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    """Build a dict, raising on a key given twice (PyYAML silently keeps the last)."""
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first given on line {seen[key].start_mark.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node
    return loader.construct_mapping(node, deep=True)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


class YamlDocument:
    """Parsed YAML text together with its node tree, so paths can be mapped to lines."""

    def __init__(self, text: str, *, path: str) -> None:
        """Parse ``text``; raise :class:`ConfigError` with the line for a YAML syntax error."""
        self.path = path
        try:
            self.root: yaml.Node | None = yaml.compose(text, Loader=_UniqueKeyLoader)
            self.data: Any = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - safe subclass
        except yaml.MarkedYAMLError as err:
            mark = err.problem_mark or err.context_mark
            line = mark.line + 1 if mark else 1
            message = " ".join(str(p) for p in (err.context, err.problem) if p)
            raise ConfigError(
                [ConfigIssue(f"invalid YAML: {message}", SourceLocation(path, line))]
            ) from err
        except yaml.YAMLError as err:
            raise ConfigError(
                [ConfigIssue(f"invalid YAML: {err}", SourceLocation(path, 1))]
            ) from err

    def location(self, loc: tuple[int | str, ...]) -> SourceLocation:
        """Return the location of the value at ``loc``, or of its deepest existing parent.

        A mapping value is located at its key: ``mqtt:`` followed by an indented block is
        on the key's line, not the block's first line (nor, for an empty value, the next
        key's line). The column is the value's when it shares the key's line.
        """
        node = self.root
        best = node
        key: yaml.Node | None = None
        for part in loc:
            found = _child(node, part)
            if found is None:
                break
            key, node = found
            best = node
        if best is None:
            return SourceLocation(self.path, 1)
        mark = best.start_mark
        if key is not None and key.start_mark.line != mark.line:
            mark = key.start_mark
        return SourceLocation(self.path, mark.line + 1, mark.column + 1)


def _child(node: yaml.Node | None, part: int | str) -> tuple[yaml.Node | None, yaml.Node] | None:
    """The key node (None for a list item) and the value node of ``part`` in ``node``."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if key_node.value == str(part):
                return key_node, value_node
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return None, node.value[part]
    return None


def read_yaml(path: str | os.PathLike[str]) -> YamlDocument:
    """Read and parse a YAML file, with a clear error for a missing or oversized file.

    Raises:
        ConfigError: the file is missing, unreadable, too large or not valid YAML.

    """
    file = Path(path)
    try:
        size = file.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(
                [
                    ConfigIssue(
                        f"config file is {size} bytes; expected at most {MAX_CONFIG_BYTES}",
                        SourceLocation(str(file), 1),
                    )
                ]
            )
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise ConfigError([ConfigIssue(f"config file not found: {file}")]) from err
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError([ConfigIssue(f"cannot read config file {file}: {err}")]) from err
    return YamlDocument(text, path=str(file))


def validation_issues(err: ValidationError, doc: YamlDocument) -> list[ConfigIssue]:
    """Turn each pydantic error into a :class:`ConfigIssue` pointing at its YAML line."""
    issues = []
    for error in err.errors(include_url=False):
        loc = tuple(p for p in error["loc"] if isinstance(p, int | str))
        # Discriminated unions add the tag as a path segment that is not in the YAML.
        field = ".".join(str(p) for p in loc)
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key (not allowed here)"
        elif error["type"] == "missing":
            message = "required key is missing"
        issues.append(ConfigIssue(message, doc.location(loc), field))
    return issues


def load_model(model: type[ModelT], doc: YamlDocument) -> ModelT:
    """Validate a parsed document against ``model``.

    Raises:
        ConfigError: with one issue per validation error, each with its line.

    """
    if doc.data is None:
        raise ConfigError([ConfigIssue("config is empty", SourceLocation(doc.path, 1))])
    try:
        return model.model_validate(doc.data)
    except ValidationError as err:
        raise ConfigError(validation_issues(err, doc)) from err


def load_config(model: type[ModelT], path: str | os.PathLike[str]) -> ModelT:
    """Read ``path`` and validate it as ``model`` (see :func:`load_model`)."""
    return load_model(model, read_yaml(path))
