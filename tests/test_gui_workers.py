"""The GUI's one worker mechanism (gui.workers.TaskRunner) and its typed settings (gui.settings)."""
from __future__ import annotations

import logging
import threading

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings, QThread  # noqa: E402

from engine.errors import LookalikeError  # noqa: E402

WAIT_MS = 30_000


def test_results_progress_and_errors_arrive_on_the_gui_thread(qtbot, caplog):
    from gui.workers import TaskRunner

    runner = TaskRunner()
    gui_thread = QThread.currentThread()
    seen: list[tuple[str, object, bool]] = []

    def work(task):
        assert QThread.currentThread() is not gui_thread  # the job itself runs in the pool
        task.report(1)
        task.report(2)
        return "done"

    def note(kind):
        return lambda value: seen.append((kind, value, QThread.currentThread() is gui_thread))

    runner.start("job", work, note("result"), note("error"), on_progress=note("progress"))
    qtbot.waitUntil(lambda: not runner.busy("job"), timeout=WAIT_MS)
    assert seen == [("progress", 1, True), ("progress", 2, True), ("result", "done", True)]

    def engine_error(_task):
        raise LookalikeError("the catalog is busy")

    def bug(_task):
        raise KeyError("oops")

    seen.clear()
    with caplog.at_level(logging.ERROR, logger="gui.workers"):
        runner.start("a", engine_error, note("result"), note("error"))
        runner.start("b", bug, note("result"), note("error"))
        qtbot.waitUntil(lambda: not runner.busy(), timeout=WAIT_MS)
    assert sorted(seen, key=str) == sorted([("error", "the catalog is busy", True),
                                            ("error", "Unexpected error: KeyError: 'oops'", True)], key=str)
    # A bug leaves its traceback in the log; an engine error is a message for the user only.
    logged = [r for r in caplog.records if r.name == "gui.workers"]
    assert len(logged) == 1 and logged[0].exc_info and "'b'" in logged[0].getMessage()


def test_only_the_latest_task_of_a_kind_delivers_unless_asked_otherwise(qtbot):
    from gui.workers import TaskRunner

    runner = TaskRunner(threads=2)
    release = threading.Event()
    got: list[str] = []

    def slow(_task):
        release.wait(WAIT_MS / 1000)
        return "old"

    runner.start("query", slow, got.append, got.append)
    runner.start("query", lambda _task: "new", got.append, got.append)
    qtbot.waitUntil(lambda: got == ["new"], timeout=WAIT_MS)
    assert runner.busy() and not runner.busy("query")  # the old one still runs, but is not "the" query
    release.set()
    qtbot.waitUntil(lambda: not runner.busy(), timeout=WAIT_MS)
    qtbot.wait(50)
    assert got == ["new"]  # the late, older result was dropped

    every: list[int] = []
    for i in range(5):
        runner.start("thumbnail", lambda _task, i=i: i, every.append, every.append, latest_only=False)
    qtbot.waitUntil(lambda: len(every) == 5, timeout=WAIT_MS)
    assert sorted(every) == [0, 1, 2, 3, 4]


def test_a_paused_task_waits_at_its_next_report_and_cancel_releases_it(qtbot):
    from gui.workers import TaskRunner

    runner = TaskRunner()
    reached: list[int] = []

    def steps(task):
        for i in range(1000):
            if task.cancel_event.is_set():
                return i
            reached.append(i)
            task.report(i)
        return 1000

    got: list[int] = []
    task = runner.start("index", steps, got.append, got.append)
    task.set_paused(True)
    assert task.paused
    qtbot.wait(300)
    stuck = len(reached)
    qtbot.wait(300)
    assert len(reached) == stuck < 1000  # held at a report
    assert runner.running("index") is task
    task.cancel()
    qtbot.waitUntil(lambda: bool(got), timeout=WAIT_MS)
    assert got[0] == stuck and runner.running("index") is None


def test_settings_have_their_defaults_and_round_trip(tmp_path):
    from gui.settings import DEFAULT_THUMB_SIZE, THUMB_SIZES, AppSettings

    store = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    s = AppSettings(store)
    assert (s.thumb_size, s.device, s.overlay, s.overlay_opacity) == (DEFAULT_THUMB_SIZE, "auto", "regions", 60)
    assert s.hide_near_duplicates is False and s.watch_folders is True
    assert s.collections == [] and s.last_collection is None and s.window_geometry is None
    s.thumb_size, s.device, s.overlay, s.overlay_opacity = THUMB_SIZES[0], "cpu", "cam", 30
    s.hide_near_duplicates, s.watch_folders = True, False
    s.collections = ["/photos/a"]  # one entry: QSettings hands it back as a plain string
    s.last_collection = "/photos/a"
    s.set_method_speed("rmac", 2.3456)
    s.set_resume_method("/photos/a", "rmac-ms")
    s.sync()
    again = AppSettings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    assert (again.thumb_size, again.device, again.overlay, again.overlay_opacity) == (THUMB_SIZES[0], "cpu", "cam", 30)
    assert again.hide_near_duplicates is True and again.watch_folders is False
    assert again.collections == ["/photos/a"] and again.last_collection == "/photos/a"
    assert again.method_speed("rmac") == 2.35 and again.method_speed("gem") == 0.0
    assert again.resume_method("/photos/a") == "rmac-ms" and again.resume_method("/photos/b") is None
    again.set_resume_method("/photos/a", None)
    again.last_collection = None
    assert again.resume_method("/photos/a") is None and again.last_collection is None
    store.setValue("thumb_size", 999)  # from a version with other sizes
    assert AppSettings(store).thumb_size == DEFAULT_THUMB_SIZE


def test_overlays_offered_follow_what_the_method_explains_with():
    from gui.search.query_pane import overlay_availability

    unknown = overlay_availability(None, stated=False, learned_kind=None)
    assert all(unknown(k) for k in ("none", "regions", "clusters", "cam"))
    regions = overlay_availability({"regions", "cam"}, stated=True, learned_kind=None)
    assert regions("regions") and regions("cam") and not regions("clusters") and regions("none")
    learned = overlay_availability(set(), stated=False, learned_kind="clusters")
    assert learned("clusters") and not learned("regions") and not learned("cam")


def test_collection_paths_from_an_edited_settings_file_must_be_plain_absolute_paths(tmp_path):
    from gui.settings import AppSettings

    ini = tmp_path / "s.ini"
    store = QSettings(str(ini), QSettings.Format.IniFormat)
    store.setValue("collections", ["/photos/a", "relative/cat", "/photos/../etc", "/photos/b/"])
    store.setValue("last_collection", "../../elsewhere")
    store.sync()
    s = AppSettings(QSettings(str(ini), QSettings.Format.IniFormat))
    assert s.collections == ["/photos/a", "/photos/b"]
    assert s.last_collection is None
