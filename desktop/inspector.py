"""The inspector: the selected crop large, everything the API knows about it, similar crops.

Three requests per crop, all on the runner: the detail (``GET /v1/results/{id}``, with the
edge model's name and precision from ``GET /v1/models/cards``, asked once per model), the
JPEG (disk cache first) and the similar crops (``GET /v1/search/similar/{id}``). A newer
selection cancels the older requests. The JPEG passes the image-header gate before it is
decoded: one declaring too many pixels is not decoded and the image area says why. A search
that the API does not offer (503 ``search_unavailable``), or a crop without an embedding (409
``not_embedded``), shows as such in the similar-crops line, not as an error. "Relabel all
similar" relabels the inspected crop and exactly the hits shown; clicking a similar crop
opens it (its row when the list has it).

Following the result list (:meth:`Inspector.follow`), the inspector refreshes when the
inspected crop's row changes (a relabel, an undo), and says so when the list is empty ("No
crops match these filters") rather than keeping the last crop. The facts are rendered by
:mod:`lensflow.desktop.inspector_html`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from PySide6.QtCore import QEvent, QModelIndex, QPersistentModelIndex, QSize, Qt, QUrl, Signal
from PySide6.QtGui import QCursor, QIcon, QImage, QPalette, QPixmap, QTextOption
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QTextBrowser,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from lensflow.desktop.api_types import ResultDetail, ResultItem, SearchResult, SimilarItem
from lensflow.desktop.client import ApiClient
from lensflow.desktop.client_models import ModelCard, ModelCards
from lensflow.desktop.errors import ApiError, NotEmbedded, SearchUnavailable
from lensflow.desktop.inspector_html import LINK_CSS, Hover, item_html
from lensflow.desktop.models import ResultsModel
from lensflow.desktop.thumbs import ImageRefusedError, ThumbnailLoader, decode, load_jpeg
from lensflow.desktop.workers import Runner, Task

logger = logging.getLogger(__name__)

LARGE = QSize(360, 300)
SIMILAR_K = 12
SELECT_A_CROP = "Select a crop"
NO_MATCH = "No crops match these filters"
_Index = QModelIndex | QPersistentModelIndex


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
        self.cards = ModelCards()
        self._client: ApiClient | None = None
        self.item: ResultItem | None = None
        self.detail: ResultDetail | None = None
        self.card: ModelCard | None = None
        self.similar: SearchResult | None = None
        self.hover = Hover()
        self._tasks: list[Task] = []
        self._refreshing: ResultItem | None = None  # the item a refresh in flight was asked for
        self._model: ResultsModel | None = None
        self._select_row: Callable[[int], None] | None = None
        self.image = QLabel(SELECT_A_CROP)
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image.setMinimumSize(LARGE)
        self.image.setStyleSheet("background: #202020; color: #bbbbbb;")
        self.info = QTextBrowser()
        self.info.setOpenLinks(False)
        self.info.highlighted.connect(self._hovered)
        # wrap between words only: names may wrap after their underscores (inspector_html)
        self.info.setWordWrapMode(QTextOption.WrapMode.WordWrap)
        self.similar_list = QListWidget()
        self.similar_list.setViewMode(QListWidget.ViewMode.IconMode)
        self.similar_list.setIconSize(QSize(72, 72))
        self.similar_list.setGridSize(QSize(96, 112))
        self.similar_list.setWordWrap(True)
        self.similar_list.setFixedHeight(136)
        self.similar_list.setFlow(QListWidget.Flow.LeftToRight)
        self.similar_list.setWrapping(False)
        self.similar_list.setToolTip("Click a crop to open it")
        self.similar_list.itemClicked.connect(self._open_similar)
        self.similar_list.itemActivated.connect(self._open_similar)
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

    @property
    def client(self) -> ApiClient | None:
        """The API the inspector asks (None: not connected)."""
        return self._client

    @client.setter
    def client(self, client: ApiClient | None) -> None:
        if client is not self._client:
            self.cards.clear()  # another API may know other models
        self._client = client

    def follow(self, model: ResultsModel, *, select_row: Callable[[int], None]) -> None:
        """Keep up with the result list ``model``.

        The inspected crop is refreshed when its row changes (relabel, undo), the empty
        list is said as such, and a similar crop that the list has is opened by selecting
        its row with ``select_row``.
        """
        self._model, self._select_row = model, select_row
        model.dataChanged.connect(self._rows_changed)
        model.modelReset.connect(self._list_reset)
        model.page_loaded.connect(self._list_loaded)
        model.load_failed.connect(self._list_failed)

    def show_item(self, item: ResultItem | None, *, placeholder: str = SELECT_A_CROP) -> None:
        """Inspect ``item`` (None: show ``placeholder``); requests detail, image, similar crops."""
        for task in self._tasks:
            self.runner.cancel(task)
        self._tasks, self._refreshing = [], None
        self.item, self.detail, self.card, self.similar = item, None, None, None
        self.similar_list.clear()
        self.relabel_button.setEnabled(False)
        if item is None:
            self.image.setPixmap(QPixmap())
            self.image.setText(placeholder)
            self.info.setHtml("")
            self.similar_status.setText("")
            return
        self.image.setText("loading…")
        self._render()
        client = self.client
        if client is None:
            return
        crop_id, sha = item.crop_id, item.jpeg_sha256
        cache = self.thumbs.cache
        self.similar_status.setText("searching…")
        self._tasks = [
            self.runner.submit(
                lambda: self._fetch_detail(client, crop_id),
                on_done=self._detail_arrived,
                on_error=self._detail_failed,
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
        """Re-show ``item`` if it is the inspected one (its labels changed); fetch its detail.

        Asked again for the same item while its refresh is in flight, nothing more is sent.
        """
        if self.item is None or item.crop_id != self.item.crop_id:
            return
        self.item = item
        self._render()
        client = self.client
        if client is None or self._refreshing == item:
            return
        self._refreshing = item
        crop_id = item.crop_id
        self._tasks.append(
            self.runner.submit(
                lambda: self._fetch_detail(client, crop_id),
                on_done=self._detail_arrived,
                on_error=self._detail_failed,
                name="result detail",
            )
        )

    # -- the result list ------------------------------------------------------------------------

    def _rows_changed(self, first: _Index, last: _Index, _roles: Sequence[int] = ()) -> None:
        model = self._model
        if model is None or self.item is None:
            return
        row = model.row_of(self.item.crop_id)
        if row is not None and first.row() <= row <= last.row() and model.item(row) != self.item:
            self.refresh(model.item(row))

    def _list_reset(self) -> None:
        model = self._model
        if model is not None and self.item is not None and model.row_of(self.item.crop_id) is None:
            self.show_item(None, placeholder="Loading results…")

    def _list_loaded(self, _rows: int) -> None:
        if self._model is not None and self._model.rowCount() == 0:
            self.show_item(None, placeholder=NO_MATCH)

    def _list_failed(self, _err: object) -> None:
        if self._model is not None and self._model.rowCount() == 0:
            self.show_item(None, placeholder="No results: the list could not be loaded.")

    def _open_similar(self, entry: QListWidgetItem) -> None:
        crop_id = entry.data(Qt.ItemDataRole.UserRole)
        hit = next((h for h in self.similar_hits() if h.crop_id == crop_id), None)
        if hit is None:
            return
        row = self._model.row_of(hit.crop_id) if self._model is not None else None
        if row is not None and self._select_row is not None:
            self._select_row(row)  # the list's selection follows, and shows it here
        else:
            self.show_item(hit)  # not in the list (other filters): shown here only

    # -- the facts ------------------------------------------------------------------------------

    def _fetch_detail(
        self, client: ApiClient, crop_id: str
    ) -> tuple[ResultDetail, ModelCard | None]:
        """The crop's detail and its edge model's card (runs on the runner)."""
        detail = client.result(crop_id)
        try:
            card = self.cards.get(client, detail.provenance.model_sha256)
        except ApiError as err:  # the detail is shown without the model's name
            logger.warning("no model card for crop %s: %s", crop_id, err.message)
            card = None
        return detail, card

    def _detail_arrived(self, answer: tuple[ResultDetail, ModelCard | None]) -> None:
        detail, card = answer
        if self._refreshing is not None and self._refreshing.crop_id == detail.crop_id:
            self._refreshing = None
        if self.item is None or detail.crop_id != self.item.crop_id:
            return
        self.detail, self.card = detail, card  # the item stays the list's (its row's) own
        self._render()

    def _detail_failed(self, err: Exception) -> None:
        self._refreshing = None
        if self.item is not None and self.detail is None:
            message = err.message if isinstance(err, ApiError) else str(err)
            self._render(detail_error=message)
        self.failed.emit(err)

    def _render(self, *, detail_error: str = "") -> None:
        if self.item is None:
            return
        bar = self.info.verticalScrollBar()
        at = bar.value()
        self.hover = Hover()
        text = self.info.palette().color(QPalette.ColorRole.Text).name()
        self.info.document().setDefaultStyleSheet(LINK_CSS.format(color=text))
        self.info.setHtml(
            item_html(
                self.item, self.detail, card=self.card, hover=self.hover, detail_error=detail_error
            )
        )
        bar.setValue(at)  # a refresh keeps the reader's place

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt API
        """Render the facts again in a new palette's colours (light or dark)."""
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange and self.item is not None:
            self._render()

    def _hovered(self, link: QUrl | str) -> None:
        full = self.hover.texts.get(link.toString() if isinstance(link, QUrl) else link)
        if full:
            QToolTip.showText(QCursor.pos(), full, self.info)
        else:
            QToolTip.hideText()

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
