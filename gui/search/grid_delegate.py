"""One delegate for the thumbnail grids (search results, browse): a fixed cell per item.

The grids use ``setUniformItemSizes(True)`` so that laying out 10,000 items stays constant
time. Qt then takes *every* item's size from the first item's size hint; with the default
delegate that hint follows the first thumbnail's shape, so a portrait first result squeezed
all the others and hid their scores. This delegate's size hint depends only on the thumbnail
size and the number of text lines, and it paints each thumbnail scaled to fit a square
box, centred, with its text lines below (elided in the middle, the full text in the tooltip).
"""
from __future__ import annotations

from PySide6.QtCore import QModelIndex, QRect, QSize, Qt
from PySide6.QtGui import QPainter, QPixmap
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem

PAD = 6  # pixels around the thumbnail box inside a cell


def grid_cell_size(thumb: int, font_height: int, lines: int) -> QSize:
    """The cell of a ``thumb`` px thumbnail with ``lines`` text lines below it."""
    return QSize(thumb + 2 * PAD, thumb + 2 * PAD + lines * (font_height + 2))


class ThumbnailGridDelegate(QStyledItemDelegate):
    """Paints DecorationRole (a QPixmap) fitted into a ``thumb`` px square and the DisplayRole
    text (``\\n`` separates lines) below; ``lines`` is the number of text lines reserved."""

    def __init__(self, thumb: int = 160, lines: int = 2, parent=None):
        super().__init__(parent)
        self.thumb = thumb
        self.lines = lines

    def set_thumb_size(self, thumb: int) -> None:
        self.thumb = int(thumb)

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:
        return grid_cell_size(self.thumb, option.fontMetrics.height(), self.lines)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        rect = option.rect
        if option.state & QStyle.StateFlag.State_Selected:  # the whole cell, not just its text line
            painter.fillRect(rect, option.palette.highlight())
        elif option.state & QStyle.StateFlag.State_MouseOver:
            hover = option.palette.highlight().color()
            hover.setAlpha(40)
            painter.fillRect(rect, hover)
        box = QRect(rect.left() + PAD, rect.top() + PAD, self.thumb, self.thumb)
        pix = index.data(Qt.ItemDataRole.DecorationRole)
        if isinstance(pix, QPixmap) and not pix.isNull():
            size = pix.size().scaled(box.size(), Qt.AspectRatioMode.KeepAspectRatio)
            if pix.width() <= box.width() and pix.height() <= box.height():
                size = pix.size()  # small photos are never enlarged
            target = QRect(0, 0, size.width(), size.height())
            target.moveCenter(box.center())
            painter.save()
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            painter.drawPixmap(target, pix)
            painter.restore()
        text = index.data(Qt.ItemDataRole.DisplayRole)
        if not text:
            return
        fm = option.fontMetrics
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        painter.save()
        painter.setPen(option.palette.highlightedText().color() if selected else option.palette.text().color())
        y = box.bottom() + 2
        width = rect.width() - 4
        for i, line in enumerate(str(text).split("\n")[: self.lines]):
            line_rect = QRect(rect.left() + 2, y + i * (fm.height() + 2), width, fm.height())
            painter.drawText(line_rect, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter,
                             fm.elidedText(line, Qt.TextElideMode.ElideMiddle, width))
        painter.restore()
