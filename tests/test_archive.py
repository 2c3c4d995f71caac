"""Archives on a local Ray instance: a killed worker and a killed run lose only unfinished
shards, the descriptors equal the desktop indexer's, the merged index and the read-only
collection search them.

One archive is described for the whole module (two Ray start-ups, ~1-2 min on 2 loaded
cores); the tests after the first read it. Both sides describe with one intra-op thread
(the archive's ``--cpus-per-worker 1``, the desktop Indexer's ``torch_threads=1``): ONNX
Runtime may sum in another order with another thread count.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine.api import Collection, is_archive, open_archive
from engine.archive.collection import ReadOnlyArchiveError
from engine.archive.layout import ArchiveError, ArchiveLayout
from engine.archive.merge import build_archive_index
from engine.archive.plan import plan_archive
from engine.archive.runner import index_archive
from engine.cli import main as cli_main
from engine.descriptors.methods import create_method
from engine.errors import LookalikeError
from engine.indexing.indexer import Indexer
from engine.search.ann import AnnConfig
from engine.services.explain import explain_match
from engine.store.catalog import weights_fingerprint
from tests.conftest import make_photo

REPO = Path(__file__).resolve().parents[1]
# The kill test finds the run's Ray processes by session in /proc.
pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
SMALL = {"image_side": 128}
N_PHOTOS = 320
SHARD_SIZE = 40
BROKEN = {"broken.jpg": b"this is not a JPEG", "empty.jpg": b""}
SHARDS = -(-(N_PHOTOS + len(BROKEN)) // SHARD_SIZE)  # 9: the damaged files are in the last one


def _write_photos(root: Path) -> Path:
    for i in range(N_PHOTOS):
        folder = root / f"roll{i // 100}"
        folder.mkdir(parents=True, exist_ok=True)
        make_photo(1000 + i, (128 + (i % 5) * 16, 112 + (i % 3) * 24)).save(folder / f"img{i:03d}.jpg", quality=88)
    (root / "zz_damaged").mkdir()
    for name, data in BROKEN.items():
        (root / "zz_damaged" / name).write_bytes(data)
    (root / "notes.txt").write_text("not a photo")
    return root


def _desktop(photos: Path, catalog: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The desktop indexer's descriptors by path, and its failures, with one torch thread."""
    col = Collection.open(catalog, device="cpu")
    col.add_folder(photos)
    m = col.method("mac", SMALL)
    col.catalog.ensure_method(m.name, m.config.to_dict(), weights_fingerprint(None))
    Indexer(col.catalog, m, col.extractor_for(m), torch_threads=1).run()
    _ids, paths, desc = col.catalog.load_descriptors("mac")
    failures = dict(col.catalog.failures())
    col.close()
    return dict(zip(paths, desc)), failures


