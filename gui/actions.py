"""The window's menus, toolbar actions and keyboard shortcuts, built in one place.

What each action does is the window's (``ActionSlots``); which actions exist, their names,
shortcuts and tooltips are here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import QLabel, QMainWindow, QWidget


@dataclass(frozen=True)
class ActionSlots:
    """What the window does for each action."""

    open_query: Callable[[], None]
    paste_query: Callable[[], None]
    add_folder: Callable[[], None]
    open_archive: Callable[[], None]
    adapt: Callable[[], None]
    watch_folders: Callable[[bool], None]  # toggled
    preferences: Callable[[], None]
    bigger_thumbnails: Callable[[], None]
    smaller_thumbnails: Callable[[], None]
    help: Callable[[], None]
    about: Callable[[], None]
    find: Callable[[], None]  # focus the results' path filter
    escape: Callable[[], None]


@dataclass(frozen=True)
class WindowActions:
    """The actions other parts of the window enable, check or read."""

    adapt: QAction
    watch_folders: QAction
    add_folder: QAction  # off for an archive (read-only), as are adapt and watch_folders


def _action(window: QMainWindow, text: str, slot, shortcut=None, tooltip: str = "") -> QAction:
    act = QAction(text, window)
    if isinstance(shortcut, list):
        act.setShortcuts([QKeySequence(k) for k in shortcut])
    elif shortcut is not None:
        act.setShortcut(shortcut)
    if tooltip:
        act.setToolTip(tooltip)
    act.triggered.connect(slot)
    return act


def build_actions(window: QMainWindow, slots: ActionSlots, watching: bool) -> WindowActions:
    """File, View and Help menus and the window-wide shortcuts (Ctrl+F, Esc)."""
    file_menu = window.menuBar().addMenu("&File")
    file_menu.addAction(_action(window, "&Open query…", slots.open_query, QKeySequence.StandardKey.Open))
    file_menu.addAction(_action(window, "&Paste query", slots.paste_query, QKeySequence.StandardKey.Paste))
    add_folder = _action(window, "Add photo &folder…", slots.add_folder)
    file_menu.addAction(add_folder)
    file_menu.addAction(_action(window, "Open a&rchive…", slots.open_archive, "Ctrl+Shift+O",
                                "Search an archive described on other machines by 'lookalike archive index' "
                                "(read-only)"))
    file_menu.addSeparator()
    adapt = _action(window, "&Adapt to my photos…", lambda: slots.adapt(),
                    tooltip="Self-supervised training of the current method's head on this collection "
                            "(ACTNET and DARAC methods); kept only if it helps on held-out photos")
    file_menu.addAction(adapt)
    watch = QAction("&Watch folders for changes", window)
    watch.setCheckable(True)
    watch.setChecked(watching)
    watch.setToolTip("Index new, edited and deleted photos of the collection's folders while Lookalike is open")
    watch.toggled.connect(slots.watch_folders)
    file_menu.addAction(watch)
    file_menu.addAction(_action(window, "&Preferences…", slots.preferences, QKeySequence.StandardKey.Preferences))
    file_menu.addSeparator()
    file_menu.addAction(_action(window, "&Quit", window.close, QKeySequence.StandardKey.Quit))
    view_menu = window.menuBar().addMenu("&View")
    view_menu.addAction(_action(window, "Bigger thumbnails", slots.bigger_thumbnails, ["+", "="]))
    view_menu.addAction(_action(window, "Smaller thumbnails", slots.smaller_thumbnails, ["-"]))
    help_menu = window.menuBar().addMenu("&Help")
    help_menu.addAction(_action(window, "How to use Lookalike", slots.help, QKeySequence.StandardKey.HelpContents))
    help_menu.addAction(_action(window, "About Lookalike", slots.about))
    for keys, slot in ((QKeySequence.StandardKey.Find, slots.find), (QKeySequence(Qt.Key.Key_Escape), slots.escape)):
        QShortcut(keys, window).activated.connect(slot)
    return WindowActions(adapt=adapt, watch_folders=watch, add_folder=add_folder)


def build_toolbar(window: QMainWindow, open_query: Callable[[], None], method_picker: QWidget,
                  device_picker: QWidget) -> None:
    """Open query, then the method and device pickers."""
    tb = window.addToolBar("Main")
    tb.setObjectName("main_toolbar")
    tb.setMovable(False)
    tb.addAction(_action(window, "Open query…", open_query))
    tb.addSeparator()
    tb.addWidget(QLabel(" Method "))
    tb.addWidget(method_picker)
    tb.addWidget(QLabel("  Device "))
    tb.addWidget(device_picker)
