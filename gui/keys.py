"""Keys a view claims before the window's shortcuts see them.

Qt runs shortcuts before key presses: the window-wide Esc shortcut (clear the filter, cancel
an adaptation) would otherwise take Esc from a view that closes on it (the duplicates compare
view, the photo viewer), so in a real window Esc did nothing there.
"""
from __future__ import annotations

from PySide6.QtCore import QEvent, Qt

CLAIMED_KEYS = frozenset({Qt.Key.Key_Escape})


def claim_view_keys(event: QEvent) -> bool:
    """For a view's ``event()``: accept the shortcut override of the keys it handles itself,
    so they arrive as key presses. True when the event was claimed."""
    if event.type() == QEvent.Type.ShortcutOverride and event.key() in CLAIMED_KEYS:
        event.accept()
        return True
    return False
