"""Screenshots of the Duplicates tab: each tier and the compare view (offscreen Qt).

Run after ``bench/duplicates_eval.py`` (it uses that benchmark's collection of real photos):

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/duplicates_screens.py [--work DIR] [--out docs/screenshots]

Writes ``duplicates_exact.png``, ``duplicates_near.png``, ``duplicates_similar.png``,
``duplicates_compare.png`` and ``duplicates.png`` (the README's: the near-duplicate tier).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="/tmp/lookalike_dup_eval_oxford_dev")
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = ap.parse_args()
    from PySide6.QtWidgets import QApplication

    from engine.api import Collection
    from gui.duplicates.view import DuplicatesView
    from gui.thumbnails import ThumbnailProvider

    app = QApplication.instance() or QApplication([])
    col = Collection.open(Path(args.work) / "catalog", create=False)
    thumbs = ThumbnailProvider()
    v = DuplicatesView(lambda: col, thumbs)
    v.resize(1400, 900)
    v.show()

    def wait(cond, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not cond() and time.monotonic() < end:
            app.processEvents()
            time.sleep(0.02)

    wait(lambda: v.finder is not None and not v.busy(), 1800)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for tier in ("near", "similar"):
        v.show_tier(tier)
        wait(lambda: v.thumbnails_loaded(), 60)
        wait(lambda: False, 1.0)  # let the layouts settle
        v.grab().save(str(out / f"duplicates_{tier}.png"))
        if tier == "near":
            v.grab().save(str(out / "duplicates.png"))
    v.show_tier("near")
    pairs = [(w, c) for w in v.group_widgets for c in w.cards[1:] if c.info.pixels * 4 <= w.cards[0].info.pixels]
    if pairs:
        # The first group with a downscaled copy: its keep and that copy, zoomed in together.
        w, other = pairs[0]
        v.open_compare(w.cards[0].info.path, other.info.path)
        v.compare.shared.zoom, v.compare.shared.cx, v.compare.shared.cy = 3.0, 0.45, 0.4
        v.compare.shared.changed()
        wait(lambda: False, 0.5)
        v.grab().save(str(out / "duplicates_compare.png"))
    col.close()
    # The benchmark's byte copies sit in near groups with their edited copies: the exact tier
    # is shown on a few photos copied into a second folder unchanged.
    work = Path(args.work) / "exact_only"
    if not (work / "catalog").exists():
        import shutil

        for sub in ("Camera", "Backup/2019"):
            (work / "photos" / sub).mkdir(parents=True, exist_ok=True)
        for src in sorted((Path(args.work) / "photos" / "originals").glob("*.jpg"))[:3]:
            for sub in ("Camera", "Backup/2019"):
                shutil.copy2(src, work / "photos" / sub / src.name)
    ex = Collection.open(work / "catalog")
    ex.index(folders=[str(work / "photos")])
    e = DuplicatesView(lambda: ex, thumbs)
    e.resize(1400, 620)
    e.show()
    wait(lambda: e.finder is not None and not e.busy(), 600)
    e.show_tier("exact")
    wait(lambda: e.thumbnails_loaded(), 60)
    wait(lambda: False, 1.0)
    e.grab().save(str(out / "duplicates_exact.png"))
    ex.close()
    print("\n".join(str(p) for p in sorted(out.glob("duplicates*.png"))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
