"""Typed config schemas and the YAML loader that reports errors with their line."""

from __future__ import annotations

import os

from lensflow.shared.config.base import StrictModel, apply_env_overrides
from lensflow.shared.config.cloud import CloudConfig
from lensflow.shared.config.edge import EdgeConfig
from lensflow.shared.config.pipeline import NodeConfig, PipelineConfig
from lensflow.shared.config.yaml_loader import YamlDocument, load_config, load_model, read_yaml

EDGE_ENV_PREFIX = "LENSFLOW_EDGE__"
CLOUD_ENV_PREFIX = "LENSFLOW_CLOUD__"


def load_edge_config(path: str | os.PathLike[str]) -> EdgeConfig:
    """Load an edge config file, with ``LENSFLOW_EDGE__SECTION__KEY`` environment overrides."""
    doc = read_yaml(path)
    doc.data = apply_env_overrides(doc.data, model=EdgeConfig, prefix=EDGE_ENV_PREFIX)
    return load_model(EdgeConfig, doc)


def load_cloud_config(path: str | os.PathLike[str]) -> CloudConfig:
    """Load a cloud config file, with ``LENSFLOW_CLOUD__SECTION__KEY`` environment overrides."""
    doc = read_yaml(path)
    doc.data = apply_env_overrides(doc.data, model=CloudConfig, prefix=CLOUD_ENV_PREFIX)
    return load_model(CloudConfig, doc)


__all__ = [
    "CLOUD_ENV_PREFIX",
    "EDGE_ENV_PREFIX",
    "CloudConfig",
    "EdgeConfig",
    "NodeConfig",
    "PipelineConfig",
    "StrictModel",
    "YamlDocument",
    "apply_env_overrides",
    "load_cloud_config",
    "load_config",
    "load_edge_config",
    "load_model",
    "read_yaml",
]
