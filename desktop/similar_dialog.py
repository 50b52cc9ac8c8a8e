"""Relabel all similar…: a safe bulk edit, previewed exactly before anything is written.

The dialog asks the API what relabelling a crop and its look-alikes would change
(``POST /v1/labels/similar/preview``: the crop and its nearest crops at least as similar as
the threshold), and shows it grouped by current label, with the crops a person already
decided left alone (counted, with an explicit checkbox to include them). Every change of the
label, threshold, count or checkbox previews again. "Relabel N crops" applies exactly the
previewed crops (``expect``): when the set changed meanwhile (a look-alike relabelled, a new
crop nearer) the API refuses with 409 and the dialog previews again and says so. The change is
one batch of the audit trail: one Ctrl+Z undoes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QSlider,
    QSpinBox,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from lensflow.desktop.api_review_types import ReviewBatch, SimilarPreview
from lensflow.desktop.client_reviews import PreviewChanged, ReviewCalls
from lensflow.desktop.errors import ApiError
from lensflow.desktop.label_bar import swatch
from lensflow.desktop.label_schemas import SchemaBook
from lensflow.desktop.theme import error_color
from lensflow.desktop.workers import Runner

DEFAULT_THRESHOLD = 0.80
DEFAULT_K = 20
PREVIEW_DELAY_MS = 250


@dataclass(frozen=True)
class SimilarAsk:
    """What is asked of the API: the crop, the label and which look-alikes."""

    crop_id: str
    node: str
    label: str
    k: int
    min_similarity: float
    include_human: bool


class SimilarDialog(QDialog):
    """Preview and apply the relabel of a crop and its look-alikes.

    Signals:
        applied(object, str): The :class:`ReviewBatch` stored, and what it did in words.

    """

    applied = Signal(object, str)

    def __init__(
        self,
        schemas: SchemaBook,
        *,
        crop_id: str,
        node: str,
        label: str | None,
        runner: Runner,
        client: Callable[[], ReviewCalls | None],
        parent: QWidget | None = None,
    ) -> None:
        """A dialog about ``crop_id``'s look-alikes for ``node``, proposing ``label``."""
        super().__init__(parent)
        self.setWindowTitle("Relabel all similar")
        self.crop_id, self.node, self.runner, self.client = crop_id, node, runner, client
        self.preview: SimilarPreview | None = None
        self.previewed: SimilarAsk | None = None
        self._generation = 0
        self.label = QComboBox()
        schema = schemas.schema(node)
        for entry in schema.labels if schema is not None else []:
            self.label.addItem(swatch(entry.color), entry.name)
        if label is not None:
            self.label.setCurrentText(label)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(50, 100)
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.50, 1.00)
        self.threshold.setSingleStep(0.01)
        self.threshold.setDecimals(2)
        self.k = QSpinBox()
        self.k.setRange(1, 200)
        self.k.setValue(DEFAULT_K)
        self.include_human = QCheckBox("Also change crops a person already decided")
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Now", "Crops"])
        self.tree.setColumnWidth(0, 300)
        self.summary = QLabel("Previewing…")
        self.summary.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.apply_button = self.buttons.addButton(
            "Relabel", QDialogButtonBox.ButtonRole.AcceptRole
        )
        self.apply_button.setEnabled(False)
        self.buttons.accepted.connect(self.apply)
        self.buttons.rejected.connect(self.reject)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(PREVIEW_DELAY_MS)
        self._timer.timeout.connect(self.refresh)
        self._layout()
        self.slider.valueChanged.connect(lambda v: self.threshold.setValue(v / 100))
        self.threshold.valueChanged.connect(self._threshold_changed)
        for signal in (
            self.label.currentTextChanged,
            self.k.valueChanged,
            self.include_human.toggled,
        ):
            signal.connect(self._changed)
        self.threshold.setValue(DEFAULT_THRESHOLD)
        self.resize(560, 520)

    def _layout(self) -> None:
        form = QFormLayout()
        form.addRow("Relabel as", self.label)
        threshold = QHBoxLayout()
        threshold.addWidget(self.slider, 1)
        threshold.addWidget(self.threshold)
        form.addRow("At least this similar", threshold)
        form.addRow("Among the nearest", self.k)
        form.addRow("", self.include_human)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"Crop <b>{self.crop_id}</b> and the crops that look like it:"))
        layout.addLayout(form)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.summary)
        layout.addWidget(self.buttons)

    # -- previewing ----------------------------------------------------------------------------

    def ask(self) -> SimilarAsk:
        """What the widgets ask for now."""
        return SimilarAsk(
            crop_id=self.crop_id,
            node=self.node,
            label=self.label.currentText(),
            k=self.k.value(),
            min_similarity=round(self.threshold.value(), 2),
            include_human=self.include_human.isChecked(),
        )

    def refresh(self, note: str = "") -> None:
        """Ask the API for the preview of what the widgets say (the last answer wins)."""
        client = self.client()
        ask = self.ask()
        if client is None or not ask.label:
            self._say("No label to relabel to." if client else "Not connected.", error=True)
            return
        self._generation += 1
        generation = self._generation
        self.apply_button.setEnabled(False)
        self.runner.submit(
            lambda: client.preview_similar(
                ask.crop_id,
                label=ask.label,
                node=ask.node,
                k=ask.k,
                min_similarity=ask.min_similarity,
                include_human=ask.include_human,
            ),
            on_done=lambda preview: self._previewed(preview, ask, generation, note),
            on_error=lambda err: self._failed(err, generation),
            name="preview similar",
            priority=1500,
        )

    def _previewed(
        self, preview: SimilarPreview, ask: SimilarAsk, generation: int, note: str
    ) -> None:
        if generation != self._generation:
            return
        self.preview, self.previewed = preview, ask
        self.tree.clear()
        for group in preview.groups:
            current = group.current or "(no label)"
            who = f" · {group.status} by a person" if group.human else ""
            top = QTreeWidgetItem([f"{current} → {preview.label}{who}", str(len(group.crop_ids))])
            for crop_id in group.crop_ids:
                top.addChild(QTreeWidgetItem([crop_id, ""]))
            self.tree.addTopLevelItem(top)
        count = len(preview.crop_ids)
        self.include_human.setText(
            f"Also change crops a person already decided ({preview.skipped_human} left alone)"
            if not ask.include_human
            else "Also change crops a person already decided"
        )
        parts = [f"Will relabel {count} crop(s) as '{preview.label}' in one step (Ctrl+Z undoes)."]
        if preview.skipped_human:
            parts.append(f"{preview.skipped_human} decided by a person are left alone.")
        if preview.unchanged:
            parts.append(f"{preview.unchanged} already '{preview.label}'.")
        if preview.not_run:
            parts.append(f"{preview.not_run} not run by {preview.node}.")
        self._say(" ".join(([note] if note else []) + parts), error=bool(note))
        self.apply_button.setText(f"Relabel {count} crop(s)")
        self.apply_button.setEnabled(count > 0)

    def _failed(self, err: Exception, generation: int) -> None:
        if generation == self._generation:
            self.tree.clear()
            self._say(getattr(err, "message", str(err)), error=True)

    # -- applying ------------------------------------------------------------------------------

    def apply(self) -> None:
        """Relabel exactly the previewed crops (refused and previewed again if they changed)."""
        client, ask, preview = self.client(), self.previewed, self.preview
        if client is None or ask is None or preview is None or ask != self.ask():
            return
        self.apply_button.setEnabled(False)
        self._say("Relabelling…")
        expect = list(preview.crop_ids)
        self.runner.submit(
            lambda: client.relabel_similar(
                ask.crop_id,
                label=ask.label,
                expect=expect,
                node=ask.node,
                k=ask.k,
                min_similarity=ask.min_similarity,
                include_human=ask.include_human,
            ),
            on_done=lambda batch: self._applied(batch, ask),
            on_error=self._apply_failed,
            name="relabel similar",
            priority=2000,
        )

    def _applied(self, batch: ReviewBatch, ask: SimilarAsk) -> None:
        what = f"Relabelled {batch.changed} similar crop(s) as '{ask.label}' (one step)"
        self.applied.emit(batch, what)
        self.accept()

    def _apply_failed(self, err: Exception) -> None:
        if isinstance(err, PreviewChanged):
            self.refresh(
                note="The similar crops changed since the preview: nothing was "
                "relabelled. Here is the new preview; check it and apply again."
            )
            return
        self._say(err.message if isinstance(err, ApiError) else str(err), error=True)
        self.apply_button.setEnabled(self.preview is not None and bool(self.preview.crop_ids))

    # -- plumbing ------------------------------------------------------------------------------

    def _threshold_changed(self, value: float) -> None:
        self.slider.blockSignals(True)
        self.slider.setValue(round(value * 100))
        self.slider.blockSignals(False)
        self._changed()

    def _changed(self) -> None:
        self.apply_button.setEnabled(False)
        self._timer.start()

    def _say(self, text: str, *, error: bool = False) -> None:
        self.summary.setStyleSheet(f"color: {error_color().name()};" if error else "")
        self.summary.setText(text)
