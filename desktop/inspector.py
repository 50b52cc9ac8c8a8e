"""The inspector: the selected crop large, everything the API knows about it, similar crops.

Three requests per crop, all on the runner: the detail (``GET /v1/results/{id}``), the
JPEG (disk cache first) and the similar crops (``GET /v1/search/similar/{id}``). A newer
selection cancels the older requests. The JPEG passes the image-header gate before it is
decoded: one declaring too many pixels is not decoded and the image area says why. A search
that the API does not offer (503 ``search_unavailable``), or a crop without an embedding (409
``not_embedded``), shows as such in the similar-crops line, not as an error. "Relabel all
similar" relabels the inspected crop and exactly the hits shown.
"""

from __future__ import annotations

import html

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from lensflow.desktop.api_types import ResultDetail, ResultItem, SearchResult, SimilarItem
from lensflow.desktop.client import ApiClient
from lensflow.desktop.errors import NotEmbedded, SearchUnavailable
from lensflow.desktop.thumbs import ImageRefusedError, ThumbnailLoader, decode, load_jpeg
from lensflow.desktop.workers import Runner, Task

LARGE = QSize(360, 300)
SIMILAR_K = 12


class Inspector(QWidget):
    """Shows one crop; asks the main window to relabel its similar crops.

    Signals:
        relabel_similar(list): Crop ids (this crop and its similar ones) to relabel.
        failed(object): A request failed with this exception.

    """

    relabel_similar = Signal(list)
    failed = Signal(object)

    def __init__(
        self, runner: Runner, thumbs: ThumbnailLoader, parent: QWidget | None = None
    ) -> None:
        """An empty inspector."""
        super().__init__(parent)
        self.runner = runner
        self.thumbs = thumbs
        self.client: ApiClient | None = None
        self.item: ResultItem | None = None
        self.detail: ResultDetail | None = None
        self.similar: SearchResult | None = None
        self._tasks: list[Task] = []
        self.image = QLabel("Select a crop")
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image.setMinimumSize(LARGE)
        self.image.setStyleSheet("background: #202020; color: #bbbbbb;")
        self.info = QTextBrowser()
        self.info.setOpenLinks(False)
        self.similar_list = QListWidget()
        self.similar_list.setViewMode(QListWidget.ViewMode.IconMode)
        self.similar_list.setIconSize(QSize(72, 72))
        self.similar_list.setGridSize(QSize(96, 112))
        self.similar_list.setWordWrap(True)
        self.similar_list.setFixedHeight(136)
        self.similar_list.setFlow(QListWidget.Flow.LeftToRight)
        self.similar_list.setWrapping(False)
        self.similar_status = QLabel("")
        self.relabel_button = QPushButton("Relabel all similar…")
        self.relabel_button.setEnabled(False)
        self.relabel_button.clicked.connect(self._relabel_similar)
        self.thumbs.loaded.connect(self._thumbnail_loaded)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.image)
        layout.addWidget(self.info, 1)
        head = QHBoxLayout()
        head.addWidget(QLabel("<b>Similar crops</b>"))
        head.addWidget(self.similar_status, 1)
        head.addWidget(self.relabel_button)
        layout.addLayout(head)
        layout.addWidget(self.similar_list)

    def show_item(self, item: ResultItem | None) -> None:
        """Inspect ``item`` (None clears); requests detail, image and similar crops."""
        for task in self._tasks:
            self.runner.cancel(task)
        self._tasks = []
        self.item, self.detail, self.similar = item, None, None
        self.similar_list.clear()
        self.relabel_button.setEnabled(False)
        if item is None:
            self.image.setPixmap(QPixmap())
            self.image.setText("Select a crop")
            self.info.setHtml("")
            self.similar_status.setText("")
            return
        self.image.setText("loading…")
        self.info.setHtml(_item_html(item, None))
        client = self.client
        if client is None:
            return
        crop_id, sha = item.crop_id, item.jpeg_sha256
        cache = self.thumbs.cache
        self.similar_status.setText("searching…")
        self._tasks = [
            self.runner.submit(
                lambda: client.result(crop_id),
                on_done=self._detail_arrived,
                on_error=self.failed.emit,
                name="result detail",
                priority=1500,
            ),
            self.runner.submit(
                lambda: decode(
                    load_jpeg(crop_id, sha, cache=cache, fetch=client.crop_jpeg),
                    what=f"crop {crop_id}",
                ),
                on_done=self._image_arrived,
                on_error=self._image_failed,
                name="crop image",
                priority=1500,
            ),
            self.runner.submit(
                lambda: client.similar(crop_id, k=SIMILAR_K),
                on_done=self._similar_arrived,
                on_error=self._similar_failed,
                name="similar crops",
                priority=1400,
            ),
        ]

    def refresh(self, item: ResultItem) -> None:
        """Re-show ``item`` if it is the inspected one (its labels changed)."""
        if self.item is not None and item.crop_id == self.item.crop_id:
            self.item = item
            client = self.client
            if client is not None:
                self._tasks.append(
                    self.runner.submit(
                        lambda: client.result(item.crop_id),
                        on_done=self._detail_arrived,
                        on_error=self.failed.emit,
                        name="result detail",
                    )
                )

    def _detail_arrived(self, detail: ResultDetail) -> None:
        if self.item is None or detail.crop_id != self.item.crop_id:
            return
        self.detail = detail
        self.info.setHtml(_item_html(detail, detail))

    def _image_arrived(self, image: QImage) -> None:
        pixmap = QPixmap.fromImage(image)
        target = self.image.size().boundedTo(QSize(max(LARGE.width(), 200), 1000))
        self.image.setPixmap(
            pixmap.scaled(
                target,
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
        )

    def _image_failed(self, err: Exception) -> None:
        self.image.setPixmap(QPixmap())
        if isinstance(err, ImageRefusedError):
            self.image.setText(f"Image not shown: {err.short}\n{err}")
        else:
            self.image.setText(f"Image not available:\n{err}")
        self.image.setWordWrap(True)

    def _similar_arrived(self, result: SearchResult) -> None:
        self.similar = result
        if self.item is None:
            return
        self.similar = result
        hits = self.similar_hits()
        self.similar_status.setText(f"{len(hits)} found ({result.node})" if hits else "none found")
        for hit in hits:
            label = hit.label() or hit.detection.class_name
            entry = QListWidgetItem(f"{hit.similarity:.2f}\n{label}")
            entry.setData(Qt.ItemDataRole.UserRole, hit.crop_id)
            entry.setToolTip(
                f"{hit.crop_id} · {hit.camera} · {hit.captured_at:%Y-%m-%d %H:%M} · "
                f"cosine {hit.similarity:.3f}"
            )
            pixmap = self.thumbs.get(hit.crop_id)
            if pixmap is None:
                pixmap = self.thumbs.request(hit.crop_id, hit.jpeg_sha256)
            if pixmap is not None:
                entry.setIcon(QIcon(pixmap))
            self.similar_list.addItem(entry)
        self.relabel_button.setEnabled(bool(hits))

    def similar_hits(self) -> list[SimilarItem]:
        """The similar crops shown, best first (empty until the search answered)."""
        return list(self.similar.items) if self.similar is not None else []

    def _similar_failed(self, err: Exception) -> None:
        if isinstance(err, SearchUnavailable):
            self.similar_status.setText("image search is not configured on this API")
        elif isinstance(err, NotEmbedded):
            self.similar_status.setText("this crop has no embedding")
        else:
            self.similar_status.setText(f"search failed: {err}")

    def _thumbnail_loaded(self, crop_id: str) -> None:
        for row in range(self.similar_list.count()):
            entry = self.similar_list.item(row)
            if entry.data(Qt.ItemDataRole.UserRole) == crop_id:
                pixmap = self.thumbs.get(crop_id)
                if pixmap is not None:
                    entry.setIcon(QIcon(pixmap))

    def _relabel_similar(self) -> None:
        if self.item is None or self.similar is None:
            return
        ids = [self.item.crop_id] + [hit.crop_id for hit in self.similar_hits()]
        self.relabel_similar.emit(list(dict.fromkeys(ids)))


def _row(name: str, value: object) -> str:
    return f"<tr><td><b>{html.escape(name)}</b></td><td>{html.escape(str(value))}</td></tr>"


def _item_html(item: ResultItem, detail: ResultDetail | None) -> str:
    """The crop's facts as HTML tables."""
    d = item.detection
    parts = [
        f"<h3>{html.escape(item.crop_id)}</h3><table cellspacing=2>",
        _row("camera", f"{item.site} / {item.camera}"),
        _row("captured", item.captured_at.isoformat(timespec="seconds")),
        _row("edge class", f"{d.class_name} ({d.score:.3f})"),
        _row("box", ", ".join(f"{v:.0f}" for v in d.box) + f" in {d.frame_width}x{d.frame_height}"),
        _row("track", d.track_id if d.track_id is not None else "-"),
    ]
    for node, label in sorted(item.human_labels.items()):
        parts.append(_row(f"human label ({node})", label))
    parts.append("</table>")
    if detail is None:
        return "".join(parts) + "<p><i>loading details…</i></p>"
    p = detail.provenance
    parts += [
        "<h4>Provenance</h4><table cellspacing=2>",
        _row("edge model", p.model_sha256[:16] + "…"),
        _row("edge config", p.config_hash),
        _row("agent", p.agent_version),
        _row("DAG", f"{p.pipeline_name} {p.pipeline_version or ''}".strip()),
        "</table><h4>Classifier outputs</h4><table cellspacing=2 border=0>",
        "<tr><th align=left>node</th><th align=left>label</th><th>score</th>"
        "<th align=left>model</th><th align=left>status</th></tr>",
    ]
    for out in detail.outputs:
        score = f"{out.score:.3f}" if out.score is not None else "-"
        status = out.status if not out.reason else f"{out.status}: {out.reason}"
        parts.append(
            f"<tr><td>{html.escape(out.node)}</td><td>{html.escape(out.label or '-')}</td>"
            f"<td align=right>{score}</td>"
            f"<td>{html.escape(out.plugin)} {html.escape(out.plugin_version)}</td>"
            f"<td>{html.escape(status)}</td></tr>"
        )
    parts.append("</table>")
    if detail.history:
        parts.append("<h4>Label history</h4><table cellspacing=2>")
        for event in detail.history[-8:]:
            change = f"{event.old_label or '∅'} → {event.new_label or '∅'} ({event.node})"
            parts.append(_row(event.at.strftime("%Y-%m-%d %H:%M") + f" {event.actor}", change))
        parts.append("</table>")
    return "".join(parts)
