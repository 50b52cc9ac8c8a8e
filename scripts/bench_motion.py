"""Motion-gated detection on a real video: CPU time per frame and best-per-track crops.

One camera runs through the agent's own path — a :class:`CameraWorker` reading the video
file (not paced), its frames going through a :class:`DetectorService` as in the agent, crops
``best_per_track`` into a counting sink — once detecting every frame and once per motion
setting given. Each run is in a fresh process, so its CPU time (``resource.getrusage``,
user + system, every thread) is its own; the model is loaded and warmed before the clock.

    .venv/bin/python scripts/bench_motion.py var/models/samples/opencv-vtest/vtest.avi \
        --model var/models/ssd-mobilenet-v2-coco/mobilenet_ssd_v2_coco_quant_postprocess.tflite \
        --backend litert --fps 10 --motion '{}' --motion '{"threshold": 40}'

``--ultralytics`` adds ultralytics' own ``track`` loop on the same artifact and video
(YOLO artifacts only) beside the agent without gating, wall time for both.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import time
from typing import Any


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_camera(
    video: str,
    model: str,
    backend: str,
    fps: float,
    motion: dict[str, Any] | None,
    filters: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One camera through ``CameraWorker`` on the whole video; CPU and wall time, crops."""
    from lensflow.edge.camera import CameraWorker, ReadyCrop
    from lensflow.edge.detector_service import DetectorService
    from lensflow.edge.metrics import EdgeMetrics
    from lensflow.shared.config.edge import CameraConfig, CropConfig, DetectorConfig
    from lensflow.shared.detectors.factory import load_configured_detector

    detector, _ = load_configured_detector(
        DetectorConfig.model_validate({"backend": backend, "model": model})
    )
    service = DetectorService(detector)
    client = service.client("vtest")
    import cv2
    import numpy as np

    capture = cv2.VideoCapture(video)
    ok, first = capture.read()
    capture.release()
    assert ok, video
    for _ in range(3):
        client.detect([np.asarray(first, np.uint8)])
    camera = CameraConfig.model_validate(
        {
            "name": "vtest",
            "source": {"type": "video", "path": video},
            "fps": fps,
            "motion": {"enabled": motion is not None, **(motion or {})},
            "filters": filters or {},
        }
    )
    crops: list[ReadyCrop] = []
    metrics = EdgeMetrics()
    worker = CameraWorker(
        camera,
        crops=CropConfig(mode="best_per_track"),
        detector=lambda: client,
        sink=crops.append,
        metrics=metrics,
        realtime=False,
    )
    cpu, wall = _cpu_s(), time.perf_counter()
    worker.start()
    worker.finished.wait()
    worker.stop()
    cpu, wall = _cpu_s() - cpu, time.perf_counter() - wall
    service.close()
    classes: dict[str, int] = {}
    for crop in crops:
        classes[crop.detection.class_name] = classes.get(crop.detection.class_name, 0) + 1
    reasons = {
        reason: int(value)
        for reason in ("always", "startup", "motion", "tracks", "periodic")
        if (
            value := metrics.registry.get_sample_value(
                "lensflow_edge_frames_detected_total", {"camera": "vtest", "reason": reason}
            )
        )
    }
    return {
        "reasons": reasons,
        "motion": motion,
        "frames": worker.frames,
        "detected": worker.frames_detected,
        "crops": len(crops),
        "tracks": len({c.track_id for c in crops}),
        "classes": classes,
        "cpu_s": cpu,
        "wall_s": wall,
    }


def run_ultralytics(video: str, model: str) -> dict[str, Any]:
    """Ultralytics' own ``track`` loop (ByteTrack, streamed), conf 0.25 as the agent's."""
    from lensflow.models.export.ultralytics_env import prepare_ultralytics

    prepare_ultralytics()  # offline, and the torchvision NMS shim on a CPU torch
    from ultralytics.models import YOLO

    yolo = YOLO(model, task="detect")
    import cv2

    capture = cv2.VideoCapture(video)
    ok, first = capture.read()
    capture.release()
    assert ok, video
    for _ in range(3):
        yolo.predict(first, imgsz=640, verbose=False)
    cpu, wall = _cpu_s(), time.perf_counter()
    frames = 0
    for _ in yolo.track(video, stream=True, verbose=False, imgsz=640, conf=0.25):
        frames += 1
    cpu, wall = _cpu_s() - cpu, time.perf_counter() - wall
    return {"frames": frames, "cpu_s": cpu, "wall_s": wall}


