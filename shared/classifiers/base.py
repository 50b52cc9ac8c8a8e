"""The classifier plugin contract.

A plugin is one class in one file of ``shared/classifiers/`` (or any importable module, named
by a dotted path, or a package's ``lensflow.classifiers`` entry point). It receives one image
(a BGR ``uint8`` numpy array, OpenCV's convention) and the outputs of the upstream nodes, and
returns a dict whose keys it declares in :attr:`BaseClassifier.outputs`.

Example:
    >>> class Brightness(BaseClassifier):
    ...     key = "brightness"
    ...     version = "1"
    ...     outputs = ("mean",)
    ...     def process(self, image, context):
    ...         return {"mean": float(image.mean())}

"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel

from lensflow.shared.config.base import StrictModel

Image = npt.NDArray[np.uint8]
Context = Mapping[str, Any]
Output = dict[str, Any]


class NoParams(StrictModel):
    """Parameters of a plugin that takes none (any key is an error)."""


class BaseClassifier(ABC):
    """Base class of every classifier plugin.

    Class attributes a plugin sets:
        key: the registered type key (by convention the module's file name).
        version: recorded with every result, so a result can be traced to the code and
            model that produced it; change it when outputs may change.
        outputs: the keys :meth:`process` always returns; the engine checks them.
        Params: a pydantic model of the node's ``params:``; validated when the pipeline is
            loaded, so a bad parameter or a missing model file fails at load, not per image.
        needs_pixels: whether :meth:`process` reads the image's pixels. A plugin that reads
            only its context (the edge's detection, upstream outputs) sets False: when no
            node of a pipeline needs pixels, the cloud worker checks each JPEG's header and
            decodes nothing, and such a plugin gets a read-only image of the crop's size
            whose pixels are all zero.
    """

    key: ClassVar[str] = ""
    version: ClassVar[str] = "0"
    outputs: ClassVar[tuple[str, ...]] = ()
    Params: ClassVar[type[BaseModel]] = NoParams
    needs_pixels: ClassVar[bool] = True

    def __init__(self, params: BaseModel | None = None) -> None:
        """Create the plugin from validated params (defaults when None)."""
        self.params = params if params is not None else self.Params()

    @property
    def name(self) -> str:
        """The plugin's type key (the design's ``name``)."""
        return self.key or type(self).__name__

    @abstractmethod
    def process(self, image: Image, context: Context) -> Output:
        """Classify one image.

        Args:
            image: BGR uint8 array of shape (H, W, 3).
            context: outputs of upstream nodes by node name, and ``input`` (metadata of the
                image, e.g. the edge's detection).

        Returns:
            A dict with (at least) the keys in :attr:`outputs`; values JSON-serialisable.

        """

    def process_batch(self, images: Sequence[Image], contexts: Sequence[Context]) -> list[Output]:
        """Classify a batch; the default loops over :meth:`process`. Override to batch."""
        return [
            self.process(image, context) for image, context in zip(images, contexts, strict=True)
        ]

    def warmup(self) -> None:  # noqa: B027 - deliberately a no-op hook
        """Load models and run once so the first real image is not slow (default: nothing)."""

    @classmethod
    def label_space(cls, params: Mapping[str, Any]) -> list[str] | None:
        """The labels this plugin gives, in the model's class order, without loading it.

        The API builds a node's label schema from them when the pipeline file declares no
        ``labels:``: a label's position is its class id (what exports use). Reading them must
        be cheap and never fail: a plugin whose labels cannot be told from its ``params``
        alone (a checkpoint that is not there, invalid params) answers None.

        Args:
            params: The node's ``params:`` mapping, as written (not validated).

        Returns:
            The label names in class order, or None: not known (the default); the API then
            uses the labels observed in stored results.

        """
        return None

    def describe(self) -> str:
        """One line: key, version and declared outputs."""
        return f"{self.name} v{self.version} -> {', '.join(self.outputs) or '(no outputs)'}"


def validate_params(
    plugin: type[BaseClassifier],
    params: Mapping[str, Any],
    *,
    context: Mapping[str, Any] | None = None,
) -> BaseModel:
    """Validate a node's ``params`` against the plugin's :attr:`BaseClassifier.Params`.

    Args:
        plugin: The plugin class.
        params: The node's ``params:`` mapping.
        context: Pydantic's validation context for the params' validators (the compiler puts
            the model store there, see :mod:`lensflow.shared.classifiers.model_store`).

    """
    return plugin.Params.model_validate(dict(params), context=dict(context or {}))
