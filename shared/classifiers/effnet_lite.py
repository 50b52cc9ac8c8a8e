"""The EfficientNet-Lite0 model shared by ``vehicle_type`` and ``embeddings``: find, check, load.

Both plugins run one ONNX export of the manifest's ``efficientnet-lite0`` (ImageNet-1k) with two
outputs, ``logits`` (``(N, 1000)``) and ``features`` (``(N, 1280)``, the pooled activations the
classifier layer reads), through
:class:`~lensflow.shared.classifiers.onnx_classifier.OnnxClassifier`'s preprocessing and
batching.

Where the model comes from (the node's ``model`` param):

* a manifest name (default ``efficientnet-lite0``): resolved through the model store the
  pipeline was compiled with (:mod:`lensflow.shared.classifiers.model_store`; the model-export
  package's store keeps the export at
  ``<cache>/efficientnet-lite0/export/onnx-fp32-features/model.onnx`` and, when the ``export``
  extra (torch, timm) is installed, fetches and exports it when the plugin is created — about
  5 s, once — so a fresh clone runs the pipeline with no manual step). Without the extra,
  ``lensflow models export-classifier efficientnet-lite0`` must have been run (on any machine;
  copy the folder).
* a path ending in ``.onnx``: a file of that kind, used as is.

With ``runtime: triton`` (and ``triton: {url, model}``) the model runs on a Triton server
instead (``lensflow models triton-repo`` serves the same export): nothing is exported here, and
when the export is on this machine anyway the server must run that very file (sha256).

Either way the pipeline fails when it is loaded — not per crop — if the model is not there:
the params check (at compile time) names the expected path and the command that makes it.
Compiled without a model store (the desktop, the API's validate route), a manifest name is
taken on trust: model files are a worker's concern.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Self

from pydantic import Field, PrivateAttr, ValidationInfo, model_validator

from lensflow.shared.classifiers.model_store import ModelStore, store_from_context, warn
from lensflow.shared.classifiers.onnx_classifier import (
    OnnxClassifier,
    OnnxClassifierParams,
    Runtime,
)
from lensflow.shared.classifiers.triton_client import TritonParams, pairing_problem
from lensflow.shared.config.base import StrictModel
from lensflow.shared.errors import LensflowError, ModelError

DEFAULT_MODEL = "efficientnet-lite0"
LOGITS = "logits"
FEATURES = "features"

logger = logging.getLogger(__name__)


def make_command(model: str) -> str:
    """The shell command that makes the export of manifest model ``model``."""
    return f"lensflow models export-classifier {model}"


class EffNetParams(StrictModel):
    """Parameters shared by the nodes that run the EfficientNet-Lite0 export."""

    model: str = Field(
        DEFAULT_MODEL,
        description="A manifest model name (kind timm-state-dict; exported with logits and "
        "features outputs on first load when the export extra is installed) or the path of "
        "such an .onnx file.",
    )
    manifest: str | None = Field(
        None,
        description="Model manifest for a model name; the one lensflow ships when absent.",
    )
    threads: int | None = Field(
        None, ge=1, description="ONNX Runtime intra-op threads; its own default when absent."
    )
    runtime: Runtime = Field(
        "onnxruntime", description="onnxruntime (in the worker) or triton (a Triton server)."
    )
    triton: TritonParams | None = Field(
        None, description="Server and model name of runtime triton."
    )
    _models: ModelStore | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _check_model(self, info: ValidationInfo) -> Self:
        self._models = store_from_context(info.context)
        if pairing := pairing_problem(self.runtime, self.triton):
            raise ValueError(pairing)
        if self.runtime == "triton":
            return self  # the server has the model; a local export is only checked against it
        problem = model_problem(self.model, self.manifest, models=self._models)
        if problem is None:
            return self
        if self._models is not None and not self._models.strict and not is_path(self.model):
            warn(info.context, problem)  # missing on this machine, not wrong in the file
            return self
        raise ValueError(problem)


def is_path(model: str) -> bool:
    """Whether ``model`` names an ONNX file (rather than a manifest model)."""
    return model.endswith(".onnx")


def model_problem(model: str, manifest: str | None, *, models: ModelStore | None) -> str | None:
    """Why the model cannot be had when the pipeline loads, or None when it can (cheap check).

    Nothing is fetched or exported here: a manifest model passes when its export exists, or
    when the store can build it on load; without a store it is not looked up at all.
    """
    if is_path(model):
        if Path(model).is_file():
            return None
        return (
            f"model file {model!r} does not exist: expected an EfficientNet-Lite0 ONNX export "
            f"with outputs {LOGITS!r} and {FEATURES!r}; make one with "
            f"`{make_command(DEFAULT_MODEL)} --out DIR`, or set model: {DEFAULT_MODEL} to use "
            "the manifest's (built on first load)"
        )
    if models is None:
        return None
    if manifest is not None and not Path(manifest).is_file():
        return (
            f"model {model!r} is looked up in the manifest {manifest!r}, which does not exist "
            "(leave the node's manifest param out to use the one lensflow ships)"
        )
    try:
        where = models.locate(model, manifest=_path(manifest), features=True)
    except LensflowError as err:
        return f"model {model!r}: {err}"
    if where.exists or where.buildable:
        return None
    return (
        f"model {model!r} is not exported: expected {where.path}, and it cannot be built here "
        f"because {where.why_not}. Run `{where.command}` where it can, or point model: at an "
        "exported .onnx file"
    )


def _path(manifest: str | None) -> Path | None:
    return None if manifest is None else Path(manifest)


def load_effnet(params: EffNetParams, *, plugin: str) -> tuple[OnnxClassifier, Path | None]:
    """The model of a node, exported first if it is a manifest model without an export yet.

    Args:
        params: the node's validated params.
        plugin: the plugin's key, for error messages.

    Returns:
        The loaded model, and the path of its .onnx file (None on Triton without a local copy).

    Raises:
        ModelError: the model cannot be fetched, exported or loaded, or lacks the
            ``logits``/``features`` outputs.

    """
    if params.runtime == "triton":
        return _load_on_triton(params, plugin=plugin)
    if is_path(params.model):
        path = Path(params.model)
    else:
        models = params._models
        if models is None:
            raise ModelError(
                f"{plugin}: model {params.model!r} is a manifest name, but the pipeline was "
                "compiled without a model store to resolve it; compile it with one (as the "
                "cloud worker does) or point model: at an exported .onnx file"
            )
        try:
            path = models.provide(
                params.model, manifest=_path(params.manifest), features=True, log=logger.info
            )
        except LensflowError as err:
            raise ModelError(
                f"{plugin}: cannot build the export of {params.model!r} ({err}); "
                f"run `{make_command(params.model)}`"
            ) from err
    try:
        net = OnnxClassifier(OnnxClassifierParams(model=str(path), threads=params.threads))
    except (LensflowError, ValueError) as err:  # ValueError: the file vanished since the check
        raise ModelError(f"{plugin}: {err}") from err
    _check_outputs(net, str(path), plugin=plugin)
    return net, path


def _load_on_triton(params: EffNetParams, *, plugin: str) -> tuple[OnnxClassifier, Path | None]:
    """The node's model on its Triton server; the local export, if any, is what it must run."""
    local: Path | None = None
    if is_path(params.model):
        local = Path(params.model) if Path(params.model).is_file() else None
    elif params._models is not None:
        try:
            where = params._models.locate(
                params.model, manifest=_path(params.manifest), features=True
            )
            local = where.path if where.exists else None
        except LensflowError:
            local = None  # no manifest entry here: the server's model is taken as it is
    net_params = OnnxClassifierParams(
        model=None if local is None else str(local), runtime="triton", triton=params.triton
    )
    net = OnnxClassifier(net_params)
    assert params.triton is not None  # checked by the params
    _check_outputs(net, f"Triton model {params.triton.model!r}", plugin=plugin)
    return net, local


def _check_outputs(net: OnnxClassifier, where: str, *, plugin: str) -> None:
    missing = {LOGITS, FEATURES} - set(net.output_names)
    if missing:
        raise ModelError(
            f"{plugin}: {where} has outputs {list(net.output_names)}, expected {LOGITS!r} and "
            f"{FEATURES!r}; re-export it with `{make_command(DEFAULT_MODEL)}`"
        )