def _session_pids(sid: int) -> list[int]:
    """Processes of session ``sid`` (the run and every Ray process it started)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid:  # after ")": state, ppid, pgrp, session
                pids.append(int(entry))
    return pids


def _kill_session(proc: subprocess.Popen) -> None:
    for pid in _session_pids(proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while _session_pids(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _session_pids(proc.pid), "processes of the killed run are still alive"


def _command(photos: Path, archive: Path) -> list[str]:
    return [sys.executable, str(REPO / "main.py"), "archive", "index", str(photos), "--out", str(archive),
            "--method", "mac", "--set", "image_side=128", "--shard-size", str(SHARD_SIZE), "--workers", "2",
            "--cpus-per-worker", "1", "--json"]


def _kill_a_worker_mid_shard(layout: ArchiveLayout, proc: subprocess.Popen, deadline: float) -> tuple[int, int]:
    """SIGKILL the worker holding the claim of an unfinished shard; ``(shard, pid)``. A worker
    that committed its shard between the look and the kill does not count: try again."""
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        for claim in sorted((layout.dir / "shards").glob("*.claim.json")):
            shard = int(claim.name.split(".")[0])
            c = layout.read_claim(shard)
            if c is None or layout.manifest_path(shard).exists():
                continue
            try:
                os.kill(c["pid"], signal.SIGKILL)
            except ProcessLookupError:
                continue
            done = layout.read_manifest(shard)
            if done is None or done.worker["pid"] != c["pid"]:
                return shard, c["pid"]
        time.sleep(0.005)
    raise AssertionError("no worker claimed a shard in time")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Describe an archive: kill one worker mid-shard, kill the whole run once half the
    shards are finished, rerun to the end; and index the same photos on the desktop."""
    tmp = tmp_path_factory.mktemp("archive")
    photos = _write_photos(tmp / "photos")
    archive = tmp / "archive"
    layout = ArchiveLayout(archive)
    first = subprocess.Popen(_command(photos, archive), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        killed = _kill_a_worker_mid_shard(layout, first, deadline)
        while len(layout.finished_shards(SHARDS)) < SHARDS // 2 and time.monotonic() < deadline:
            assert first.poll() is None, first.communicate()
            time.sleep(0.005)
    finally:
        _kill_session(first)
    finished = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (archive / "shards").glob("0*[0-9].json")}
    assert SHARDS // 2 <= len(finished) < SHARDS, "the run was killed after every shard was finished: nothing left to resume"
    second = subprocess.run(_command(photos, archive) + ["--no-build-index"], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    desktop, desktop_failed = _desktop(photos, tmp / "desktop")
    build_archive_index(archive)
    return {"photos": photos, "archive": archive, "layout": layout, "killed": killed, "finished_before": finished,
            "report": json.loads(second.stdout), "desktop": desktop, "desktop_failed": desktop_failed}


def test_killed_worker_and_killed_run_resume_to_every_photo_once_with_the_desktop_descriptors(run):
    layout, report = run["layout"], run["report"]
    assert report["skipped"] == len(run["finished_before"]) and report["described"] == SHARDS - report["skipped"]
    for name, (data, mtime) in run["finished_before"].items():  # finished shards were not described again
        path = layout.dir / "shards" / name
        assert path.read_bytes() == data and path.stat().st_mtime_ns == mtime
    shard, pid = run["killed"]
    assert layout.read_manifest(shard).worker["pid"] != pid  # its work was lost and redone elsewhere
    photos, failed, rows = [], {}, []
    for s in range(SHARDS):
        m = layout.read_manifest(s)
        photos += [p["path"] for p in m.photos]
        failed.update({f["path"]: f["reason"] for f in m.failed})
        if m.photos:
            rows.append(np.load(layout.descriptors_path(s)))
    assert len(photos) == len(set(photos)) == N_PHOTOS
    assert set(photos) == set(run["desktop"])
    archived = dict(zip(photos, np.concatenate(rows)))
    for path, want in run["desktop"].items():
        np.testing.assert_array_equal(archived[path], want, err_msg=path)
    assert failed == run["desktop_failed"] and {os.path.basename(p) for p in failed} == set(BROKEN)
    assert not list((layout.dir / "shards").glob("*.claim.json"))


def test_search_from_the_cli_and_the_read_only_collection(run, capsys):
    archive, photos = run["archive"], run["photos"]
    query = photos / "roll1" / "img123.jpg"
    assert is_archive(archive) and not is_archive(photos)
    assert cli_main(["search", str(query), "--catalog", str(archive), "--device", "cpu", "--top", "3", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found[0]["path"] == str(query) and found[0]["score"] == pytest.approx(1.0, abs=2e-3)
    col = open_archive(archive, device="cpu")
    assert col.image_count() == len(col.search_index()) == N_PHOTOS and col.active_method == "mac"
    results = col.search(query, top=5, exclude_query=True)
    assert len(results) == 5 and str(query) not in [r.path for r in results]
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    top = results[0]
    assert top.size == os.path.getsize(top.path) and top.date == pytest.approx(os.stat(top.path).st_mtime, abs=1e-3)
    why = explain_match(col, query, top.path, search_score=top.score)
    assert why.score == pytest.approx(top.score, abs=5e-3)
    moved = Path(top.path).with_suffix(".moved")
    os.replace(top.path, moved)
    try:
        assert "Not reachable from this machine" in col.unreachable_reason(top.path)
        assert top.path in [r.path for r in col.search(query, top=5, exclude_query=True)]  # kept, by its record
    finally:
        os.replace(moved, top.path)
    assert col.unreachable_reason(top.path) is None
    for action in (lambda: col.index(), lambda: col.add_folder(photos), lambda: col.mark_not_duplicates([]),
                   lambda: col.method("rmac")):
        with pytest.raises(ReadOnlyArchiveError):
            action()
    with pytest.raises(LookalikeError, match="without re-ranking"):
        col.search(query, rerank="sv")


def test_ivfpq_index_built_shard_by_shard_finds_each_photo(run):
    manifest = build_archive_index(run["archive"], AnnConfig(kind="ivfpq"))
    assert manifest.kind == "ivfpq" and manifest.photos == N_PHOTOS
    assert manifest.bytes_per_photo["ram"] < manifest.bytes_per_photo["refine"]
    col = open_archive(run["archive"], device="cpu")
    idx = col.search_index()
    assert idx.index.kind == "ivfpq" and len(idx) == N_PHOTOS
    rows = np.arange(0, N_PHOTOS, 16)
    raw = idx.raw(rows)
    hits = sum(idx.search(raw[i], top=1)[0].path == idx.path(int(r)) for i, r in enumerate(rows))
    assert hits >= len(rows) - 1
    assert sorted(idx.path(r) for r in range(N_PHOTOS)) == sorted(run["desktop"])
    np.testing.assert_array_equal(raw[3], run["desktop"][idx.path(int(rows[3]))])


def test_a_damaged_shard_is_named_when_the_index_is_built(run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run["archive"], copy, ignore=shutil.ignore_patterns("index*"))
    path = ArchiveLayout(copy).descriptors_path(2)
    data = bytearray(path.read_bytes())
    data[-7] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="Shard 2 is damaged.*checksum"):
        build_archive_index(copy)


def test_a_rerun_continues_the_recorded_plan_and_refuses_another(run, tmp_path):
    archive = run["archive"]
    with pytest.raises(ArchiveError, match="planned differently"):
        index_archive(archive, method="rmac")
    with pytest.raises(ArchiveError, match="planned differently"):
        index_archive(archive, [str(tmp_path)])
    report = index_archive(archive)  # nothing left: Ray is not even started
    assert (report.skipped, report.described, report.ray) == (SHARDS, 0, "embedded")
    with pytest.raises(LookalikeError, match="Folder not found"):
        index_archive(tmp_path / "new", [str(tmp_path / "missing")])
    unfinished = tmp_path / "planned"
    plan_archive(ArchiveLayout(unfinished), [str(run["photos"])], create_method("mac", SMALL), None, 100)
    with pytest.raises(ArchiveError, match="4 of 4 shards are not described yet"):
        build_archive_index(unfinished)
    with pytest.raises(ArchiveError, match="no search index yet"):
        open_archive(unfinished).search(run["photos"] / "roll0" / "img000.jpg")