def run_floor(video: str, motion: dict[str, Any]) -> dict[str, Any]:
    """CPU time of decoding the video alone, and of the motion detector on its frames."""
    import cv2
    import numpy as np

    from lensflow.edge.motion import MotionDetector
    from lensflow.shared.config.edge import MotionConfig

    cpu = _cpu_s()
    capture = cv2.VideoCapture(video)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(np.asarray(frame, np.uint8))  # BGR uint8 already: no copy
    capture.release()
    decode = _cpu_s() - cpu
    detector = MotionDetector(MotionConfig.model_validate({"enabled": True, **motion}))
    cpu = _cpu_s()
    for frame in frames:
        detector.detect(frame)
    return {"frames": len(frames), "decode_s": decode, "motion_s": _cpu_s() - cpu}


def _in_process(func: Any, *args: Any) -> dict[str, Any]:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        result: dict[str, Any] = pool.apply(func, args)
        return result


def main(argv: list[str] | None = None) -> int:
    """Print one row per run and the ratios against detecting every frame."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video")
    parser.add_argument("--model", required=True)
    parser.add_argument("--backend", default="litert")
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--motion", action="append", default=[], help="JSON motion settings")
    parser.add_argument(
        "--filters", default="{}", help="JSON filters section of the camera, for every run"
    )
    parser.add_argument("--ultralytics", action="store_true")
    parser.add_argument(
        "--floor", action="store_true", help="also decoding alone and motion detection alone"
    )
    args = parser.parse_args(argv)
    filters = json.loads(args.filters)
    common = (args.video, args.model, args.backend, args.fps)
    base = _in_process(run_camera, *common, None, filters)
    rows = [base] + [_in_process(run_camera, *common, json.loads(m), filters) for m in args.motion]
    print(f"video {args.video}, model {args.model} ({args.backend}), filters {args.filters}")
    print(
        f"{'motion':<44} {'frames':>6} {'detected':>8} {'CPU ms/fr':>9} {'x every':>7} "
        f"{'crops':>5} {'x every':>7} {'fps':>6}"
    )
    for row in rows:
        label = "off (every frame)" if row["motion"] is None else json.dumps(row["motion"])
        cpu_ms = 1000 * row["cpu_s"] / row["frames"]
        base_ms = 1000 * base["cpu_s"] / base["frames"]
        print(
            f"{label:<44} {row['frames']:>6} {row['detected']:>8} {cpu_ms:>9.2f} "
            f"{cpu_ms / base_ms:>7.2f} {row['crops']:>5} "
            f"{row['crops'] / max(1, base['crops']):>7.2f} "
            f"{row['frames'] / row['wall_s']:>6.1f}"
        )
        print(f"    detector ran because: {row['reasons']}; crops by class: {row['classes']}")
    if args.floor:
        floor = _in_process(run_floor, args.video, {})
        print(
            f"floor: decoding alone {1000 * floor['decode_s'] / floor['frames']:.2f} CPU ms/frame, "
            f"motion detector alone (defaults) {1000 * floor['motion_s'] / floor['frames']:.2f}"
        )
    if args.ultralytics:
        ul = _in_process(run_ultralytics, args.video, args.model)
        ours = base["frames"] / base["wall_s"]
        theirs = ul["frames"] / ul["wall_s"]
        print(
            f"ultralytics track: {ul['frames']} frames, {theirs:.1f} fps "
            f"({1000 * ul['cpu_s'] / ul['frames']:.1f} CPU ms/frame); "
            f"agent without gating {ours:.1f} fps; agent / ultralytics = {ours / theirs:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
