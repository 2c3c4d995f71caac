"""Preferences, Help and About: small dialogs over settings the window already has.

The Preferences dialog edits the same controls as the window (device, thumbnail size,
folder watching, near-duplicates), so each setting keeps one way to change it and one
place where it is saved.
"""
from __future__ import annotations

from PySide6.QtWidgets import QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFormLayout, QLabel, QVBoxLayout

HELP_TEXT = """<h3>Finding similar photos</h3>
<ol>
<li><b>Add a folder</b> of photos (Add… in the Collection panel, or drop a folder on the window).
It is indexed in the background; the progress bar at the bottom shows how far it is
(Pause / Cancel next to it).</li>
<li><b>Drop a photo</b> on the window, paste one (Ctrl+V) or open one (Ctrl+O).
The most similar photos of the collection appear on the right, best first.</li>
<li>Under each thumbnail: its rank and how similar it is. <b>100 %</b> is what a lightly edited copy scores,
<b>50 %</b> is as alike as unrelated photos get by chance, <b>0 %</b> is as alike as two random
photos of this collection. When even the best result stays below 50 %, a line says there is
no good match.</li>
<li><b>Why matched</b> shows the parts of both photos that speak most for the match and,
where the photos share details, the matched points between them.</li>
</ol>
<h3>Keys</h3>
<table>
<tr><td>Ctrl+O / Ctrl+V</td><td>open / paste a query</td></tr>
<tr><td>Ctrl+Shift+O</td><td>open an archive (read-only; File menu)</td></tr>
<tr><td>Ctrl+F</td><td>filter the results by path (Esc clears it)</td></tr>
<tr><td>+ / −</td><td>bigger / smaller thumbnails</td></tr>
<tr><td>double-click</td><td>view a result large (arrows: previous / next)</td></tr>
<tr><td>S (Browse)</td><td>find photos similar to the selected one</td></tr>
<tr><td>Alt+Left / Alt+Right (Browse)</td><td>back / forward</td></tr>
</table>
<p>Drag a box on a photo in the viewer to search for that part of it.</p>
<p><b>Archives</b> described on other machines (<code>lookalike archive index</code>) open with
File &gt; Open archive…: they are searched and explained here but never changed; a photo this
computer cannot reach keeps its place in the results with a "not reachable" tile.</p>"""


def about_text(version: str) -> str:
    return (f"<h3>Lookalike {version}</h3><p>Finds photos by what they show, offline: photos are described "
            "by a convolutional network on this computer and never leave it.</p>"
            "<p>Methods follow published image-retrieval work (R-MAC, cluster-MAC, MS-RMAC, Seddati et al., "
            "ACTNET, DARAC); see docs/METHODS.md.</p>")


class PreferencesDialog(QDialog):
    """Device, thumbnail size, folder watching and near-duplicates, applied at once.

    Each control mirrors the window's own: ``methods`` (its device picker), ``results`` (the
    thumbnail size and the near-duplicates check box) and the ``watch_action`` menu item.
    """

    def __init__(self, window, methods, results, watch_action, thumb_sizes: tuple[int, ...]):
        super().__init__(window)
        self.setWindowTitle("Preferences")
        form = QFormLayout()
        self.device = QComboBox()
        src = methods.device_combo
        for i in range(src.count()):
            self.device.addItem(src.itemText(i), src.itemData(i))
            self.device.model().item(i).setEnabled(src.model().item(i).isEnabled())
        self.device.setCurrentIndex(src.currentIndex())
        self.device.activated.connect(methods.choose_device)
        form.addRow("Compute on", self.device)
        self.thumbs = QComboBox()
        for s in thumb_sizes:
            self.thumbs.addItem(f"{s} px", s)
        self.thumbs.setCurrentIndex(max(0, self.thumbs.findData(results.model.thumb_size)))
        self.thumbs.activated.connect(lambda _i: results.set_thumb_size(self.thumbs.currentData()))
        form.addRow("Thumbnails", self.thumbs)
        self.watch = QCheckBox("Index new, edited and deleted photos while Lookalike is open")
        self.watch.setChecked(watch_action.isChecked())
        self.watch.toggled.connect(watch_action.setChecked)
        form.addRow("Folders", self.watch)
        self.dups = QCheckBox("Hide the query and near-identical copies of it")
        self.dups.setChecked(results.hide_dups.isChecked())
        self.dups.toggled.connect(results.hide_dups.setChecked)
        form.addRow("Results", self.dups)
        note = QLabel("Changes apply at once and are remembered.")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(note)
        lay.addWidget(buttons)


def about_version() -> str:
    """The installed version of Lookalike, or a note that it runs from a checkout."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lookalike")
    except PackageNotFoundError:
        return "(not installed)"
