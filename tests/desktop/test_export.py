"""Dataset export: YOLO and COCO written from a real API process, loaded by their consumers.

The exported ``data.yaml`` goes through ultralytics' own dataset check and loader, the COCO
files through pycocotools; a cancelled export leaves nothing on disk.
"""

from __future__ import annotations

import os
import shutil
import stat
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QPushButton
from pytestqt.qtbot import QtBot

from lensflow.cloud.storage import ResultStore, create_engine_for
from lensflow.desktop.api_types import Detection, ResultItem, ResultQuery
from lensflow.desktop.client import ApiClient
from lensflow.desktop.export import (
    ExportCancelledError,
    ExportError,
    ExportOptions,
    ExportProgress,
    export_dataset,
    split_of,
)
from lensflow.desktop.export_dialog import ExportDialog
from lensflow.desktop.export_formats import FormatError, box_in_crop, jpeg_size
from lensflow.shared.crops import cut_crop, encode_jpeg
from lensflow.shared.images import read_image, sample_image_paths
from lensflow.shared.protocol import Detection as WireDetection
from lensflow.shared.protocol import Provenance, new_crop_header
from tests.support.review_api import ReviewApi
from tests.support.review_data import T0

HUMAN = {  # crop index -> human label of the detection node
    0: "person",
    1: "person",
    2: "bicycle",
    3: "car",
    4: "car",
    5: "person",
    7: "car",
    8: "bicycle",
    9: "person",
    11: "car",
    12: "person",
    14: "car",
}
ACCEPTED = "crop-00015"  # a person said the edge class is right: exported under it
REJECTED = ("crop-00016", "crop-00003")  # wrong detections (one had a label): never exported
UNSURE = "crop-00017"  # skipped for now: never exported
ACCEPTED_CLASS: dict[str, str] = {}  # filled by the fixture: the accepted crop's edge class
PADDED = ("padded-a", "padded-b")  # crops cut with padding and scaled, labelled "bus"
PAD_BOX = (50.0, 400.0, 250.0, 900.0)  # their detection box in the bus photo


def _item(box: list[float], crop_box: list[int] | None) -> ResultItem:
    return ResultItem(
        crop_id="c1",
        site="s",
        camera="cam",
        captured_at=T0,
        received_at=T0,
        detection=Detection(
            class_name="car",
            class_id=1,
            score=0.9,
            box=box,
            frame_width=640,
            frame_height=480,
            crop_box=crop_box,
        ),
        jpeg_sha256="0" * 64,
        crop_url="/v1/crops/c1.jpg",
    )


# -- pure logic ---------------------------------------------------------------------------------


def test_the_split_depends_on_the_crop_id_alone() -> None:
    ids = [f"crop-{i:05d}" for i in range(2000)]

    first = [split_of(crop_id, val_fraction=0.2) for crop_id in ids]
    again = [split_of(crop_id, val_fraction=0.2) for crop_id in reversed(ids)][::-1]

    assert first == again
    assert 0.17 < first.count("val") / len(ids) < 0.23
    assert {split_of(c, val_fraction=0.0) for c in ids} == {"train"}
    assert {split_of(c, val_fraction=1.0) for c in ids} == {"val"}


@pytest.mark.parametrize(
    ("box", "crop_box", "expected"),
    [
        # no crop box: the crop was cut tight, the object is the whole image
        ([10, 20, 110, 220], None, (0.0, 0.0, 1.0, 1.0)),
        # 100x200 box padded by 50 px each side into a 200x300 crop box
        ([100, 100, 200, 300], [50, 50, 250, 350], (0.25, 50 / 300, 0.75, 250 / 300)),
        # crop box clipped at the frame edge: the box part outside it is clipped too
        ([0, 0, 100, 100], [10, 10, 110, 110], (0.0, 0.0, 0.9, 0.9)),
    ],
)
def test_the_box_in_the_crop_is_normalised_to_the_crop_box(
    box: list[float], crop_box: list[int] | None, expected: tuple[float, ...]
) -> None:
    assert box_in_crop(_item(box, crop_box)) == pytest.approx(expected)


def test_a_box_outside_its_crop_box_is_refused() -> None:
    with pytest.raises(FormatError, match="inside crop_box"):
        box_in_crop(_item([300, 300, 400, 400], [0, 0, 100, 100]))


