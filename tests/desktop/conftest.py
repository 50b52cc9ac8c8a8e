"""Desktop app fixtures: Qt runs offscreen (no display needed)."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before pytest-qt creates the QApplication


# -- the review app on a served, seeded API (tests/desktop/test_app_*.py) ----------------------

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.desktop.app_support import ReviewSetup, open_window, served_review_api
from tests.support.review_data import CropEmbedder, default_embedder


@pytest.fixture(scope="session")
def crop_embedder() -> CropEmbedder:
    """The embedder of the seeded crops: the ``embeddings`` plugin's model, loaded once."""
    return default_embedder()


@pytest.fixture(scope="module")
def review_setup(
    tmp_path_factory: pytest.TempPathFactory, crop_embedder: CropEmbedder
) -> Iterator[ReviewSetup]:
    """A served API (lensflow cloud api in a child process) with 60 seeded, embedded crops."""
    folder = tmp_path_factory.mktemp("review-api")
    with served_review_api(folder, embedder=crop_embedder) as setup:
        yield setup


@pytest.fixture
def window(review_setup: ReviewSetup, qtbot: object, tmp_path: Path) -> Iterator[object]:
    """The main window connected as an operator, its first page loaded."""
    with open_window(review_setup, qtbot, tmp_path, role="operator") as opened:
        yield opened
