"""Schema of the pipeline DAG file (``configs/pipeline.yaml``)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import AliasChoices, Field, field_validator

from lensflow.shared.config.base import StrictModel

NODE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_LABEL_NAME = 64
"""Longest label name (the API's label schemas hold the same)."""
_PRINTABLE = re.compile(r"^[^\x00-\x1f\x7f]+$")

ConditionSpec = str | bool | dict[str, Any] | None


class BatchConfig(StrictModel):
    """How the cloud worker batches images for one node (dynamic batching)."""

    max_size: int = Field(8, ge=1, le=1024, description="Largest batch passed to process_batch.")
    max_wait_ms: float = Field(
        20.0, ge=0, le=10_000, description="Longest wait for a batch to fill before running it."
    )


class LabelDecl(StrictModel):
    """One label of a node's label schema, as the pipeline file declares it.

    The labels' order is the model's class order: a label's position is its class id.
    """

    name: str = Field(
        min_length=1,
        max_length=MAX_LABEL_NAME,
        description="The label as the model names it (stored, shown and exported as is).",
    )
    key: str | None = Field(
        None,
        pattern=r"^[0-9]$",
        description="Its hotkey digit; default: the next free one of 1-9, in order.",
    )
    color: str | None = Field(
        None,
        pattern=r"^#[0-9a-fA-F]{6}$",
        description="Its colour, #rrggbb; default: a fixed palette colour by class id.",
    )

    @field_validator("name")
    @classmethod
    def _trimmed_printable(cls, value: str) -> str:
        name = value.strip()
        if not name or not _PRINTABLE.match(name):
            raise ValueError(
                f"label name must be 1-{MAX_LABEL_NAME} printable characters, but got {value!r}"
            )
        return name


class NodeConfig(StrictModel):
    """One node of the DAG: a classifier plugin, what it depends on and when it runs."""

    name: str = Field(description="Unique node name; downstream conditions refer to it.")
    class_: str = Field(
        alias="class",
        description="Plugin: a registered key (e.g. 'tshirt_color') or a dotted path "
        "'package.module.ClassName'.",
    )
    depends_on: list[str] = Field(
        default_factory=list, description="Nodes that must run first (a name or a list)."
    )
    when: ConditionSpec = Field(
        None,
        validation_alias=AliasChoices("when", "condition"),
        description="Condition on upstream outputs; structured form or the design's string "
        "form. Absent: always run (if its dependencies did).",
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments passed to the plugin constructor."
    )
    batch: BatchConfig = Field(default_factory=BatchConfig, description="Dynamic batching.")
    enabled: bool = Field(True, description="A disabled node and its dependants never run.")
    labels: list[LabelDecl] | None = Field(
        None,
        min_length=1,
        description="The node's label schema in model order (a name, or {name, key, color} "
        "each); absent: the plugin's own classes, else the labels observed.",
    )

    model_config = StrictModel.model_config | {"populate_by_name": True}

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not NODE_NAME.match(value):
            raise ValueError(
                "node name must be a letter or _ followed by up to 63 letters, digits or _, "
                f"but got {value!r}"
            )
        return value

    @field_validator("depends_on", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("labels", mode="before")
    @classmethod
    def _names_or_mappings(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        return [{"name": item} if isinstance(item, str) else item for item in value]

    @field_validator("labels")
    @classmethod
    def _distinct_labels(cls, value: list[LabelDecl] | None) -> list[LabelDecl] | None:
        seen: dict[str, str] = {}
        keys: dict[str, str] = {}
        for label in value or []:
            folded = label.name.casefold()
            if folded in seen:
                raise ValueError(
                    f"labels must differ by more than case, but got {seen[folded]!r} and "
                    f"{label.name!r}"
                )
            seen[folded] = label.name
            if label.key is not None:
                if label.key in keys:
                    raise ValueError(
                        f"label keys must differ, but got key {label.key!r} for both "
                        f"{keys[label.key]!r} and {label.name!r}"
                    )
                keys[label.key] = label.name
        return value


class PipelineConfig(StrictModel):
    """The whole pipeline file: a version, a name and the list of nodes."""

    version: int = Field(1, description="Pipeline file format version.")
    name: str = Field("default", description="Pipeline name, recorded with results.")
    pipeline: list[NodeConfig] = Field(min_length=1, description="The DAG's nodes.")

    @field_validator("version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value != 1:
            raise ValueError(f"expected pipeline file version 1, got {value}")
        return value
