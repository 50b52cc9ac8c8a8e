"""The model card: a JSON file beside every exported artifact saying what it is and how good."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lensflow.shared.errors import ModelError

CARD_NAME = "model_card.json"


class AccuracyCheck(BaseModel):
    """The accuracy gate's result: F1 of the artifact against its source model."""

    model_config = ConfigDict(extra="forbid")

    images: int
    reference_detections: int
    candidate_detections: int
    matched: int
    precision: float
    recall: float
    f1: float
    iou: float = Field(0.5, description="IoU at which boxes match.")
    threshold: float
    passed: bool
    folder: str = Field(description="The calibration or hold-out folder compared on.")


class ModelCard(BaseModel):
    """Everything needed to trust and reproduce an exported artifact."""

    model_config = ConfigDict(extra="forbid")

    name: str
    task: str = "detect"
    format: str
    precision: str
    input_size: tuple[int, int]
    class_names: dict[int, str]
    artifact: str = Field(description="The model file, relative to the card.")
    artifact_sha256: str
    files: dict[str, str] = Field(description="Every file of the artifact and its sha256.")
    source: str
    license: str | None = Field(None, description="The weights' licence, where it is known.")
    source_sha256: str | None = Field(description="None for a random-init model config.")
    calibration: dict[str, Any] | None = None
    quantization: dict[str, Any] | None = None
    accuracy: AccuracyCheck | None = None
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    tools: dict[str, str] = Field(default_factory=dict)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tool_versions() -> dict[str, str]:
    """Versions of the packages that shaped the artifact."""
    found = {}
    for package in ("lensflow", "ultralytics", "torch", "onnx", "onnxruntime", "openvino", "nncf"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


def write_card(card: ModelCard, folder: Path) -> Path:
    """Write ``model_card.json`` into ``folder``."""
    path = folder / CARD_NAME
    path.write_text(json.dumps(card.model_dump(mode="json"), indent=2) + "\n")
    return path


def read_card(folder: Path) -> ModelCard:
    """Read the card of an artifact folder.

    Raises:
        ModelError: no card, or not a valid one.
    """
    path = folder / CARD_NAME
    try:
        return ModelCard.model_validate_json(path.read_bytes())
    except FileNotFoundError as err:
        raise ModelError(f"expected a model card at {path}, found none") from err
    except ValueError as err:
        raise ModelError(f"{path} is not a valid model card: {err}") from err
