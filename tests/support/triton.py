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

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lensflow.models.export.triton_repo import RepoSettings, write_repository
from lensflow.services.triton import TritonServer


@contextmanager
def serving(
    models: Sequence[tuple[str, Path]], folder: Path, *, strip_sha256: bool = False, **settings: Any
) -> Iterator[TritonServer]:
    """Serve ``(name, onnx file)`` pairs from a Python-backend repository in ``folder``.

    ``strip_sha256`` removes the ``lensflow_sha256`` parameter, as a hand-written config lacks it.
    """
    repository = folder / "repository"
    chosen = {"backend": "python", "kind": "cpu", "intra_op_threads": 1, **settings}
    for config in write_repository(repository, models, RepoSettings(**chosen)):
        if strip_sha256:
            text = config.read_text()
            start = text.index('parameters {\n  key: "lensflow_sha256"')
            end = text.index("}\n}\n", start) + 4
            config.write_text(text[:start] + text[end:])
    server = TritonServer(repository, data_dir=folder / "server")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def tiny_onnx(path: Path, *, batch: int | str = "N") -> Path:
    """A (batch, 3, 2, 2) -> (batch, 5) linear model."""
    weights = np.random.default_rng(0).standard_normal((12, 5)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["pixels"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "W"], ["logits"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [batch, 3, 2, 2])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 5])],
        [numpy_helper.from_array(weights, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