def test_jpeg_size_reads_the_frame_header() -> None:
    ok, data = cv2.imencode(".jpg", np.zeros((23, 37, 3), np.uint8))
    assert ok

    assert jpeg_size(data.tobytes()) == (37, 23)
    with pytest.raises(FormatError, match="expected JPEG bytes"):
        jpeg_size(b"\x89PNG\r\n")


def test_an_export_refuses_a_folder_with_files(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")

    class NoApi:
        def results(self, *_a: Any, **_k: Any) -> Any:
            raise AssertionError("listed although the target is refused")

        def crop_jpeg(self, crop_id: str) -> bytes:
            raise AssertionError(crop_id)

    with pytest.raises(ExportError, match="expected a new or empty folder"):
        export_dataset(NoApi(), ExportOptions(out_dir=tmp_path))
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


# -- against the real API -----------------------------------------------------------------------


def _seed_padded(api: ReviewApi) -> None:
    """Two crops cut as the edge cuts them: padded, clipped to the frame and scaled down."""
    frame = read_image(next(p for p in sample_image_paths() if p.stem == "bus"))
    height, width = frame.shape[:2]
    engine = create_engine_for(api.url)
    results = ResultStore(engine)
    try:
        for i, crop_id in enumerate(PADDED):
            crop, crop_box = cut_crop(frame, PAD_BOX, padding=0.3, max_side=96)
            jpeg = encode_jpeg(crop, quality=90)
            api.crops.put(jpeg)
            header = new_crop_header(
                jpeg=jpeg,
                site="plant-a",
                camera="dock-1",
                captured_at=T0 - timedelta(hours=1, minutes=i),
                detection=WireDetection(
                    class_name="person",
                    class_id=0,
                    score=0.8,
                    box=PAD_BOX,
                    frame_width=width,
                    frame_height=height,
                ),
                provenance=Provenance(model_sha256="5e" * 32, config_hash="c", agent_version="1"),
                crop_id=crop_id,
                crop_box=crop_box,
            )
            assert results.save_crop_results(
                header, jpeg_size=len(jpeg), results={}, pipeline="default"
            )
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def labelled_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReviewApi]:
    """A served API with 20 seeded crops, 12 of them labelled by a person, and 2 padded ones."""
    with ReviewApi(tmp_path_factory.mktemp("export-api"), search=False) as api:
        api.seed(20)
        _seed_padded(api)
        with ApiClient(api.base_url, key=api.tokens["operator"]) as client:
            for new in ("bicycle", "bus"):  # the detection schema is person, car, truck
                client.add_label("detection", new)
            for label in sorted(set(HUMAN.values())):
                ids = [f"crop-{i:05d}" for i, got in HUMAN.items() if got == label]
                client.relabel(ids, label=label)
            client.relabel(list(PADDED), label="bus")
            client.review([ACCEPTED], "accepted")
            client.review(list(REJECTED), "rejected")
            client.review([UNSURE], "unsure")
            ACCEPTED_CLASS[ACCEPTED] = client.result(ACCEPTED).detection.class_name
        yield api


@pytest.fixture
def client(labelled_api: ReviewApi) -> Iterator[ApiClient]:
    with ApiClient(labelled_api.base_url, key=labelled_api.tokens["viewer"]) as api_client:
        yield api_client


def _expected() -> dict[str, str]:
    """What a human-labels export holds: labels, the accepted crop, never the rejected ones."""
    labelled = {f"crop-{i:05d}": label for i, label in HUMAN.items()}
    labelled = {crop: label for crop, label in labelled.items() if crop not in REJECTED}
    return labelled | dict.fromkeys(PADDED, "bus") | ACCEPTED_CLASS


@pytest.mark.integration
def test_rejected_and_unsure_crops_are_never_exported_and_the_folder_is_readable(
    client: ApiClient, tmp_path: Path
) -> None:
    for model_labels in (False, True):
        out = tmp_path / f"ds-{model_labels}"
        export_dataset(client, ExportOptions(out_dir=out, model_labels=model_labels))
        written = {p.stem for p in out.glob("images/*/*.jpg")}
        assert not written & {*REJECTED, UNSURE}
        assert ACCEPTED in written
        if not model_labels:
            assert written == set(_expected())
        umask = os.umask(0)
        os.umask(umask)
        assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~umask  # not mkdtemp's 0700


