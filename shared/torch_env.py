"""Make torch-based libraries (transformers, timm, ultralytics) import on a CPU-only torch.

``torchvision==0.28.0`` is the release that pairs with torch 2.13.0, but its compiled ops link
CUDA libraries the CPU torch lacks, so ``import torchvision`` (which transformers, timm and
ultralytics do) fails with "operator torchvision::nms does not exist". A pure-torch CPU
``torchvision::nms`` (and ``qnms``) registered with :mod:`torch.library` before torchvision is
imported fixes it — only when the compiled ops cannot load; elsewhere nothing is patched.
Nothing happens on import of this module: call :func:`install_torchvision_nms`.
"""

from __future__ import annotations

import glob
import importlib.util
import logging
import os
import sys
from typing import Any

logger = logging.getLogger(__name__)

_LIBRARY: Any = None  # the torch.library registrations live as long as this object


def install_torchvision_nms() -> bool:
    """Register a CPU ``torchvision::nms`` when torchvision's compiled ops cannot load.

    Returns:
        True when the shim was installed by this call.
    """
    global _LIBRARY
    if _LIBRARY is not None or _torchvision_ops_load():
        return False
    import torch

    # torch.library's Library API is unannotated: the ignores below cover only that.
    library = torch.library.Library("torchvision", "FRAGMENT")  # type: ignore[no-untyped-call]
    library.define(  # type: ignore[no-untyped-call]
        "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
    )
    library.define(  # type: ignore[no-untyped-call]
        "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
    )
    library.impl("nms", _nms_cpu, "CPU")  # type: ignore[no-untyped-call]
    library.impl(  # type: ignore[no-untyped-call]
        "qnms", lambda d, s, t: _nms_cpu(d.float(), s.float(), t), "CPU"
    )
    _LIBRARY = library
    # torchvision.ops.nms() still asserts its compiled ops loaded; relax that for box ops only.
    import torchvision.ops.boxes as boxes

    boxes._assert_has_ops = lambda: None
    logger.info("torchvision compiled ops unavailable; using a pure-torch CPU nms")
    return True


def _torchvision_ops_load() -> bool:
    """Whether torchvision's compiled extension loads (or torchvision is absent/imported)."""
    if "torchvision" in sys.modules:
        return True  # too late to patch; whatever happened has happened
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return True
    folder = next(iter(spec.submodule_search_locations))
    libraries = [
        *glob.glob(os.path.join(folder, "_C*.so")),
        *glob.glob(os.path.join(folder, "_C*.pyd")),
    ]
    if not libraries:
        return False
    import torch

    try:
        torch.ops.load_library(libraries[0])  # type: ignore[no-untyped-call]
    except (OSError, ImportError, RuntimeError):
        return False
    return hasattr(torch.ops.torchvision, "nms")


def _nms_cpu(boxes: Any, scores: Any, iou_threshold: float) -> Any:
    """Greedy NMS with torchvision's semantics: kept indices in descending score order."""
    import torch

    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.long, device=boxes.device)
    boxes = boxes.float()
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    order = scores.argsort(descending=True)
    keep = []
    while order.numel() > 0:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        if rest.numel() == 0:
            break
        w = (torch.minimum(x2[i], x2[rest]) - torch.maximum(x1[i], x1[rest])).clamp(min=0)
        h = (torch.minimum(y2[i], y2[rest]) - torch.maximum(y1[i], y1[rest])).clamp(min=0)
        inter = w * h
        order = rest[inter / (areas[i] + areas[rest] - inter) <= iou_threshold]
    return torch.stack(keep).to(torch.long)
