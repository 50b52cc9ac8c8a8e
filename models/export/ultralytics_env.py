"""Make ultralytics usable offline on a CPU-only torch, without side effects on import.

Two problems on these machines, both fixed by :func:`prepare_ultralytics`:

* ultralytics reaches for the network (telemetry, pip auto-install, fonts, asset downloads)
  unless told it is offline, and writes its settings next to the repository by default;
* ``torchvision==0.28.0``'s compiled ops need a CUDA torch, so ``import torchvision`` fails on
  the CPU torch 2.13.0; :func:`lensflow.shared.torch_env.install_torchvision_nms` (re-exported here)
  registers a pure-torch CPU ``torchvision::nms`` when, and only when, they cannot load.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from lensflow.shared.torch_env import install_torchvision_nms

__all__ = ["install_torchvision_nms", "prepare_ultralytics"]


def prepare_ultralytics(config_dir: str | os.PathLike[str] | None = None) -> None:
    """Set ultralytics' offline switches and install the torchvision shim if needed.

    Call before the first ``import ultralytics``. Idempotent.

    Args:
        config_dir: where ultralytics keeps its settings; a lensflow folder under the system
            temp directory when None.
    """
    folder = Path(config_dir) if config_dir else Path(tempfile.gettempdir()) / "lensflow-yolo"
    folder.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("YOLO_OFFLINE", "1")  # no DNS probe, telemetry, downloads
    os.environ.setdefault("YOLO_AUTOINSTALL", "0")  # never pip-install at run time
    os.environ.setdefault("YOLO_CONFIG_DIR", str(folder))
    install_torchvision_nms()
