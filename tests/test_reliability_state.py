"""Interruptions and state (issue 10): kill -9, a second instance, a full disk, old and new
catalogs, out-of-memory accelerators, malformed datasets and bad CLI queries.

Kill trials run the real indexer in a child process and SIGKILL it, either at a random
moment (polling how many images it committed) or at the two critical points of a batch
(shard file renamed but SQL not committed; SQL transaction open with rows written). After
each kill the catalog must open, pass ``main.py status --check``, lose no committed image,
duplicate none, and a resumed run must recompute exactly the images not yet committed.
"""
from __future__ import annotations

import errno
import io
import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch

import engine.store.catalog as catalog_mod
from engine.api import Collection
from engine.store.catalog import SCHEMA_VERSION, CatalogStore
from engine.cli import main as cli_main
from engine.nn.device import run_batched_with_fallback
from engine.errors import CatalogBusyError, CatalogError, LookalikeError
from tests.conftest import make_photo

REPO = Path(__file__).resolve().parents[1]
SMALL = {"image_side": 64}
N_PHOTOS = 16

# The child: index with small settings; LOOKALIKE_TEST_KILL=<point>:<n> makes it SIGKILL
# itself at the n-th time it reaches <point> ("shard": shard file in place, SQL not yet
# committed; "transaction": inside the open SQL transaction of a batch).
CHILD = textwrap.dedent("""
    import os, signal, sys
    import engine.store.catalog as c
    point, _, n = os.environ.get("LOOKALIKE_TEST_KILL", "none:0").partition(":")
    n = int(n)
    hits = [0]

    def hit():
        hits[0] += 1
        if hits[0] == n:
            os.kill(os.getpid(), signal.SIGKILL)

    if point == "shard":
        real_write = c.atomic_write_bytes
        def write(path, writer):
            real_write(path, writer)
            if path.suffix == ".npy":
                hit()
        c.atomic_write_bytes = write
    elif point == "transaction":
        real_encode = c.encode_path
        def encode(path):
            if sys._getframe(1).f_code.co_name == "_store_image":  # inside add_batch's transaction
                hit()
            return real_encode(path)
        c.encode_path = encode
    from engine.api import Collection
    col = Collection.open(sys.argv[1], device="cpu")
    col.index(method="mac", folders=[sys.argv[2]], overrides={"image_side": 64}, batch_size=2)
""")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    for i in range(N_PHOTOS):
        make_photo(i, (160, 120)).save(root / f"{i:03d}.jpg", quality=85)
    return root


def _committed(db: Path) -> int:
    try:
        c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return c.execute("SELECT count(*) FROM descriptors").fetchone()[0]
        finally:
            c.close()
    except sqlite3.Error:
        return -1


def _start_child(cat: Path, photos: Path, kill_point: str | None = None) -> subprocess.Popen:
    env = dict(os.environ, LOOKALIKE_TEST_KILL=kill_point or "none:0", PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-c", CHILD, str(cat), str(photos)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _finish_child(proc: subprocess.Popen, cat: Path, kill_after: int | None = None,
                  extra_sleep: float = 0.0) -> int:
    """Wait for a self-killing child, or SIGKILL it once ``kill_after`` images are committed.

    Returns the exit status: -SIGKILL, or 0 when a randomly timed kill came after the end
    (then the trial checks a finished catalog, which is also a valid moment).
    """
    if kill_after is not None:
        db = cat / "catalog.sqlite"
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if db.exists() and _committed(db) >= kill_after:
                break
            time.sleep(0.005)
        time.sleep(extra_sleep)
        proc.send_signal(signal.SIGKILL)
    try:
        proc.wait(timeout=180)
    finally:
        err = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
    allowed = (-signal.SIGKILL, 0) if kill_after is not None else (-signal.SIGKILL,)
    assert proc.returncode in allowed, f"child failed (rc {proc.returncode}): {err[-2000:]}"
    return proc.returncode


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = cli_main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def _one_error(err: str, needle: str) -> None:
    """stderr holds exactly one error line (progress lines may precede it), no traceback."""
    errors = [line for line in err.splitlines() if line.startswith("lookalike: error:")]
    assert len(errors) == 1 and needle in errors[0] and "Traceback" not in err, err


