"""Shared fixtures: the repository root, sample images, a registry with test plugins."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.classifiers.base import Image
from shared.classifiers.registry import PluginRegistry
from shared.images import read_image, sample_image_paths
from tests.support.plugins import make_registry

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def sample_images() -> dict[str, Image]:
    """Real photos shipped in the ultralytics wheel, by file stem (bus, zidane)."""
    return {path.stem: read_image(path) for path in sample_image_paths()}


@pytest.fixture
def registry() -> PluginRegistry:
    return make_registry()