@pytest.mark.integration
@pytest.mark.slow  # importing ultralytics takes ~5 s
def test_the_yolo_export_loads_in_ultralytics(client: ApiClient, tmp_path: Path) -> None:
    from lensflow.models.export.ultralytics_env import prepare_ultralytics

    prepare_ultralytics(tmp_path / "yolo-settings")
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    summary = export_dataset(client, ExportOptions(out_dir=tmp_path / "ds", coco=False))

    data = check_det_dataset(str(tmp_path / "ds" / "data.yaml"), autodownload=False)
    # the schema's ids (the edge model's class ids, so 1 is a class no crop showed), every
    # label of it, the labels added by operators after
    schema = {label.id: label.name for label in client.label_schema("detection").labels}
    assert schema == {0: "person", 2: "car", 3: "truck", 4: "bicycle", 5: "bus"}
    assert data["names"] == schema | {1: "unused-1"}
    assert summary.classes == ("person", "unused-1", "car", "truck", "bicycle", "bus")
    expected = _expected()
    for split in ("train", "val"):
        dataset = YOLODataset(img_path=data[split], data=data, task="detect", augment=False)
        stems = {Path(label["im_file"]).stem: label for label in dataset.labels}
        assert set(stems) == {c for c in expected if split_of(c, val_fraction=0.2) == split}
        for crop_id, label in stems.items():
            assert data["names"][int(label["cls"][0, 0])] == expected[crop_id]
        assert len(dataset) == summary.counts[split]
    whole = YOLODataset(img_path=data["train"], data=data, task="detect", augment=False)
    sample = whole[0]
    assert sample["img"].shape[0] == 3 and sample["bboxes"].shape == (1, 4)


@pytest.mark.integration
def test_the_box_of_a_padded_crop_is_where_the_object_is(client: ApiClient, tmp_path: Path) -> None:
    export_dataset(client, ExportOptions(out_dir=tmp_path / "ds", val_fraction=0.0))

    line = (tmp_path / "ds" / "labels" / "train" / "padded-a.txt").read_text().split()
    frame = read_image(next(p for p in sample_image_paths() if p.stem == "bus"))
    _, (cx1, cy1, cx2, cy2) = cut_crop(frame, PAD_BOX, padding=0.3, max_side=96)
    x1, y1, x2, y2 = PAD_BOX
    want = [
        ((x1 + x2) / 2 - cx1) / (cx2 - cx1),
        ((y1 + y2) / 2 - cy1) / (cy2 - cy1),
        (x2 - x1) / (cx2 - cx1),
        (y2 - y1) / (cy2 - cy1),
    ]
    assert line[0] == "5"  # bus: its schema id
    assert [float(v) for v in line[1:]] == pytest.approx(want, abs=1e-5)
    assert want[2] < 1.0  # padding: the object does not fill the crop


