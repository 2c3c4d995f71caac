"""The search results as a Qt item model (one model, no widget per item).

:class:`ResultsModel` holds every result of the last query and exposes the rows that pass
the filters (similarity threshold, "hide near-duplicates of the query", a path filter),
sorted by score or date. Thumbnails come lazily from a :class:`ThumbnailProvider`: a row's
decoration is a grey placeholder until the provider says ``ready(path)``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from PySide6.QtCore import QAbstractListModel, QMimeData, QModelIndex, QPersistentModelIndex, QSize, Qt, QUrl
from PySide6.QtGui import QColor, QPainter, QPixmap

from ..thumbnails import ThumbnailProvider

# A result at least this similar to the query counts as a near-duplicate of it: with R-MAC-like
# methods a re-encoded, resized or slightly cropped copy scores above this. Methods whose
# similarities run lower (cluster-MAC: a resized copy scores ~0.4) get the collection's
# calibrated duplicate threshold instead (engine/services/duplicate_threshold.py).
NEAR_DUPLICATE_SCORE = 0.95

PathRole = Qt.ItemDataRole.UserRole + 1
ScoreRole = Qt.ItemDataRole.UserRole + 2
RankRole = Qt.ItemDataRole.UserRole + 3


@dataclass(frozen=True)
class ResultItem:
    path: str
    score: float
    rank: int  # 1-based rank in the search
    date: float = 0.0  # EXIF date taken, else file modification time (POSIX seconds)
    size: int = 0  # file size in bytes
    unreachable: str = ""  # an archive's photo this machine cannot read: why (its tile says so)


class ResultsModel(QAbstractListModel):
    SORT_SCORE = "score"
    SORT_DATE = "date"

    def __init__(self, thumbnails: ThumbnailProvider, parent=None):
        super().__init__(parent)
        self.thumbnails = thumbnails
        self.thumb_size = 160
        self._all: list[ResultItem] = []
        self._rows: list[ResultItem] = []
        self._row_of: dict[str, int] = {}
        self.query_path: str | None = None
        self.threshold = -float("inf")
        self.hide_near_duplicates = False
        self.near_duplicate_score = NEAR_DUPLICATE_SCORE
        self.text_filter = ""
        self.sort_key = self.SORT_SCORE
        self._placeholder: QPixmap | None = None
        self._unreachable_tile: QPixmap | None = None
        self.calibration = None  # engine.api.ScoreCalibration, or None: raw scores
        thumbnails.ready.connect(self._on_thumbnail_ready)

    # -- content ----------------------------------------------------------------------
    def set_results(self, items: list[ResultItem], query_path: str | None) -> None:
        self.thumbnails.clear_pending()
        self._all = list(items)
        self.query_path = os.path.abspath(query_path) if query_path else None
        self._refilter()

    def clear(self) -> None:
        self.set_results([], None)

    def total(self) -> int:
        return len(self._all)

    def item(self, row: int) -> ResultItem:
        return self._rows[row]

    def items(self) -> list[ResultItem]:
        return list(self._rows)

    def best_score(self) -> float | None:
        """The best score of a photo other than the query (filters ignored), or None."""
        return max((it.score for it in self._all if it.path != self.query_path), default=None)

    def row_of(self, path: str) -> int | None:
        return self._row_of.get(path)

    # -- filters ------------------------------------------------------------------------
    def set_threshold(self, value: float) -> None:
        self.threshold = float(value)
        self._refilter()

    def set_hide_near_duplicates(self, hide: bool) -> None:
        self.hide_near_duplicates = bool(hide)
        self._refilter()

    def set_near_duplicate_score(self, score: float) -> None:
        """Scores at or above ``score`` count as near-duplicates of the query."""
        self.near_duplicate_score = float(score)
        self._refilter()

    def set_text_filter(self, text: str) -> None:
        self.text_filter = text.strip().lower()
        self._refilter()

    def set_sort(self, key: str) -> None:
        self.sort_key = key
        self._refilter()

    def set_calibration(self, calibration) -> None:
        """Show similarities as calibrated percentages (None: the method's raw scores)."""
        self.calibration = calibration
        if self._rows:
            self.dataChanged.emit(self.index(0), self.index(len(self._rows) - 1),
                                  [Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole])

    def score_text(self, score: float) -> str:
        cal = self.calibration
        return f"{cal.percent(score):.0f} %" if cal is not None else f"{score:.3f}"

    def set_thumb_size(self, size: int) -> None:
        self.thumb_size = int(size)
        self._placeholder = self._unreachable_tile = None
        if self._rows:
            self.dataChanged.emit(self.index(0), self.index(len(self._rows) - 1),
                                  [Qt.ItemDataRole.DecorationRole, Qt.ItemDataRole.SizeHintRole])

    def _passes(self, it: ResultItem) -> bool:
        if it.score < self.threshold:
            return False
        if self.hide_near_duplicates and (it.score >= self.near_duplicate_score or it.path == self.query_path):
            return False
        if self.text_filter and self.text_filter not in it.path.lower():
            return False
        return True

    def _refilter(self) -> None:
        self.beginResetModel()
        rows = [it for it in self._all if self._passes(it)]
        if self.sort_key == self.SORT_DATE:
            rows.sort(key=lambda it: (-it.date, it.rank))
        else:
            rows.sort(key=lambda it: it.rank)
        self._rows = rows
        self._row_of = {it.path: i for i, it in enumerate(rows)}
        self.endResetModel()

    # -- Qt model -----------------------------------------------------------------------
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or index.row() >= len(self._rows):
            return None
        it = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:  # two lines under the thumbnail (see grid_delegate)
            return f"#{it.rank} · {self.score_text(it.score)}\n{os.path.basename(it.path)}"
        if role == Qt.ItemDataRole.DecorationRole:
            if it.unreachable:  # never asked of the thumbnail decoder: the path is on another host
                return self._unreachable_pixmap()
            pix = self.thumbnails.request(it.path, self.thumb_size)
            return pix if pix is not None else self._loading_pixmap()
        if role == Qt.ItemDataRole.ToolTipRole:
            sim = f"similarity {self.score_text(it.score)} · " if self.calibration is not None else ""
            tip = f"{it.path}\n{sim}score {it.score:.4f} ({self.score_text_method()}) · rank {it.rank}"
            return f"{tip}\n{it.unreachable}" if it.unreachable else tip
        if role == PathRole:
            return it.path
        if role == ScoreRole:
            return it.score
        if role == RankRole:
            return it.rank
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return Qt.AlignmentFlag.AlignHCenter
        return None

    def score_text_method(self) -> str:
        return f"raw, {self.calibration.method}" if self.calibration is not None else "raw"

    def flags(self, index):
        base = super().flags(index)
        return base | Qt.ItemFlag.ItemIsDragEnabled if index.isValid() else base

    def mimeTypes(self) -> list[str]:
        return ["text/uri-list"]

    def mimeData(self, indexes) -> QMimeData:
        """Dragged results carry file URLs (drop one on the window to use it as the query)."""
        mime = QMimeData()
        mime.setUrls([QUrl.fromLocalFile(self._rows[i.row()].path) for i in indexes if i.isValid()])
        return mime

    def supportedDragActions(self):
        return Qt.DropAction.CopyAction

    def _loading_pixmap(self) -> QPixmap:
        if self._placeholder is None:
            s = self.thumb_size
            pix = QPixmap(QSize(s, s * 3 // 4))
            pix.fill(QColor(128, 128, 128, 60))
            self._placeholder = pix
        return self._placeholder

    def _unreachable_pixmap(self) -> QPixmap:
        """The tile of a photo this machine cannot read: its rank and score stay, the picture
        says where it is instead (the tooltip has the path and why)."""
        if self._unreachable_tile is None:
            s = self.thumb_size
            pix = QPixmap(QSize(s, s * 3 // 4))
            pix.fill(QColor(70, 70, 78))
            p = QPainter(pix)
            p.setPen(QColor(235, 235, 235))
            p.drawText(pix.rect().adjusted(6, 6, -6, -6), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                       "Not reachable from this machine")
            p.end()
            self._unreachable_tile = pix
        return self._unreachable_tile

    def _on_thumbnail_ready(self, path: str) -> None:
        row = self._row_of.get(path)
        if row is not None:
            idx = self.index(row)
            self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DecorationRole])

    def thumbnails_loaded(self, rows: range) -> bool:
        """Whether the thumbnails of ``rows`` are decoded (for tests and the screenshot hook)."""
        for r in rows:
            if r < len(self._rows) and self.thumbnails.request(self._rows[r].path, self.thumb_size) is None:
                return False
        return True
