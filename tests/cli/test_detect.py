"""``lensflow detect``: the offline COCO model finds what is in darknet's photos, per image."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

pytestmark = pytest.mark.integration


def lensflow(*args: str, cwd: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lensflow", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "LENSFLOW_MODEL_CACHE": str(cache), "COLUMNS": "200"},
    )


@pytest.mark.parametrize("backend", ["litert", "openvino"])
def test_detect_finds_the_objects_of_darknet_photos_from_any_folder(
    coco_photos: dict[str, Path], model_cache: Path, tmp_path: Path, backend: str
) -> None:
    dog, person = coco_photos["dog"], coco_photos["person"]
    result = lensflow(
        "detect",
        str(dog),
        str(person),
        "--backend",
        backend,
        "--json",
        cwd=tmp_path,
        cache=model_cache,
    )

    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert [entry["image"] for entry in found] == [str(dog), str(person)]
    classes = [{d["class_name"] for d in entry["detections"]} for entry in found]
    assert {"dog", "bicycle"} <= classes[0] and classes[0] & {"car", "truck"}
    assert "person" in classes[1]
    box = found[0]["detections"][0]["box"]
    assert len(box) == 4 and box[0] < box[2] and box[1] < box[3]


def test_bad_files_are_reported_per_image_and_the_others_still_run(
    coco_photos: dict[str, Path], model_cache: Path, tmp_path: Path
) -> None:
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"not an image")
    missing = tmp_path / "missing.jpg"
    saved = tmp_path / "annotated"

    result = lensflow(
        "detect",
        str(missing),
        str(coco_photos["bus"]),
        str(garbage),
        "--json",
        "--save",
        str(saved),
        cwd=tmp_path,
        cache=model_cache,
    )

    assert result.returncode == 1
    missing_out, bus_out, garbage_out = json.loads(result.stdout)
    assert "No such file" in missing_out["error"]
    assert "expected a JPEG, PNG, WebP or BMP image" in garbage_out["error"]
    assert {"bus", "person"} <= {d["class_name"] for d in bus_out["detections"]}
    drawn = cv2.imread(str(saved / "bus.jpg"))
    assert drawn is not None and drawn.shape == cv2.imread(str(coco_photos["bus"])).shape


def test_a_precision_the_model_does_not_have_is_a_clear_error(
    coco_photos: dict[str, Path], model_cache: Path, tmp_path: Path
) -> None:
    result = lensflow(
        "detect", str(coco_photos["dog"]), "--precision", "fp32", cwd=tmp_path, cache=model_cache
    )

    assert result.returncode == 1
    assert "is published in int8" in result.stderr and "--precision int8" in result.stderr
    assert "Traceback" not in result.stderr
