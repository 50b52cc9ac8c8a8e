"""The reference: ultralytics' own predict loop on a model, as lensflow detections."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lensflow.models.export import library_logs
from lensflow.shared.classifiers.base import Image
from lensflow.shared.detectors.base import Detection
from lensflow.shared.errors import ModelError


def reference_detections(
    model_path: Path,
    images: Sequence[Image],
    *,
    imgsz: int = 640,
    conf: float = 0.25,
    iou: float = 0.7,
    max_det: int = 300,
) -> list[list[Detection]]:
    """Run ``ultralytics.YOLO(model_path).predict`` on each BGR frame.

    Works for a .pt checkpoint and for the exported artifacts ultralytics can load (.onnx,
    an OpenVINO folder), so the same function is the parity reference for both.
    """
    from lensflow.models.export.ultralytics_env import prepare_ultralytics

    prepare_ultralytics()
    from ultralytics.engine.results import Results
    from ultralytics.models import YOLO

    library_logs.adopt()
    source = model_path.parent if model_path.suffix == ".xml" else model_path
    try:
        model = YOLO(str(source), task="detect")
    except Exception as err:  # ultralytics raises many kinds; translate once
        raise ModelError(f"ultralytics cannot load {source}: {err}") from err
    results = []
    for image in images:
        (result,) = model.predict(
            image,
            imgsz=imgsz,
            conf=conf,
            iou=iou,
            max_det=max_det,
            verbose=False,
            save=False,
            rect=False,  # the square letterbox of the exported models, not a minimal one
        )
        if not isinstance(result, Results) or result.boxes is None:
            raise ModelError(f"ultralytics returned no detection boxes for {source}")
        names = result.names
        boxes = result.boxes
        results.append(
            [
                Detection(
                    class_id=int(c),
                    class_name=str(names[int(c)]),
                    score=float(s),
                    box=(float(b[0]), float(b[1]), float(b[2]), float(b[3])),
                )
                for b, s, c in zip(
                    boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist(), strict=True
                )
            ]
        )
    return results
