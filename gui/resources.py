"""Files the GUI ships with, in the repository's top-level ``resources/`` folder."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QIcon

RESOURCES_DIR = Path(__file__).resolve().parent.parent / "resources"


def app_icon() -> QIcon:
    """Lookalike's icon (an SVG: Qt's svg image plugin ships with PySide6-Essentials)."""
    return QIcon(str(RESOURCES_DIR / "lookalike.svg"))
