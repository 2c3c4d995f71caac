"""Where a query comes from besides the results: a drop on the window, the clipboard, a file dialog.

Folders dropped or pasted are added to the collection (and indexed); the first image file
dropped becomes the query, as does a dropped or pasted picture.
"""
from __future__ import annotations

import os
from typing import Callable

from PySide6.QtCore import QEvent, QObject, QUrl
from PySide6.QtGui import QGuiApplication, QImage
from PySide6.QtWidgets import QFileDialog, QWidget

from engine.api import is_image_path

from ..qimages import qimage_to_pil

IMAGE_FILTER = "Images (*.jpg *.jpeg *.png *.bmp *.gif *.webp *.tif *.tiff *.heic);;All files (*)"


class QueryInput(QObject):
    """Installed on the window: takes its drops; ``paste()`` and ``open_dialog()`` for the menu.

    ``run_query(query, label)`` searches a path or a PIL image; ``add_folders(folders)`` adds
    photo folders to the collection and indexes them; ``show_message(text)`` explains a refusal.
    """

    def __init__(self, window: QWidget, run_query: Callable, add_folders: Callable[[list[str]], None],
                 show_message: Callable[[str], None]):
        super().__init__(window)
        self.window = window
        self.run_query, self.add_folders, self.show_message = run_query, add_folders, show_message
        window.setAcceptDrops(True)
        window.installEventFilter(self)

    def eventFilter(self, obj, event) -> bool:
        if obj is not self.window:
            return False
        kind = event.type()
        if kind == QEvent.Type.DragEnter:
            mime = event.mimeData()
            if mime.hasUrls() and any(u.isLocalFile() for u in mime.urls()) or mime.hasImage():
                event.acceptProposedAction()
            else:
                event.ignore()
            return True
        if kind == QEvent.Type.DragMove:
            event.acceptProposedAction()
            return True
        if kind == QEvent.Type.Drop:
            self._drop(event)
            return True
        return False

    def _drop(self, event) -> None:
        mime = event.mimeData()
        if mime.hasUrls() and self.take_urls(mime.urls()):
            event.acceptProposedAction()
            return
        if mime.hasImage():
            img = mime.imageData()
            if isinstance(img, QImage) and not img.isNull():
                self.run_query(qimage_to_pil(img), "dropped image")
                event.acceptProposedAction()
                return
        event.ignore()

    def take_urls(self, urls) -> bool:
        """Folders are added to the collection (and indexed); the first image file becomes the query."""
        files = [u.toLocalFile() for u in urls if u.isLocalFile()]
        folders = [f for f in files if os.path.isdir(f)]
        images = [f for f in files if os.path.isfile(f)]
        if folders:
            self.add_folders(folders)
        if images:
            if not is_image_path(images[0]):
                self.show_message(f"{os.path.basename(images[0])} is not an image file Lookalike can read.")
            else:
                self.run_query(images[0], None)
        return bool(folders or images)

    def paste(self) -> None:
        """The clipboard's files, picture, or path of an image file or folder."""
        cb = QGuiApplication.clipboard()
        mime = cb.mimeData()
        if mime is not None and mime.hasUrls():
            self.take_urls(mime.urls())
            return
        img = cb.image()
        if not img.isNull():
            self.run_query(qimage_to_pil(img), "pasted image")
            return
        text = (cb.text() or "").strip().strip('"')
        if text.startswith("file://"):
            text = QUrl(text).toLocalFile()
        if text and os.path.isdir(text):
            self.add_folders([text])
        elif text and os.path.exists(text):
            self.run_query(text, None)
        else:
            self.show_message("The clipboard holds no image and no path of an existing image file.")

    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Find photos similar to…", "", IMAGE_FILTER)
        if path:
            self.run_query(path, None)
