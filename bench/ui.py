"""UI responsiveness during indexing: the longest gap of a heartbeat timer on the GUI thread.

Run as ``python -m bench.ui PHOTOS_DIR CATALOG_DIR`` (offscreen Qt): indexes PHOTOS_DIR with
the GUI's own worker (an ``"index"`` task of ``gui.workers.TaskRunner``, as the window runs it;
a plain QThread running ``Collection.index`` when the GUI package is unavailable) while a 5 ms QTimer on the
GUI thread records when it fires; progress signals are delivered to the GUI thread as in the
app. Prints one JSON object: ``ui_max_block_ms`` (longest gap between two heartbeats minus
the timer interval), percentiles, and how the worker was run.
"""
from __future__ import annotations

import json
import os
import sys
import time

INTERVAL_MS = 5


def measure(photos: str, catalog: str, method: str | None = None) -> dict:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QThread, QTimer
    from PySide6.QtWidgets import QApplication

    from engine.api import Collection

    app = QApplication.instance() or QApplication([])
    col = Collection.open(catalog, device="cpu")
    col.add_folder(photos)
    # Model loading happens once at start-up in the app (in the background); do it first here.
    m = col.method(method)
    col.extractor_for(m)
    beats: list[float] = []
    progress_count = [0]
    timer = QTimer()
    timer.setInterval(INTERVAL_MS)
    timer.timeout.connect(lambda: beats.append(time.perf_counter()))
    result: dict = {}
    try:
        from gui.workers import TaskRunner

        runner = TaskRunner(threads=1)

        def start() -> None:
            runner.start("index", lambda task: col.index(method=m.name, progress=task.report, cancel=task.cancel_event),
                         lambda r: (result.setdefault("report", r.to_json()), app.quit()),
                         lambda e: (result.setdefault("error", e), app.quit()),
                         on_progress=lambda p: progress_count.__setitem__(0, progress_count[0] + 1))

        wait = runner.wait
        result["worker"] = "gui.workers.TaskRunner"
    except ImportError:
        class _Thread(QThread):
            def run(self) -> None:  # noqa: D102
                result["report"] = col.index(method=m.name, progress=lambda p: None).to_json()

        thread = _Thread()
        thread.finished.connect(app.quit)
        start, wait = thread.start, thread.wait
        result["worker"] = "QThread(Collection.index)"
    timer.start()
    t0 = time.perf_counter()
    start()
    app.exec()
    elapsed = time.perf_counter() - t0
    timer.stop()
    wait()
    gaps = [(b - a) * 1000 for a, b in zip(beats, beats[1:])]
    col.close()
    return {"ui_max_block_ms": max(0.0, max(gaps, default=0.0) - INTERVAL_MS),
            "ui_gap_p99_ms": float(sorted(gaps)[int(0.99 * (len(gaps) - 1))]) if gaps else None,
            "heartbeats": len(beats), "index_seconds": elapsed, "progress_signals": progress_count[0],
            **result}


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1], sys.argv[2])))