@pytest.mark.integration
def test_the_coco_export_loads_in_pycocotools(client: ApiClient, tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    summary = export_dataset(client, ExportOptions(out_dir=tmp_path / "ds", yolo=False))

    root = tmp_path / "ds"
    assert not (root / "labels").exists() and not (root / "data.yaml").exists()
    expected = _expected()
    seen = {}
    for split in ("train", "val"):
        coco = COCO(str(root / "annotations" / f"instances_{split}.json"))
        names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
        assert [names[i + 1] for i in range(len(names))] == list(summary.classes)
        for image in coco.loadImgs(coco.getImgIds()):
            [annotation] = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
            seen[image["crop_id"]] = names[annotation["category_id"]]
            picture = cv2.imread(str(root / "images" / split / image["file_name"]))
            assert picture is not None and picture.shape[:2] == (image["height"], image["width"])
            x, y, w, h = annotation["bbox"]
            assert 0 <= x < x + w <= image["width"] and 0 <= y < y + h <= image["height"]
            assert annotation["area"] == pytest.approx(w * h, rel=1e-3)
    assert seen == expected


@pytest.mark.integration
def test_model_labels_export_unreviewed_crops_under_the_classifier_label(
    client: ApiClient, tmp_path: Path
) -> None:
    summary = export_dataset(
        client,
        ExportOptions(
            out_dir=tmp_path / "ds",
            query=ResultQuery(node="vehicle"),
            node="vehicle",
            model_labels=True,
            coco=False,
        ),
    )

    vehicles = [i for i in client.results(ResultQuery(node="vehicle"), limit=500).items]
    assert set(summary.classes) >= {i.classifiers["vehicle"].label for i in vehicles}
    assert sum(summary.counts.values()) == len(vehicles) > 0


@pytest.mark.integration
def test_a_cancelled_export_leaves_nothing(client: ApiClient, tmp_path: Path) -> None:
    cancel = threading.Event()
    seen: list[ExportProgress] = []

    def progress(update: ExportProgress) -> None:
        seen.append(update)
        if update.phase == "writing" and update.done >= 3:
            cancel.set()

    with pytest.raises(ExportCancelledError):
        export_dataset(
            client, ExportOptions(out_dir=tmp_path / "out" / "ds"), progress=progress, cancel=cancel
        )

    assert any(u.phase == "writing" and u.done >= 3 for u in seen)  # it had started writing
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.integration
def test_a_crop_whose_jpeg_is_gone_is_skipped_and_reported(
    labelled_api: ReviewApi, client: ApiClient, tmp_path: Path
) -> None:
    gone = "crop-00004"
    detail = client.result(gone)
    path = labelled_api.crops.path(detail.jpeg_sha256)
    kept = tmp_path / "kept.jpg"
    shutil.copy(path, kept)
    path.unlink()
    try:
        summary = export_dataset(client, ExportOptions(out_dir=tmp_path / "ds"))
    finally:
        shutil.copy(kept, path)

    assert summary.missing == (gone,)
    assert sum(summary.counts.values()) == len(_expected()) - 1
    assert not list((tmp_path / "ds").glob(f"images/*/{gone}.jpg"))


# -- the dialog ---------------------------------------------------------------------------------


@pytest.mark.integration
def test_the_dialog_exports_off_the_ui_thread(
    qtbot: QtBot, client: ApiClient, tmp_path: Path
) -> None:
    dialog = ExportDialog(client, ExportOptions(out_dir=tmp_path / "ds"), show_messages=False)
    qtbot.addWidget(dialog)

    with qtbot.waitSignal(dialog.finished_export, timeout=30_000):
        dialog.start()
        assert dialog.is_running()  # start() returned while the export runs

    assert dialog.error is None and dialog.summary is not None
    assert dialog.summary.path == tmp_path / "ds"
    assert (tmp_path / "ds" / "data.yaml").is_file()
    assert dialog.value() == sum(dialog.summary.counts.values()) + len(dialog.summary.missing)


@pytest.mark.integration
def test_the_dialog_cancel_button_stops_the_export(
    qtbot: QtBot, client: ApiClient, tmp_path: Path
) -> None:
    slow = _SlowJpegs(client)
    dialog = ExportDialog(slow, ExportOptions(out_dir=tmp_path / "ds"), show_messages=False)
    qtbot.addWidget(dialog)

    with qtbot.waitSignal(dialog.finished_export, timeout=30_000):
        dialog.start()
        assert slow.started.wait(10)
        button = dialog.findChild(QPushButton)
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)  # type: ignore[no-untyped-call]

    assert dialog.was_cancelled and dialog.summary is None
    assert list(tmp_path.iterdir()) == []


@pytest.mark.integration
def test_the_dialog_shows_an_api_failure(
    qtbot: QtBot, labelled_api: ReviewApi, tmp_path: Path
) -> None:
    with ApiClient(labelled_api.base_url, key="lfk_not-a-key") as bad:
        dialog = ExportDialog(bad, ExportOptions(out_dir=tmp_path / "ds"), show_messages=False)
        qtbot.addWidget(dialog)
        with qtbot.waitSignal(dialog.finished_export, timeout=30_000):
            dialog.start()

    assert dialog.error is not None and "did not accept the API key" in dialog.error
    assert list(tmp_path.iterdir()) == []


class _SlowJpegs:
    """The real client, its JPEG fetches slowed so that a cancel lands mid-export."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client
        self.started = threading.Event()

    def review_queue(self, *args: Any, **kwargs: Any) -> Any:
        return self.client.review_queue(*args, **kwargs)

    def label_schema(self, *args: Any, **kwargs: Any) -> Any:
        return self.client.label_schema(*args, **kwargs)

    def crop_jpeg(self, crop_id: str) -> bytes:
        self.started.set()
        threading.Event().wait(0.05)
        return self.client.crop_jpeg(crop_id)
