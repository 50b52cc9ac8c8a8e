"""A real Triton server for tests: a Python-backend repository of ONNX files, served on free ports.

The server is the ``tritonserver`` bundled with ``nvidia-pytriton`` in ``.venv-triton`` (made
by ``scripts/bootstrap.sh``); :func:`serving` writes the repository with the product's own
writer (``lensflow models triton-repo --backend python``) and stops the server at the end.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lensflow.models.export.triton_repo import RepoSettings, write_repository
from lensflow.services.triton import TritonServer


@contextmanager
def serving(
    models: Sequence[tuple[str, Path]], folder: Path, **settings: Any
) -> Iterator[TritonServer]:
    """Serve ``(name, onnx file)`` pairs from a Python-backend repository in ``folder``."""
    repository = folder / "repository"
    chosen = {"backend": "python", "kind": "cpu", "intra_op_threads": 1, **settings}
    write_repository(repository, models, RepoSettings(**chosen))
    server = TritonServer(repository, data_dir=folder / "server")
    server.start()
    try:
        yield server
    finally:
        server.stop()
