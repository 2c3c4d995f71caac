"""PIL images <-> QImage (deep copies: safe to build in a worker thread and hand to the GUI)."""
from __future__ import annotations

from PIL import Image
from PySide6.QtGui import QImage


def pil_to_qimage(img: Image.Image) -> QImage:
    """A deep-copied QImage of a PIL image (converted to RGB)."""
    img = img.convert("RGB")
    data = img.tobytes("raw", "RGB")
    q = QImage(data, img.width, img.height, 3 * img.width, QImage.Format.Format_RGB888)
    return q.copy()


def qimage_to_pil(img: QImage) -> Image.Image:
    """An RGB PIL copy of a QImage (a pasted or dropped picture used as a query)."""
    img = img.convertToFormat(QImage.Format.Format_RGB888)
    w, h, bpl = img.width(), img.height(), img.bytesPerLine()
    data = bytes(img.constBits())[: bpl * h]
    return Image.frombuffer("RGB", (w, h), data, "raw", "RGB", bpl, 1).copy()