def _check_resume(cat: Path, photos: Path) -> int:
    """After a kill: catalog healthy, nothing lost or duplicated, no finished work redone."""
    if not (cat / "catalog.sqlite").exists():  # killed before the catalog existed
        before = {}
    else:
        rc, out, err = _cli("status", "--check", "--json", "--catalog", str(cat))
        assert rc == 0, out + err
        assert json.loads(out)["check"] == {"ok": True, "problems": []}
        col = Collection.open(cat, device="cpu")
        ids, paths, desc = col.catalog.load_descriptors("mac")
        assert len(paths) == len(set(paths))
        assert col.catalog.image_count() == len(paths)  # no image row without its descriptor
        rows = col.catalog.query("SELECT id, path, indexed_at FROM images")
        before = {bytes(p): (i, t, desc[list(ids).index(i)].copy()) for i, p, t in rows}
        col.close()
        assert not list(cat.glob("shards/**/*.tmp")) and not list(cat.glob("shards/**/.*.tmp"))
    col = Collection.open(cat, device="cpu")
    report = col.index(method="mac", folders=[str(photos)], overrides=SMALL, batch_size=4)
    assert (report.unchanged, report.indexed, report.failed) == (len(before), N_PHOTOS - len(before), [])
    ids, paths, desc = col.catalog.load_descriptors("mac")
    assert len(paths) == N_PHOTOS == len(set(paths))
    rows = {bytes(p): (i, t) for i, p, t in col.catalog.query("SELECT id, path, indexed_at FROM images")}
    for p, (i, t, d) in before.items():  # finished images: same row, same time, same descriptor
        assert rows[p] == (i, t)
        np.testing.assert_array_equal(desc[list(ids).index(i)], d)
    assert col.catalog.check() == []
    col.close()
    return len(before)


