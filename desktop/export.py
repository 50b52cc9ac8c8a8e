"""Export labelled crops as a training dataset: YOLO detection and COCO JSON, atomically.

The export pages through the review queue (keyset pages), keeps the crops that carry a label
for one node (a person's, or the model's one a person accepted, or with ``model_labels`` any
model label) and never the crops a person rejected (a wrong detection) or marked unsure,
fetches each crop's JPEG and writes both formats around the same images (see
:mod:`lensflow.desktop.export_formats` for the layout and the box of each crop). Which crops go to
``val`` depends on the crop id alone (a hash), so a re-export puts every crop in the same
split, whatever else was added since. Class ids are the node's label schema's ids, in model
order, for every label of the schema (``data.yaml`` names, COCO categories), so a model
fine-tuned on the export keeps its class ids; a label outside the schema (stored before the
schema existed) gets the next free id and is reported.

Nothing half-written is ever left where the dataset goes: everything is written into a
hidden sibling folder which is renamed into place only when complete (with the folder
permissions of a normal ``mkdir``); a cancel or an error removes it. Run
:func:`export_dataset` off the UI thread; it reports progress through a callback and stops
at the next crop once ``cancel`` is set.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol

from lensflow.desktop.api_review_types import LabelSchema, QueueQuery, ReviewPage
from lensflow.desktop.api_types import DETECTION_NODE, ResultItem, ResultQuery
from lensflow.desktop.errors import NotFound
from lensflow.desktop.export_formats import (
    SPLITS,
    CocoWriter,
    ExportItem,
    FormatError,
    Split,
    box_in_crop,
    jpeg_size,
    write_data_yaml,
    write_yolo_label,
)
from lensflow.shared.errors import LensflowError

logger = logging.getLogger(__name__)

PAGE_SIZE = 500
"""Results per API page while listing (the API's maximum)."""
_PROGRESS_STEPS = 200  # at most this many progress reports while writing


class ExportError(LensflowError):
    """The export could not be made; nothing was written where the dataset would go."""


class ExportCancelledError(ExportError):
    """The export was cancelled; nothing was written where the dataset would go."""


class ExportSource(Protocol):
    """What the export needs of the API (:class:`lensflow.desktop.client.ApiClient` is one)."""

    def review_queue(
        self, query: QueueQuery | None = None, *, limit: int = ..., cursor: str | None = None
    ) -> ReviewPage:
        """One page of results with their review statuses."""

    def label_schema(self, node: str = ..., *, version: int | None = None) -> LabelSchema:
        """The node's label schema (its labels with their class ids)."""

    def crop_jpeg(self, crop_id: str) -> bytes:
        """A crop's JPEG bytes."""


@dataclass(frozen=True)
class ExportOptions:
    """What to export and where.

    Attributes:
        out_dir: The dataset folder to create; it must not exist, or be empty.
        query: Which results (filters; ``order`` decides the listing order only).
        node: Whose label is the class: ``detection`` (the edge class relabelled by people)
            or a classifier node.
        model_labels: Also export crops no person labelled, under the model's label (the
            edge class, or the node's classifier label); otherwise human labels only.
        val_fraction: Share of crops in the ``val`` split, 0-1.
        yolo: Write YOLO labels and ``data.yaml``.
        coco: Write COCO JSON annotations.

    """

    out_dir: Path
    query: ResultQuery = field(default_factory=ResultQuery)
    node: str = DETECTION_NODE
    model_labels: bool = False
    val_fraction: float = 0.2
    yolo: bool = True
    coco: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.val_fraction <= 1.0:
            raise ValueError(f"expected val_fraction in [0, 1], got {self.val_fraction}")
        if not (self.yolo or self.coco):
            raise ValueError("expected at least one format (yolo or coco), got none")


@dataclass(frozen=True)
class ExportProgress:
    """Where an export stands: ``done`` of ``total`` (None while still listing)."""

    phase: Literal["listing", "writing", "finishing"]
    done: int
    total: int | None


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote.

    Attributes:
        path: The dataset folder.
        classes: Class names in class-id order (YOLO ids from 0, COCO ids from 1).
        counts: Images per split.
        missing: Crops skipped because the API had no JPEG for them.

    """

    path: Path
    classes: tuple[str, ...]
    counts: dict[Split, int]
    missing: tuple[str, ...] = ()


ProgressCallback = Callable[[ExportProgress], None]


def dataset_folder(chosen: Path, *, now: datetime | None = None) -> Path:
    """Where an export into the folder the operator chose goes.

    The chosen folder itself when it does not exist or is empty; otherwise a new
    ``lensflow-export-YYYYmmdd-HHMMSS`` folder inside it (an export never writes into a
    folder that holds files).
    """
    if not chosen.exists() or (chosen.is_dir() and not any(chosen.iterdir())):
        return chosen
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    return chosen / f"lensflow-export-{stamp}"


def split_of(crop_id: str, *, val_fraction: float) -> Split:
    """The split of a crop: ``val`` for a stable ``val_fraction`` of crop ids."""
    digest = hashlib.sha256(crop_id.encode("utf-8")).digest()
    return "val" if int.from_bytes(digest[:8], "big") < val_fraction * 2**64 else "train"


EXCLUDED = frozenset({"rejected", "unsure"})
"""Review statuses whose crops are never exported: a wrong detection, a crop skipped."""


def label_of(item: ResultItem, *, node: str, model_labels: bool) -> str | None:
    """The class of a crop for ``node``.

    None for a crop a person rejected or marked unsure; else its human label, else the model's
    label when a person accepted it or ``model_labels`` allows it.
    """
    review = getattr(item, "reviews", {}).get(node)
    if review is not None and review.status in EXCLUDED:
        return None
    if node in item.human_labels:
        return item.human_labels[node]
    accepted = review is not None and review.status == "accepted"
    return item.label(node) if model_labels or accepted else None


def class_names(schema: LabelSchema | None, labels: set[str]) -> tuple[str, ...]:
    """Names by class id: the schema's (all of them, in id order), then any other label."""
    names: dict[int, str] = {}
    if schema is not None:
        names = {label.id: label.name for label in schema.labels}
    extra = sorted(labels - set(names.values()))
    if extra:
        logger.warning("labels outside the schema get the next ids: %s", ", ".join(extra))
    top = max(names, default=-1)
    for offset, name in enumerate(extra, start=1):
        names[top + offset] = name
    return tuple(names.get(i, f"unused-{i}") for i in range(max(names, default=-1) + 1))


def export_dataset(
    source: ExportSource,
    options: ExportOptions,
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> ExportSummary:
    """List the labelled crops, fetch their JPEGs and write the dataset at ``out_dir``.

    Args:
        source: The API client.
        options: What to export and where.
        progress: Called (on this thread) as the export advances.
        cancel: Set it to stop; the export then raises :class:`ExportCancelledError`.

    Returns:
        What was written.

    Raises:
        ExportError: If ``out_dir`` is not new or empty, or no crop matches.
        ExportCancelledError: If ``cancel`` was set before the export completed.
        lensflow.desktop.errors.ApiError: If the API fails (a missing JPEG only skips its crop).

    """
    report = progress or (lambda _p: None)
    stop = cancel or threading.Event()
    target = options.out_dir
    _check_target(target)
    entries = _list(source, options, report, stop)
    if not entries:
        raise ExportError(
            f"expected at least one crop with a {'' if options.model_labels else 'human '}"
            f"label for node {options.node!r} matching the filters, got none"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(
        tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    )
    umask = os.umask(0)
    os.umask(umask)
    partial.chmod(0o777 & ~umask)  # mkdtemp's 0700 would lock others out of the dataset
    try:
        summary = _write(source, options, entries, partial, report, stop)
        report(ExportProgress("finishing", len(entries), len(entries)))
        _check_target(target)
        if target.exists():
            target.rmdir()  # empty, checked above
        partial.rename(target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    logger.info("exported %d crops to %s", len(entries), target)
    return replace(summary, path=target)


def _check_target(target: Path) -> None:
    """Refuse a target that exists and is not an empty folder."""
    if not target.exists():
        return
    if not target.is_dir() or any(target.iterdir()):
        raise ExportError(
            f"expected a new or empty folder to export to, got {target} "
            f"({'a file' if not target.is_dir() else 'not empty'})"
        )


def _pages(source: ExportSource, query: ResultQuery, stop: threading.Event) -> Iterator[ResultItem]:
    """Every result of ``query``, page by page, with its reviews."""
    cursor: str | None = None
    while True:
        if stop.is_set():
            raise ExportCancelledError("export cancelled")
        page = source.review_queue(QueueQuery(filters=query), cursor=cursor, limit=PAGE_SIZE)
        yield from page.items
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def _list(
    source: ExportSource, options: ExportOptions, report: ProgressCallback, stop: threading.Event
) -> list[ExportItem]:
    """The labelled crops of the query with their class and split, each crop once."""
    query = options.query if options.model_labels else replace(options.query, reviewed=True)
    entries: dict[str, ExportItem] = {}
    for item in _pages(source, query, stop):
        label = label_of(item, node=options.node, model_labels=options.model_labels)
        if label is not None and item.crop_id not in entries:
            split = split_of(item.crop_id, val_fraction=options.val_fraction)
            entries[item.crop_id] = ExportItem(item, label, split)
            if len(entries) % PAGE_SIZE == 0:
                report(ExportProgress("listing", len(entries), None))
    report(ExportProgress("listing", len(entries), None))
    return list(entries.values())


def _write(
    source: ExportSource,
    options: ExportOptions,
    entries: list[ExportItem],
    root: Path,
    report: ProgressCallback,
    stop: threading.Event,
) -> ExportSummary:
    """Fetch each JPEG and write images, YOLO labels and COCO files under ``root``."""
    try:
        schema: LabelSchema | None = source.label_schema(options.node)
    except NotFound:
        schema = None  # a node without a schema: its labels in name order
    classes = class_names(schema, {entry.label for entry in entries})
    class_ids = {name: i for i, name in enumerate(classes)}
    for split in SPLITS:
        (root / "images" / split).mkdir(parents=True)
        if options.yolo:
            (root / "labels" / split).mkdir(parents=True)
    coco = CocoWriter(classes, description=f"lensflow export, node {options.node!r}")
    counts: dict[Split, int] = dict.fromkeys(SPLITS, 0)
    missing: list[str] = []
    step = max(1, len(entries) // _PROGRESS_STEPS)
    report(ExportProgress("writing", 0, len(entries)))
    for done, entry in enumerate(entries, start=1):
        if stop.is_set():
            raise ExportCancelledError("export cancelled")
        crop_id = entry.item.crop_id
        try:
            jpeg = source.crop_jpeg(crop_id)
        except NotFound as err:
            logger.warning("crop %s skipped: %s", crop_id, err)
            missing.append(crop_id)
            continue
        try:
            size, box = jpeg_size(jpeg), box_in_crop(entry.item)
        except FormatError as err:
            raise ExportError(f"crop {crop_id} cannot be exported: {err}") from err
        (root / "images" / entry.split / f"{crop_id}.jpg").write_bytes(jpeg)
        if options.yolo:
            write_yolo_label(root, entry, class_id=class_ids[entry.label], box=box)
        coco.add(entry, class_id=class_ids[entry.label], box=box, size=size)
        counts[entry.split] += 1
        if done % step == 0 or done == len(entries):
            report(ExportProgress("writing", done, len(entries)))
    if options.yolo:
        write_data_yaml(root, classes)
    if options.coco:
        coco.write(root)
    return ExportSummary(root, classes, counts, tuple(missing))
