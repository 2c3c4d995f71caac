"""Method and device of the open collection (the toolbar's two pickers), and what each method can do."""
from __future__ import annotations

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QComboBox, QMessageBox, QWidget

from engine.api import accelerator_name, method_capabilities, network_runtime
from engine.services.formatting import format_duration, plural

from ..settings import AppSettings
from .method_picker import MethodPicker, measured_speed
from .session import CollectionSession


def device_combo(gpu: str | None) -> QComboBox:
    """Auto / CPU / GPU, the GPU entry disabled when there is none; each says what runs the
    network there (ONNX Runtime or PyTorch), the full line in its tooltip."""
    cpu_runtime = network_runtime("cpu")
    engine_name = "ONNX Runtime" if cpu_runtime.startswith("ONNX") else "PyTorch"
    combo = QComboBox()
    combo.addItem(f"Auto ({gpu})" if gpu else f"Auto (CPU, {engine_name}: no GPU found)", "auto")
    combo.addItem(f"CPU ({engine_name})", "cpu")
    combo.addItem(f"GPU: {gpu}" if gpu else "GPU (none detected)", "cuda")
    combo.setItemData(0, network_runtime("auto"), Qt.ItemDataRole.ToolTipRole)
    combo.setItemData(1, cpu_runtime, Qt.ItemDataRole.ToolTipRole)
    if not gpu:
        combo.model().item(2).setEnabled(False)
    return combo


class MethodChoice(QObject):
    """The method and device pickers. Choosing a method the collection has indexed switches to it
    (``method_changed``); another one is indexed first, after a confirmation stating how long
    that takes (``index_requested(name)``)."""

    method_changed = Signal()
    index_requested = Signal(str)

    def __init__(self, session: CollectionSession, settings: AppSettings, window: QWidget, confirm: bool = True):
        super().__init__(window)
        self.session, self.settings, self.window, self.confirm = session, settings, window, confirm
        self._capabilities: dict[str, set[str] | None] = {}
        self.method_combo = MethodPicker()
        self.method_combo.method_chosen.connect(self._on_method_chosen)
        self.device_combo = device_combo(accelerator_name())
        self.device_combo.activated.connect(self.choose_device)
        i = self.device_combo.findData(settings.device)
        if i >= 0 and self.device_combo.model().item(i).isEnabled():
            self.device_combo.setCurrentIndex(i)

    @property
    def entries(self) -> dict[str, dict]:
        """The registry's facts per method (:func:`engine.api.list_methods`)."""
        return self.method_combo.entries

    def device(self) -> str:
        return self.device_combo.currentData() or "auto"

    def choose_device(self, index: int) -> None:
        self.device_combo.setCurrentIndex(index)
        device = self.device_combo.itemData(index)
        if self.session.collection is not None:
            self.session.collection.device = device
        self.settings.device = device

    def speed(self, method: str) -> tuple[float | None, str]:
        """Photos per second to expect from ``method`` here, and where that number comes from."""
        return measured_speed(self.entries.get(method, {}), self.settings.method_speed(method))

    def capabilities(self, name: str | None) -> set[str] | None:
        """:func:`engine.api.method_capabilities`, asked once per method (it builds the method)."""
        if not name:
            return None
        if name not in self._capabilities:
            self._capabilities[name] = method_capabilities(name)
        return self._capabilities[name]

    def states_parts(self, name: str | None) -> bool:
        """Whether the registry says which parts ``name`` explains with (else its first
        explanation tells)."""
        caps = self.capabilities(name) or set()
        return self.entries.get(name or "", {}).get("supports") is not None or bool({"regions", "clusters", "layers"} & caps)

    def _on_method_chosen(self, name: str) -> None:
        col = self.session.collection
        if col is None or not name or name == col.active_method:
            return
        counts, total = col.indexed_counts(), col.image_count()
        if counts.get(name, 0) >= total > 0 or not col.folders():
            col.set_active_method(name)
            self.method_changed.emit()
            return
        n = max(total - counts.get(name, 0), 0)
        if self.confirm and not self._confirm_indexing(name, n):
            self.method_combo.set_current(col.active_method)
            return
        self.index_requested.emit(name)

    def _confirm_indexing(self, name: str, n: int) -> bool:
        speed, source = self.speed(name)
        if speed and n:
            when = f"about {format_duration(n / speed)} ({speed:.1f} photos/s, {source})"
        else:
            when = f"unknown ({source}); the progress bar shows it once indexing runs"
        text = (f"Index {plural(n, 'photo') if n else 'the photos'} of this collection with {name}?\n"
                f"Time: {when}.\nSearches use the current method until it is done.")
        return QMessageBox.question(self.window, "Index with another method", text) == QMessageBox.StandardButton.Yes
