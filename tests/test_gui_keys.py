"""Esc closes the duplicates compare view and the photo viewer inside a window that has its
own Esc shortcut (Qt gives shortcuts the key first unless the view claims it)."""
from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QMainWindow, QPushButton, QVBoxLayout, QWidget

from gui.duplicates.compare import CompareView
from gui.search.viewer import PhotoViewer


@pytest.mark.parametrize("make_view, focus", [(CompareView, lambda v: v.left), (PhotoViewer, lambda v: v.canvas)],
                         ids=["compare", "viewer"])
def test_esc_reaches_a_view_that_closes_on_it_before_the_window_shortcut(qtbot, make_view, focus):
    window = QMainWindow()
    qtbot.addWidget(window)
    window_esc = []
    QShortcut(QKeySequence(Qt.Key.Key_Escape), window).activated.connect(lambda: window_esc.append(1))
    central = QWidget()
    lay = QVBoxLayout(central)
    elsewhere = QPushButton("elsewhere")
    view = make_view()
    lay.addWidget(elsewhere)
    lay.addWidget(view)
    window.setCentralWidget(central)
    with qtbot.waitActive(window):
        window.show()
        window.activateWindow()
    # The window's shortcut is live: Esc outside the view goes to it.
    elsewhere.setFocus()
    QTest.keyClick(elsewhere, Qt.Key.Key_Escape)
    assert window_esc == [1]
    target = focus(view)
    target.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
    target.setFocus()
    closed = []
    view.closed.connect(lambda: closed.append(1))
    QTest.keyClick(target, Qt.Key.Key_Escape)
    assert closed == [1] and window_esc == [1]
