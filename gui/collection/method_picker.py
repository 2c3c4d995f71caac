"""The method picker: a short list of recommended methods, the research variants behind "More".

Entries come from :func:`engine.api.list_methods`. The fields ``recommended``, ``summary``,
``default``, ``images_per_s`` and ``supports`` are read with ``.get``: where the engine does not
give them, every method counts as recommended, its description is its summary, the speed is
unknown and its capabilities are found out by :func:`engine.api.method_capabilities`.
"""
from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QComboBox

from engine.api import list_methods

MORE = "\0more"
FEWER = "\0fewer"


def method_summary(entry: dict) -> str:
    """Plain words about a method: the engine's summary, else its (technical) description."""
    return entry.get("summary") or entry.get("description", "")


def measured_speed(entry: dict, settings_speed: float = 0.0) -> tuple[float | None, str]:
    """Images per second to estimate indexing time with, and where the number comes from:
    this computer's last run of the method, else the engine's measurement, else nothing
    (a guess from a cost label was 3x off for seddati)."""
    if settings_speed > 0:
        return settings_speed, "measured here when this method last indexed"
    rate = entry.get("images_per_s")
    if rate:
        return float(rate), "measured on a 2-core CPU"
    return None, "no speed measured for it yet"


class MethodPicker(QComboBox):
    """Emits ``method_chosen(name)`` when the user picks a method (not when it is set)."""

    method_chosen = Signal(str)

    TOOLTIP = "How photos are described: recommended methods first; 'More methods' shows the research variants"
    READ_ONLY_TOOLTIP = "An archive is searched with the method it was described with"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.entries = {m["name"]: m for m in list_methods()}
        self.show_advanced = False
        self.current_name: str | None = None
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(14)  # the toolbar must fit a 1024 px window
        self.view().setMinimumWidth(420)  # the open list shows the summaries in full
        self.setToolTip(self.TOOLTIP)
        self.activated.connect(self._on_activated)
        self._populate()

    def set_read_only(self, read_only: bool) -> None:
        """Off for an archive: it has one method, the one its workers described with."""
        self.setEnabled(not read_only)
        self.setToolTip(self.READ_ONLY_TOOLTIP if read_only else self.TOOLTIP)

    def recommended(self) -> list[str]:
        names = sorted(self.entries)
        if not any("recommended" in e for e in self.entries.values()):
            return names
        # None recommended yet (the registry's measurements not written): the default method.
        rec = ([n for n in names if self.entries[n].get("recommended")]
               or [n for n in names if self.entries[n].get("default")] or names)
        # The default method first, the rest by name.
        return sorted(rec, key=lambda n: (not self.entries[n].get("default"), n))

    def advanced(self) -> list[str]:
        rec = set(self.recommended())
        return [n for n in sorted(self.entries) if n not in rec]

    def set_current(self, name: str) -> None:
        self.current_name = name
        if name in self.advanced() and not self.show_advanced:
            self.show_advanced = True
        self._populate()

    def _populate(self) -> None:
        self.blockSignals(True)
        self.clear()
        for n in self.recommended():
            self._add(n)
        adv = self.advanced()
        if adv:
            if self.show_advanced:
                self.insertSeparator(self.count())
                for n in adv:
                    self._add(n)
                self.addItem("Fewer methods", FEWER)
            else:
                self.addItem(f"More methods ({len(adv)} research variants)…", MORE)
        i = self.findData(self.current_name)
        self.setCurrentIndex(max(0, i))
        self.blockSignals(False)

    def _add(self, name: str) -> None:
        e = self.entries[name]
        summary = method_summary(e)
        short = summary.split(":")[0].split(";")[0]
        self.addItem(f"{name} — {short}" if short else name, name)
        self.setItemData(self.count() - 1, summary, Qt.ItemDataRole.ToolTipRole)

    def _on_activated(self, index: int) -> None:
        data = self.itemData(index)
        if data in (MORE, FEWER):
            self.show_advanced = data == MORE
            self._populate()
            QTimer.singleShot(0, self.showPopup)  # keep the list open on the longer / shorter list
            return
        if data and data != self.current_name:
            self.method_chosen.emit(data)
