"""Values the command line accepts for its closed-set options.

Enums, so typer lists the choices in ``--help`` and rejects anything else with a usage error
before a command runs. Each member's value is one of the strings of the matching ``Literal``
type of the library (:data:`lensflow.models.export.artifacts.Backend`,
:data:`lensflow.models.export.exporter.Format`,
:data:`lensflow.models.export.exporter.Precision`, :data:`lensflow.bench.cloud.IngestDatabase`), so
``choice.value`` type-checks where that ``Literal`` is expected: a value outside it is a mypy
error at the call site.
"""

from __future__ import annotations

from enum import StrEnum


class BackendChoice(StrEnum):
    """``--backend``: the runtime that runs the artifact."""

    OPENVINO = "openvino"
    ONNXRUNTIME = "onnxruntime"
    LITERT = "litert"


class FormatChoice(StrEnum):
    """``--format``: the artifact format an export writes."""

    ONNX = "onnx"
    OPENVINO = "openvino"


class PrecisionChoice(StrEnum):
    """``--precision``: the numeric precision of an artifact."""

    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"


class IngestDatabaseChoice(StrEnum):
    """``--ingest-db``: where ``bench cloud``'s worker writes its results."""

    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"