def _trials(tmp_path: Path, photos: Path, seed: int, count: int, parallel: int = 3) -> list[str]:
    """``count`` kill trials, ``parallel`` children at a time (their start-up dominates).

    Trial k kills: k%3 == 0 after a shard file is written and before its commit, 1 inside
    the open SQL transaction of a batch, 2 at a random moment from outside.
    """
    rng = np.random.default_rng(seed)
    plans = []
    for k in range(count):
        kind = k % 3
        if kind == 0:
            n = int(rng.integers(1, N_PHOTOS // 2 + 1))
            plans.append((f"shard:{n}", None, 0.0, f"after shard {n} was written, before its commit"))
        elif kind == 1:
            n = int(rng.integers(1, N_PHOTOS + 1))
            plans.append((f"transaction:{n}", None, 0.0, f"inside the SQL transaction of a batch (image {n})"))
        else:
            after, sleep = int(rng.integers(0, N_PHOTOS)), float(rng.uniform(0, 0.03))
            plans.append((None, after, sleep, f"at random ({after} committed + {sleep * 1000:.0f} ms)"))
    outcomes: list[str] = []
    for start in range(0, count, parallel):
        group = list(enumerate(plans[start:start + parallel], start))
        procs = {k: _start_child(tmp_path / f"cat{k}", photos, point) for k, (point, *_r) in group}
        # Randomly timed kills are watched first, from their start (the others kill themselves).
        for k, (point, after, sleep, what) in sorted(group, key=lambda g: g[1][1] is None):
            rc = _finish_child(procs[k], tmp_path / f"cat{k}", after, sleep)
            lock = tmp_path / f"cat{k}" / "index.lock"
            if rc and lock.exists():  # the dead indexer's lock file stays behind: it must not block
                with pytest.raises(ProcessLookupError):
                    os.kill(int(lock.read_text()), 0)
            kept = _check_resume(tmp_path / f"cat{k}", photos)
            outcomes.append(f"{what}: {kept} kept" + ("" if rc else " (finished before the kill)"))
    return outcomes


def test_kill_9_three_trials_lose_nothing_and_redo_nothing(tmp_path, photos):
    outcomes = _trials(tmp_path, photos, int(os.environ.get("LOOKALIKE_KILL_SEED", "10")), 3)
    assert len(outcomes) == 3


@pytest.mark.slow
def test_kill_9_twenty_trials_lose_nothing_and_redo_nothing(tmp_path, photos):
    outcomes = _trials(tmp_path, photos, int(os.environ.get("LOOKALIKE_KILL_SEED", "2026")), 20)
    print("\n".join(outcomes))
    assert len(outcomes) == 20


def test_second_instance_gets_a_clear_already_indexing_message(tmp_path, photos):
    cat = tmp_path / "cat"
    other = CatalogStore(cat)
    with other.index_lock():
        col = Collection.open(cat, device="cpu")
        with pytest.raises(CatalogBusyError, match="already being indexed"):
            col.index(method="mac", folders=[str(photos)], overrides=SMALL)
        rc, out, err = _cli("index", str(photos), "--catalog", str(cat), "--device", "cpu", "--method", "mac")
        assert rc == 2 and out == ""
        _one_error(err, "already being indexed")
        assert col.catalog.image_count() == 0 and col.catalog.check() == []
    r = col.index(method="mac", overrides=SMALL)  # the lock is free again
    assert r.indexed == N_PHOTOS


# -- full disk ----------------------------------------------------------------------------
def test_disk_full_while_writing_descriptors_is_a_clear_error_and_keeps_the_catalog(tmp_path, photos, monkeypatch):
    real = catalog_mod.atomic_write_bytes
    calls = {"n": 0}

    def full_disk_on_third_shard(path, writer):
        if path.suffix == ".npy":
            calls["n"] += 1
            if calls["n"] >= 3:
                def partial(f):
                    f.write(b"\x93NUMPY partial")
                    raise OSError(errno.ENOSPC, "No space left on device")
                return real(path, partial)
        return real(path, writer)

    monkeypatch.setattr(catalog_mod, "atomic_write_bytes", full_disk_on_third_shard)
    cat = tmp_path / "cat"
    col = Collection.open(cat, device="cpu")
    with pytest.raises(LookalikeError, match="is full; free some space"):
        col.index(method="mac", folders=[str(photos)], overrides=SMALL, batch_size=4)
    assert col.catalog.image_count() == 8 and col.catalog.check() == []
    assert not [p for p in cat.rglob("*") if p.name.endswith(".tmp")]
    rc, out, err = _cli("index", "--catalog", str(cat), "--device", "cpu", "--method", "mac")
    assert rc == 2
    _one_error(err, "is full")
    monkeypatch.undo()
    r = col.index(method="mac", overrides=SMALL, batch_size=4)
    assert (r.unchanged, r.indexed) == (8, N_PHOTOS - 8)


def test_disk_full_while_saving_a_learned_state_keeps_the_previous_one(tmp_path, monkeypatch):
    cat = CatalogStore(tmp_path / "cat")
    cat.ensure_method("m", {})
    cat.save_state("m", "fit", {"proj": np.eye(2, dtype=np.float32)})
    real = catalog_mod.atomic_write_bytes

    def full(path, writer):
        def partial(f):
            f.write(b"PK partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, partial)

    monkeypatch.setattr(catalog_mod, "atomic_write_bytes", full)
    with pytest.raises(LookalikeError, match="is full; free some space"):
        cat.save_state("m", "fit", {"proj": np.zeros((3, 3), np.float32)})
    monkeypatch.undo()
    state, _gen = cat.load_state("m", "fit")
    np.testing.assert_array_equal(state["proj"], np.eye(2, dtype=np.float32))
    assert len(list((tmp_path / "cat" / "state").iterdir())) == 1 and cat.check() == []


def test_catalog_database_full_is_a_clear_error_and_keeps_the_catalog(tmp_path, photos):
    long_names = tmp_path / "long"
    long_names.mkdir()
    for p in sorted(photos.iterdir()):  # long names fill the catalog's pages quickly
        shutil.copy(p, long_names / f"{'holiday-in-the-mountains-' * 8}{p.name}")
    cat = tmp_path / "cat"
    col = Collection.open(cat, device="cpu")
    col.add_folder(long_names)
    pages = col.catalog.query("PRAGMA page_count")[0][0]
    col.catalog.query(f"PRAGMA max_page_count = {pages}")  # SQLite itself reports SQLITE_FULL
    with pytest.raises(LookalikeError, match="is full; free some space"):
        col.index(method="mac", overrides=SMALL, batch_size=2)
    kept = col.catalog.image_count()
    assert kept < N_PHOTOS and col.catalog.check() == []
    shard_files = {p.relative_to(cat).as_posix() for p in cat.glob("shards/*/*.npy")}
    assert shard_files == {r[0] for r in col.catalog.query("SELECT file FROM shards")}  # no orphan
    col.close()
    col = Collection.open(cat, device="cpu")  # a new connection has no page limit: space was freed
    r = col.index(method="mac", overrides=SMALL, batch_size=2)
    assert (r.unchanged, r.indexed) == (kept, N_PHOTOS - kept)


# -- schema versions ----------------------------------------------------------------------
def _set_schema(cat: Path, version: int) -> None:
    db = sqlite3.connect(cat / "catalog.sqlite")
    db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(version),))
    db.commit()
    db.close()


def test_older_schema_is_refused_with_a_clear_message_and_left_untouched(tmp_path):
    CatalogStore(tmp_path / "cat").close()
    _set_schema(tmp_path / "cat", 0)  # schema 1 is the first; 1 itself is migrated (test_catalog_integrity)
    before = (tmp_path / "cat" / "catalog.sqlite").read_bytes()
    with pytest.raises(CatalogError, match="old schema"):
        CatalogStore(tmp_path / "cat")
    assert (tmp_path / "cat" / "catalog.sqlite").read_bytes() == before
    rc, _out, err = _cli("status", "--catalog", str(tmp_path / "cat"))
    assert rc == 2 and err.count("\n") == 1 and "old schema" in err


def test_newer_schema_is_refused_by_the_cli_in_one_line(tmp_path):
    CatalogStore(tmp_path / "cat").close()
    _set_schema(tmp_path / "cat", SCHEMA_VERSION + 1)
    rc, _out, err = _cli("status", "--catalog", str(tmp_path / "cat"))
    assert rc == 2 and err.count("\n") == 1 and "newer Lookalike" in err


# -- out of memory ------------------------------------------------------------------------
class FakeBackbone:
    """Stands for a model on a GPU with room for at most ``capacity`` images per batch."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.batches: list[tuple[str, int]] = []

    def __call__(self, chunk, device):
        self.batches.append((device.type, len(chunk)))
        if device.type != "cpu" and len(chunk) > self.capacity:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [x * 10 for x in chunk]


def test_out_of_memory_halves_the_batch_and_keeps_the_order(caplog):
    fake = FakeBackbone(capacity=2)
    with caplog.at_level(logging.WARNING, logger="engine.nn.device"):
        out = run_batched_with_fallback(list(range(8)), fake, torch.device("cuda"))
    assert out == [x * 10 for x in range(8)]
    assert fake.batches[0] == ("cuda", 8) and ("cpu", 8) not in fake.batches
    assert max(n for d, n in fake.batches if (d, n) != ("cuda", 8) and n > 2) <= 4
    assert "retrying as two batches" in caplog.text


def test_out_of_memory_on_a_single_image_falls_back_to_the_cpu_with_a_warning(caplog):
    fake = FakeBackbone(capacity=0)
    fell_back = []
    with caplog.at_level(logging.WARNING, logger="engine.nn.device"):
        out = run_batched_with_fallback([1, 2, 3], fake, torch.device("cuda"), lambda: fell_back.append(1))
    assert out == [10, 20, 30] and fell_back and ("cpu", 1) in fake.batches
    assert "on the CPU" in caplog.text


class FakeModel(torch.nn.Module):
    """A backbone whose accelerator copy runs out of memory on every batch."""

    def __init__(self, log: list):
        super().__init__()
        self.log = log
        self.w = torch.nn.Parameter(torch.zeros(1))

    def normalize(self, x):
        return x

    def forward_taps(self, x, taps):
        self.log.append((x.device.type, len(x)))
        if x.device.type != "cpu":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.00 GiB")
        return {t: x.mean(dim=(2, 3), keepdim=True) for t in taps}


def test_feature_extractor_with_an_oom_backbone_halves_then_uses_the_cpu(caplog):
    from PIL import Image

    from engine.nn.features import FeatureExtractor

    calls: list = []
    ext = FeatureExtractor(device="cpu", batch_size=4)  # its own instance (not the shared one)
    # A fake accelerator: tensors can move to "meta" without hardware; the fake model fails there.
    ext.device = torch.device("meta")
    ext.backbone = ext._cpu_backbone = FakeModel(calls)
    ext.use_onnx = False  # the CPU fallback runs the fake model itself (it cannot be exported to ONNX)
    if getattr(ext, "_half_backbone", None) is not None:
        ext._half_backbone = ext.backbone
    images = [Image.new("RGB", (64, 48), (10 * i, 0, 0)) for i in range(4)]
    with caplog.at_level(logging.WARNING, logger="engine.nn.device"):
        maps = ext.feature_maps(images, 64, ["t"])
    assert [round(float(m["t"][0, 0, 0]) * 255) for m in maps] == [0, 10, 20, 30]  # order kept
    assert calls[:3] == [("meta", 4), ("meta", 2), ("meta", 1)] and ("cpu", 1) in calls
    assert "retrying as two batches" in caplog.text and "on the CPU" in caplog.text


def test_a_failing_batch_is_retried_image_by_image_in_the_indexer(tmp_path, photos, monkeypatch):
    col = Collection.open(tmp_path / "cat", device="cpu")
    m = col.method("mac", SMALL)
    real = type(m).describe

    def oom_on_batches(self, images, extractor):
        if len(images) > 1:
            raise torch.OutOfMemoryError("out of memory")
        return real(self, images, extractor)

    monkeypatch.setattr(type(m), "describe", oom_on_batches)
    r = col.index(method="mac", folders=[str(photos)], overrides=SMALL, batch_size=4)
    assert (r.indexed, r.failed) == (N_PHOTOS, [])


# -- bad datasets and bad queries ----------------------------------------------------------
MALFORMED_GT = {
    "not json": "{this is not json",
    "not an object": "[1, 2, 3]",
    "missing keys": json.dumps({"protocol": "holidays"}),
    "unknown protocol": json.dumps({"protocol": "mystery", "images_dir": "images", "images": ["a.jpg"],
                                    "queries": [{"image": "a.jpg", "positives": ["a.jpg"]}]}),
    "query not in images": json.dumps({"protocol": "holidays", "images_dir": "images", "images": ["a.jpg", "b.jpg"],
                                       "queries": [{"image": "zzz.jpg", "positives": ["b.jpg"]}]}),
    "bad bbox": json.dumps({"protocol": "oxford", "images_dir": "images", "images": ["a.jpg", "b.jpg"],
                            "queries": [{"image": "a.jpg", "positives": ["b.jpg"], "bbox": [5, 5, 1]}]}),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_GT))
def test_malformed_ground_truth_is_one_clear_message(tmp_path, case):
    if not (REPO / "engine" / "evaluation").is_dir():
        pytest.skip("engine/evaluation is not in this tree")
    from engine.evaluation.dataset import load_ground_truth

    (tmp_path / "images").mkdir()
    for n in ("a.jpg", "b.jpg"):
        make_photo(1, (40, 30)).save(tmp_path / "images" / n)
    (tmp_path / "ground_truth.json").write_text(MALFORMED_GT[case])
    with pytest.raises(LookalikeError) as err:
        load_ground_truth(tmp_path)
    assert "ground_truth.json" in str(err.value) and "\n" not in str(err.value)


@pytest.fixture(scope="module")
def small_catalog(tmp_path_factory, photos) -> Path:
    cat = tmp_path_factory.mktemp("qcat") / "cat"
    col = Collection.open(cat, device="cpu")
    col.index(method="mac", folders=[str(photos)], overrides=SMALL)
    col.close()
    return cat


@pytest.mark.parametrize("case", ["missing", "corrupt", "not an image", "folder", "empty"])
def test_bad_query_in_the_cli_is_one_clear_message(tmp_path, small_catalog, case):
    q = tmp_path / "query.jpg"
    if case == "corrupt":
        q.write_bytes((small_catalog.parent / "x").as_posix().encode() + b"\xff\xd8\xff\xe0 garbage" * 50)
    elif case == "not an image":
        q = tmp_path / "notes.txt"
        q.write_text("hello")
    elif case == "folder":
        q.mkdir()
    elif case == "empty":
        q.write_bytes(b"")
    rc, out, err = _cli("search", str(q), "--catalog", str(small_catalog), "--device", "cpu")
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("lookalike: error:") and "Traceback" not in err
    assert str(q) in err or "not found" in err


def test_an_unplugged_folder_does_not_block_the_others_and_keeps_its_photos(tmp_path, photos):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    for i, p in enumerate(sorted(photos.iterdir())[:6]):
        shutil.copy(p, (a if i < 3 else b) / p.name)
    col = Collection.open(tmp_path / "cat", device="cpu")
    col.index(method="mac", folders=[str(a), str(b)], overrides=SMALL)
    b.rename(tmp_path / "unplugged")
    shutil.copy(sorted(photos.iterdir())[6], a / "new.jpg")
    r = col.index(method="mac", overrides=SMALL)
    assert (r.indexed, r.unchanged, r.removed) == (1, 3, 0)
    assert [(p, "drive connected" in reason) for p, reason in r.failed] == [(str(b), True)]
    assert col.catalog.image_count() == 7
    (tmp_path / "unplugged").rename(b)
    r = col.index(method="mac", overrides=SMALL)
    assert (r.indexed, r.unchanged, r.failed) == (0, 7, [])
    a.rename(tmp_path / "a-gone")
    b.rename(tmp_path / "b-gone")
    with pytest.raises(LookalikeError, match="is the drive connected"):
        col.index(method="mac", overrides=SMALL)
    assert col.catalog.image_count() == 7
