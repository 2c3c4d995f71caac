"""Issue 20: the catalog survives what a real machine does to it.

A 24-photo catalog is indexed once (module fixture, ``mac`` at 64 px: the cheapest method)
and copied for each test; one fault is applied, then the commands a user would run. Each
test ends in a clear message and, after ``index`` or ``repair``, in a catalog whose
``status --check`` is clean, where every photo is searchable once, and where only the
damaged photos were described again (counted; the others keep their row, time and
bit-identical descriptor).
"""
from __future__ import annotations

import io
import json
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

import engine.store.schema as schema_mod
from engine.api import Collection
from engine.cli import main as cli_main
from engine.errors import CatalogDamagedError, CatalogError, LookalikeError, UnsafePathError
from engine.store.catalog import CatalogStore, NewImage
from engine.store.schema import DB_NAME, readable_error
from tests.conftest import make_photo

REPO = Path(__file__).resolve().parents[1]
SMALL = {"image_side": 64}
N = 24


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = cli_main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def _one_error(rc: int, err: str, *needles: str) -> None:
    """rc 2, exactly one ``lookalike: error:`` line holding every needle, no traceback."""
    lines = [line for line in err.splitlines() if line.startswith("lookalike: error:")]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def _index(cat: Path, photos: Path | None = None, **kw):
    col = Collection.open(cat, device="cpu")
    try:
        return col.index(method="mac", folders=[str(photos)] if photos else None, overrides=SMALL,
                         batch_size=4, **kw)
    finally:
        col.close()


def _snapshot(cat: Path) -> dict[bytes, tuple]:
    """path -> (image id, indexed_at, descriptor) of every described photo."""
    c = CatalogStore(cat, create=False)
    try:
        ids, _paths, desc = c.load_descriptors("mac")
        rows = {i: (bytes(p), t) for i, p, t in c.query("SELECT id, path, indexed_at FROM images")}
        return {rows[i][0]: (int(i), rows[i][1], desc[k].copy()) for k, i in enumerate(ids)}
    finally:
        c.close()


def _assert_whole(cat: Path, before: dict[bytes, tuple], redescribed: set[bytes] = frozenset()) -> None:
    """Healthy (CLI ``status --check``), all N photos searchable once, and every photo not in
    ``redescribed`` exactly as it was (same row, same time, bit-identical descriptor)."""
    rc, out, err = _cli("status", "--check", "--json", "--catalog", str(cat))
    assert rc == 0 and json.loads(out)["check"] == {"ok": True, "problems": []}, out + err
    after = _snapshot(cat)
    assert len(after) == N
    c = CatalogStore(cat, create=False)
    try:
        _ids, paths, _desc = c.load_descriptors("mac")
        assert len(paths) == len(set(paths)) == N and c.skipped_at_last_load("mac") == 0
    finally:
        c.close()
    for p, (i, t, d) in before.items():
        if p not in redescribed:
            assert after[p][:2] == (i, t), p
            np.testing.assert_array_equal(after[p][2], d)


def _shard_photos(cat: Path, shard_file: str) -> set[bytes]:
    c = CatalogStore(cat, create=False)
    try:
        return {bytes(p) for (p,) in c.query(
            "SELECT i.path FROM descriptors d JOIN images i ON i.id=d.image_id JOIN shards s ON s.id=d.shard_id "
            "WHERE s.file=?", (shard_file,))}
    finally:
        c.close()


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("integrity")
    photos = root / "photos"
    (photos / "sub").mkdir(parents=True)
    for i in range(N):
        make_photo(300 + i, (160, 120)).save(photos / ("sub" if i % 3 == 0 else "") / f"p{i:02d}.jpg", quality=85)
    report = _index(root / "cat", photos)
    assert report.indexed == N and not report.failed
    return root / "cat", photos


@pytest.fixture
def catalog(indexed, tmp_path) -> tuple[Path, Path, dict]:
    """A fresh copy of the indexed catalog, its photo folder, and its snapshot."""
    src, photos = indexed
    cat = tmp_path / "cat"
    shutil.copytree(src, cat)
    return cat, photos, _snapshot(cat)


def _first_shard(cat: Path) -> str:
    c = CatalogStore(cat, create=False)
    try:
        return c.query("SELECT file FROM shards ORDER BY id LIMIT 1")[0][0]
    finally:
        c.close()


# -- the table: damaged descriptor shards --------------------------------------------------
def _truncate(p: Path):
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _empty(p: Path):
    p.write_bytes(b"")


def _delete(p: Path):
    p.unlink()


def _scribble_header(p: Path):
    data = bytearray(p.read_bytes())
    data[:16] = b"\xff" * 16
    p.write_bytes(bytes(data))


def _scribble_data(p: Path):
    data = bytearray(p.read_bytes())
    data[-40:-8] = bytes(range(32))  # inside the float32 rows: still a loadable array
    p.write_bytes(bytes(data))


def _nan(p: Path):
    arr = np.load(p)
    arr[1, 3] = np.nan
    np.save(p, arr)  # a valid .npy with a NaN: only the checksum (and the finite check) see it


@pytest.mark.parametrize("damage", [_truncate, _empty, _delete, _scribble_header, _scribble_data, _nan],
                         ids=["truncated", "emptied", "deleted", "header-scribbled", "data-scribbled", "nan"])
def test_damaged_shard_is_reported_searched_around_and_repaired_by_index(catalog, damage):
    cat, photos, before = catalog
    shard = _first_shard(cat)
    damaged = _shard_photos(cat, shard)
    assert len(damaged) == 4
    damage(cat / shard)
    rc, out, _err = _cli("status", "--check", "--catalog", str(cat))
    assert rc == 1 and f"damaged shard {shard}" in out and "4 photos of mac cannot be searched" in out
    assert "the next 'lookalike index'" in out
    query = os.fsdecode(sorted(set(before) - damaged)[0])
    rc, out, err = _cli("search", query, "--catalog", str(cat), "--device", "cpu", "--rerank", "none",
                        "--top", "50")
    assert rc == 0 and "Traceback" not in err
    assert len(out.splitlines()) == N - 4  # answered from the healthy shards
    assert "4 photos could not be searched" in err
    report = _index(cat)
    assert (report.indexed, report.unchanged, report.removed) == (4, N - 4, 0)  # exactly the damaged ones
    _assert_whole(cat, before, damaged)


def test_repair_describes_exactly_the_damaged_photos_again(catalog):
    cat, _photos, before = catalog
    shard = _first_shard(cat)
    damaged = _shard_photos(cat, shard)
    _scribble_data(cat / shard)
    rc, out, err = _cli("repair", "--catalog", str(cat), "--device", "cpu")
    assert rc == 0, out + err
    assert "repair: damaged shard" in out and "mac: 4 photos described again" in out and "check:   ok" in out
    assert len(list((cat / "backups").glob("catalog-*-before-repair.sqlite"))) == 1
    _assert_whole(cat, before, damaged)


def test_a_damaged_learned_state_is_a_clear_error_and_repaired(catalog):
    cat, _photos, _before = catalog
    c = CatalogStore(cat, create=False)
    c.save_state("mac", "fit", {"proj": np.eye(4, dtype=np.float32)})
    rel = c.query("SELECT file FROM states WHERE kind='fit'")[0][0]
    c.close()
    _scribble_header(cat / rel)
    c = CatalogStore(cat, create=False)
    with pytest.raises(CatalogError, match="fit state of method 'mac'.*damaged.*lookalike repair"):
        c.load_state("mac", "fit")
    assert any("damaged fit state of mac" in p for p in c.check())
    with c.index_lock():
        said = c.forget_damaged()
    assert said and c.load_state("mac", "fit") is None and c.check() == []
    c.close()


# -- the table: damaged SQLite file --------------------------------------------------------
def test_zero_byte_catalog_is_damage_not_a_new_catalog_and_repair_rebuilds_it(catalog):
    """Item 2 and row 1: no command treats it as new, none deletes the shard files."""
    cat, photos, _before = catalog
    shards = sorted(p.name for p in (cat / "shards" / "mac").iterdir())
    (cat / DB_NAME).write_bytes(b"")
    for argv in (["status", "--check"], ["status"], ["search", str(photos / "p01.jpg"), "--device", "cpu"],
                 ["index", "--device", "cpu"]):
        rc, _out, err = _cli(*argv, "--catalog", str(cat))
        _one_error(rc, err, "empty (0 bytes)", "lookalike repair")
    assert sorted(p.name for p in (cat / "shards" / "mac").iterdir()) == shards  # nothing deleted
    assert (cat / DB_NAME).stat().st_size == 0
    rc, _out, err = _cli("repair", "--catalog", str(cat), "--device", "cpu")
    _one_error(rc, err, "no photo folders left", "FOLDER")
    # Nothing of the old catalog is left to say which method it used: --method says it.
    rc, out, err = _cli("repair", "--catalog", str(cat), "--device", "cpu", "--method", "mac", str(photos))
    assert rc == 0 and f"mac: {N} photos described again" in out, out + err
    kept = list(cat.glob(f"damaged-*/{DB_NAME}"))
    assert kept and any(k.stat().st_size == 0 for k in kept)  # the damaged file is kept, renamed
    assert len(list(cat.glob("damaged-*/shards/mac/*.npy"))) == len(shards)  # old shards kept aside too
    _assert_whole(cat, {})


@pytest.mark.parametrize("fault", ["half-truncated", "header-scribbled", "text-file"])
def test_unreadable_sqlite_is_a_clear_message_and_repair_salvages_or_rebuilds(catalog, fault):
    cat, photos, _before = catalog
    db = cat / DB_NAME
    data = db.read_bytes()
    if fault == "half-truncated":
        db.write_bytes(data[: len(data) // 2])
    elif fault == "header-scribbled":
        db.write_bytes(b"\x00" * 100 + data[100:])
    else:
        db.write_text("these are my notes, not a catalog\n" * 50)
    for argv in (["status", "--check"], ["search", str(photos / "p01.jpg"), "--device", "cpu"],
                 ["index", "--device", "cpu"]):
        rc, out, err = _cli(*argv, "--catalog", str(cat))
        if rc == 1:  # the file opened and its check reports the damage
            assert argv[0] == "status" and "PROBLEMS" in out and "Traceback" not in err
        else:
            _one_error(rc, err, "lookalike repair")
    rc, out, err = _cli("repair", "--catalog", str(cat), "--device", "cpu", "--method", "mac", str(photos))
    assert rc == 0 and "salvaging" in out and "check:   ok" in out, out + err
    assert list(cat.glob(f"damaged-*/{DB_NAME}"))
    _assert_whole(cat, {})


def test_another_apps_sqlite_is_refused_and_left_alone(tmp_path):
    (tmp_path / "cat").mkdir()
    db = sqlite3.connect(tmp_path / "cat" / DB_NAME)
    db.execute("CREATE TABLE contacts (name TEXT)")
    db.commit()
    db.close()
    before = (tmp_path / "cat" / DB_NAME).read_bytes()
    rc, _out, err = _cli("status", "--catalog", str(tmp_path / "cat"))
    _one_error(rc, err, "not a Lookalike catalog")
    assert (tmp_path / "cat" / DB_NAME).read_bytes() == before


def test_scribbled_pages_end_in_clear_messages_and_repair_salvages_the_rest(catalog):
    """Row 3: pages scribbled in the middle and the last pages zeroed."""
    cat, photos, before = catalog
    db = cat / DB_NAME
    data = bytearray(db.read_bytes())
    page = 4096
    pages = len(data) // page
    assert pages >= 6
    rng = np.random.default_rng(7)
    for k in (pages // 2, pages // 2 + 1):
        data[k * page:(k + 1) * page] = rng.integers(0, 256, page, dtype=np.uint8).tobytes()
    data[(pages - 2) * page:] = bytes(len(data) - (pages - 2) * page)
    db.write_bytes(bytes(data))
    for argv in (["status"], ["status", "--check"], ["search", str(photos / "p01.jpg"), "--device", "cpu",
                                                      "--rerank", "none"], ["index", "--device", "cpu"]):
        rc, out, err = _cli(*argv, "--catalog", str(cat))
        assert "Traceback" not in err and rc in (0, 1, 2), err
        if rc == 2:
            _one_error(rc, err, "lookalike repair")
    rc, out, err = _cli("repair", "--catalog", str(cat), "--device", "cpu", str(photos))
    assert rc == 0 and "check:   ok" in out, out + err
    after = _snapshot(cat)
    salvaged = {p for p in after if p in before and np.array_equal(after[p][2], before[p][2])}
    print(f"salvaged {len(salvaged)} of {N} descriptors")  # the rest were described again
    _assert_whole(cat, {})


def test_database_errors_inside_queries_become_the_damaged_message(catalog, monkeypatch):
    cat, _photos, _before = catalog
    c = CatalogStore(cat, create=False)
    err = sqlite3.DatabaseError("database disk image is malformed")
    monkeypatch.setattr(c, "_db", _Failing(err))
    with pytest.raises(CatalogDamagedError, match="damaged.*lookalike repair"):
        c.image_count()
    with pytest.raises(CatalogDamagedError):
        with c.transaction():
            pass


class _Failing:
    in_transaction = False

    def __init__(self, exc):
        self.exc = exc

    def execute(self, *_a):
        raise self.exc

    def cursor(self):
        return self

    def close(self):
        pass


# -- item 1: orphan clean-up never races a writer ------------------------------------------
def test_opening_the_catalog_while_indexing_keeps_the_indexers_files(tmp_path):
    cat = CatalogStore(tmp_path / "cat")
    cat.ensure_method("m", {})
    shard_dir = tmp_path / "cat" / "shards" / "m"
    state_dir = tmp_path / "cat" / "state"
    shard_dir.mkdir(parents=True)
    state_dir.mkdir()
    files = [shard_dir / "1-2.npy", shard_dir / ".1-2.npy.9.9.tmp", state_dir / "m-fit-1.npz", state_dir / ".x.tmp"]
    with cat.index_lock():  # an indexer between its shard's rename and its commit
        for f in files:
            f.write_bytes(b"uncommitted")
        other = CatalogStore(tmp_path / "cat")  # status, search, the GUI opening the collection
        other.close()
        assert all(f.exists() for f in files)
    CatalogStore(tmp_path / "cat").close()  # nobody indexes: leftovers of a killed run go
    assert not any(f.exists() for f in files)
    with pytest.raises(RuntimeError, match="index lock"):
        cat.clean_orphans()


CHILD = textwrap.dedent("""
    import sys
    from engine.api import Collection
    col = Collection.open(sys.argv[1], device="cpu")
    r = col.index(method="mac", folders=[sys.argv[2]], overrides={"image_side": 64}, batch_size=1)
    print(r.indexed)
""")


def test_an_index_run_survives_the_catalog_opened_20_times_a_second(tmp_path, indexed):
    """Item 1 as reported: another process opening the catalog during an index run."""
    _src, photos = indexed
    cat = tmp_path / "cat"
    CatalogStore(cat).close()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(cat), str(photos)], cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    opens = 0
    while proc.poll() is None:
        CatalogStore(cat, create=False).close()
        opens += 1
        time.sleep(0.05)
    out, err = proc.communicate()
    assert proc.returncode == 0 and out.decode().strip() == str(N), err.decode()[-2000:]
    assert opens >= 20
    _assert_whole(cat, {})


# -- item 3: creation is atomic ------------------------------------------------------------
def test_creation_interrupted_after_the_schema_leaves_no_catalog(tmp_path, monkeypatch):
    real = schema_mod.init_schema

    def interrupted(con):
        real(con)  # the schema and version committed to the temporary file...
        raise KeyboardInterrupt  # ...and the process dies before it is linked into place

    monkeypatch.setattr(schema_mod, "init_schema", interrupted)
    with pytest.raises(KeyboardInterrupt):
        CatalogStore(tmp_path / "cat")
    assert not (tmp_path / "cat" / DB_NAME).exists()
    assert not list((tmp_path / "cat").glob(".*creating*"))
    monkeypatch.undo()
    cat = CatalogStore(tmp_path / "cat")
    assert cat.get_meta("schema_version") == str(schema_mod.SCHEMA_VERSION)


CREATE_CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from engine.store.catalog import CatalogStore
    for i in range(100000):
        CatalogStore(Path(sys.argv[1]) / f"c{i}").close()
""")


def test_kill_9_during_catalog_creation_never_bricks_a_catalog(tmp_path):
    rng = np.random.default_rng(3)
    for trial in range(4):
        root = tmp_path / f"t{trial}"
        proc = subprocess.Popen([sys.executable, "-c", CREATE_CHILD, str(root)], cwd=REPO,
                                env=dict(os.environ, PYTHONPATH=str(REPO)))
        time.sleep(1.0 + float(rng.uniform(0, 0.5)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        made = sorted(root.iterdir())
        assert len(made) > 2
        for d in made:  # every catalog is whole, or absent and created now
            c = CatalogStore(d)
            assert c.get_meta("schema_version") == str(schema_mod.SCHEMA_VERSION)
            c.close()


def test_a_catalog_half_created_by_an_older_lookalike_is_finished(tmp_path):
    (tmp_path / "cat").mkdir()
    db = sqlite3.connect(tmp_path / "cat" / DB_NAME)
    db.executescript(schema_mod.SCHEMA)  # tables committed, the version row never written
    db.close()
    cat = CatalogStore(tmp_path / "cat")
    assert cat.get_meta("schema_version") == str(schema_mod.SCHEMA_VERSION)


# -- item 4: unreadable folders keep their photos ------------------------------------------
def test_an_unreadable_sub_folder_keeps_its_photos(catalog, monkeypatch):
    cat, photos, before = catalog
    import engine.indexing.indexer as indexer_mod

    real = os.scandir
    sub = str(photos / "sub")

    def scandir(path):
        if os.fspath(path) == sub:
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(indexer_mod.os, "scandir", scandir)
    report = _index(cat)
    assert report.removed == 0 and report.indexed == 0
    assert (sub, "folder cannot be listed: Permission denied") in report.failed
    monkeypatch.setattr(indexer_mod.os, "scandir", real)
    report = _index(cat)
    assert (report.indexed, report.unchanged, report.removed) == (0, N, 0)  # nothing described again
    _assert_whole(cat, before)


def test_an_unreadable_collection_folder_keeps_its_photos(catalog, monkeypatch):
    cat, photos, before = catalog
    import engine.indexing.indexer as indexer_mod

    real = os.scandir
    monkeypatch.setattr(indexer_mod.os, "scandir",
                        lambda p: (_ for _ in ()).throw(PermissionError(13, "Permission denied"))
                        if os.fspath(p) == str(photos) else real(p))
    report = _index(cat)
    assert report.removed == 0
    monkeypatch.undo()
    assert _index(cat).indexed == 0
    _assert_whole(cat, before)


# -- item 5: nested folders are indexed once -----------------------------------------------
def test_a_sub_folder_added_again_is_not_described_again(catalog):
    cat, photos, before = catalog
    for _ in range(2):
        report = _index(cat, photos / "sub")
        assert (report.indexed, report.unchanged) == (0, N)
    col = Collection.open(cat, device="cpu")
    assert col.folders() == [str(photos.resolve())]
    col.close()
    _assert_whole(cat, before)


def test_a_parent_folder_added_after_its_child_absorbs_it(tmp_path, indexed):
    _src, photos = indexed
    cat = tmp_path / "cat"
    first = _index(cat, photos / "sub")
    assert first.indexed == N // 3
    second = _index(cat, photos)
    assert (second.indexed, second.unchanged) == (N - N // 3, N // 3)
    assert _index(cat).indexed == 0
    c = CatalogStore(cat, create=False)
    assert [p for _i, p in c.folders()] == [str(photos.resolve())]
    c.close()
    _assert_whole(cat, {})


def test_nested_folders_of_an_older_catalog_are_merged(catalog):
    cat, photos, before = catalog
    db = sqlite3.connect(cat / DB_NAME)
    db.execute("INSERT INTO folders(path, added) VALUES (?, 0)", (os.fsencode(str((photos / "sub").resolve())),))
    db.commit()
    db.close()
    for _ in range(2):
        report = _index(cat)
        assert (report.indexed, report.unchanged) == (0, N)
    _assert_whole(cat, before)


# -- item 6: arguments ---------------------------------------------------------------------
@pytest.mark.parametrize("argv,needle", [
    (["index", "--batch-size", "0"], "--batch-size: must be at least 1"),
    (["index", "--batch-size", "-3"], "--batch-size: must be at least 1"),
    (["search", "x.jpg", "--top", "0"], "--top: must be at least 1"),
])
def test_bad_numbers_are_refused_by_the_cli(catalog, argv, needle, capsys):
    cat, _photos, _before = catalog
    with pytest.raises(SystemExit) as exc:
        cli_main([*argv, "--catalog", str(cat)])
    assert exc.value.code == 2 and needle in capsys.readouterr().err


@pytest.mark.parametrize("box", [["nan", "nan", "nan", "nan"], ["0", "0", "inf", "10"], ["50", "10", "20", "40"],
                                 ["-5", "0", "10", "10"]])
def test_bad_boxes_are_a_clear_error(catalog, box):
    cat, photos, _before = catalog
    rc, _out, err = _cli("search", str(photos / "p01.jpg"), "--box", *box, "--catalog", str(cat), "--device", "cpu")
    _one_error(rc, err, "--box", "X2 > X1")


def test_the_indexer_refuses_a_batch_size_below_one(catalog):
    cat, _photos, _before = catalog
    col = Collection.open(cat, device="cpu")
    with pytest.raises(LookalikeError, match="batch size must be a whole number of at least 1"):
        col.index(method="mac", overrides=SMALL, batch_size=0)
    col.close()


# -- item 7: weights and stored settings ---------------------------------------------------
def test_descriptors_of_other_weights_are_never_mixed_or_queried(catalog, tmp_path):
    cat, photos, before = catalog
    other = tmp_path / "other.pth"
    other.write_bytes(b"not the built-in weights")
    col = Collection.open(cat, device="cpu", weights=str(other))
    with pytest.raises(LookalikeError, match="described with the built-in weights, not with a --weights file"):
        col.search(str(photos / "p01.jpg"), method="mac")
    with pytest.raises(LookalikeError, match="cannot be compared"):
        col.index(method="mac", overrides=SMALL)
    col.close()
    rc, _out, err = _cli("search", str(photos / "p01.jpg"), "--weights", str(other), "--catalog", str(cat),
                         "--device", "cpu")
    _one_error(rc, err, "cannot be compared")
    c = CatalogStore(cat, create=False)
    assert c.query("SELECT weights FROM methods WHERE name='mac'") == [("builtin",)]
    c.close()
    _assert_whole(cat, before)


def test_stored_settings_edited_outside_lookalike_are_a_clear_error(catalog):
    cat, photos, _before = catalog
    db = sqlite3.connect(cat / DB_NAME)
    db.execute("UPDATE methods SET config = replace(config, '\"image_side\": 64', '\"image_side\": 48')")
    assert db.total_changes == 1
    db.commit()
    db.close()
    for argv in (["search", str(photos / "p01.jpg"), "--device", "cpu"], ["index", "--device", "cpu"]):
        rc, _out, err = _cli(*argv, "--catalog", str(cat))
        _one_error(rc, err, "changed outside Lookalike", "drop-method mac")
    rc, out, _err = _cli("drop-method", "mac", "--catalog", str(cat))
    assert rc == 0 and f"dropped mac ({N} descriptors)" in out
    assert _index(cat).indexed == N
    _assert_whole(cat, {})


def test_other_settings_for_an_indexed_method_name_the_real_command(catalog):
    cat, _photos, _before = catalog
    col = Collection.open(cat, device="cpu")
    with pytest.raises(LookalikeError, match=r"lookalike drop-method mac --catalog"):
        col.index(method="mac", overrides={"image_side": 96})
    col.close()
    rc, _out, err = _cli("drop-method", "nosuch", "--catalog", str(cat))
    _one_error(rc, err, "no method 'nosuch'")


# -- item 8: paths read from the catalog stay inside it ------------------------------------
def test_a_symlinked_shards_folder_is_never_walked_or_deleted_in(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    precious = outside / "1-1.npy"
    precious.write_bytes(b"someone else's file")
    (tmp_path / "cat").mkdir()
    os.symlink(outside, tmp_path / "cat" / "shards")
    cat = CatalogStore(tmp_path / "cat")
    cat.close()
    rc, out, _err = _cli("status", "--check", "--catalog", str(tmp_path / "cat"))
    assert precious.exists()
    assert rc == 1 and "shards/ leads outside the catalog folder" in out
    cat = CatalogStore(tmp_path / "cat")
    cat.ensure_method("m", {})
    with pytest.raises(UnsafePathError, match="leads outside"):
        cat.add_batch("m", [NewImage(str(tmp_path / "a.jpg"), 1, 1, "h", 4, 3)], np.ones((1, 2), np.float32))
    assert precious.exists() and list(outside.iterdir()) == [precious]


@pytest.mark.parametrize("bad", ["/etc/hostname", "../outside/victim.npz", "state/../../outside/victim.npz"])
def test_state_and_shard_rows_naming_files_outside_are_refused(tmp_path, bad):
    victim = tmp_path / "outside" / "victim.npz"
    victim.parent.mkdir()
    victim.write_bytes(b"keep me")
    cat = CatalogStore(tmp_path / "cat")
    cat.ensure_method("m", {})
    cat.add_batch("m", [NewImage(str(tmp_path / "a.jpg"), 1, 1, "h", 4, 3)], np.ones((1, 2), np.float32))
    with cat.transaction() as cur:
        cur.execute("INSERT INTO states(method, kind, file, generation) VALUES ('m', 'fit', ?, 0)", (bad,))
        cur.execute("UPDATE shards SET file=?", (bad,))
    with pytest.raises(UnsafePathError, match="Refusing the catalog file"):
        cat.load_state("m", "fit")
    cat.save_state("m", "fit", {"x": np.ones(2)})  # replaces the row; must not delete the victim
    assert len(cat.load_descriptors("m")[0]) == 0 and cat.skipped_at_last_load("m") == 1
    assert any("Refusing" in p for p in cat.check())
    with cat.index_lock():
        cat.forget_damaged()
    cat.drop_method("m")
    assert victim.read_bytes() == b"keep me" and Path("/etc/hostname").exists()


# -- compaction and orphaned state (issue 17) ----------------------------------------------
def test_an_index_run_compacts_a_fragmented_method(tmp_path, indexed, monkeypatch):
    import engine.store.catalog as catalog_mod

    _src, photos = indexed
    cat = tmp_path / "cat"
    monkeypatch.setattr(catalog_mod, "COMPACT_ABOVE_SHARDS", 1000)
    col = Collection.open(cat, device="cpu")
    col.index(method="mac", folders=[str(photos)], overrides=SMALL, batch_size=1)
    col.close()
    assert len(list((cat / "shards" / "mac").glob("*.npy"))) == N
    before = _snapshot(cat)
    monkeypatch.setattr(catalog_mod, "COMPACT_ABOVE_SHARDS", 8)
    monkeypatch.setattr(catalog_mod, "CHUNK_ROWS", 10)
    assert _index(cat).unchanged == N  # nothing to describe; the end of the run compacts
    files = list((cat / "shards" / "mac").glob("*.npy"))
    assert len(files) == 3  # 24 rows in chunks of 10
    after = _snapshot(cat)
    assert after.keys() == before.keys()
    for p, (i, t, d) in before.items():
        assert after[p][:2] == (i, t)
        np.testing.assert_array_equal(after[p][2], d)
    _assert_whole(cat, before)


def test_compaction_below_the_threshold_leaves_shards_alone(catalog):
    cat, _photos, _before = catalog
    c = CatalogStore(cat, create=False)
    n = len(list((cat / "shards" / "mac").glob("*.npy")))
    assert not c.compact_if_fragmented("mac")
    assert len(list((cat / "shards" / "mac").glob("*.npy"))) == n == N // 4
    c.close()


# -- schema migration and backups ----------------------------------------------------------
SCHEMA_1_TABLES = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE folders (id INTEGER PRIMARY KEY, path BLOB UNIQUE NOT NULL, added REAL NOT NULL);
CREATE TABLE images (id INTEGER PRIMARY KEY, path BLOB UNIQUE NOT NULL, folder_id INTEGER, size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL, hash TEXT NOT NULL, width INTEGER, height INTEGER, taken REAL, indexed_at REAL NOT NULL);
CREATE TABLE failures (path BLOB PRIMARY KEY, folder_id INTEGER, size INTEGER, mtime_ns INTEGER, reason TEXT NOT NULL,
    at REAL NOT NULL);
CREATE TABLE methods (name TEXT PRIMARY KEY, config TEXT NOT NULL, created REAL NOT NULL,
    generation INTEGER NOT NULL DEFAULT 0);
CREATE TABLE shards (id INTEGER PRIMARY KEY, method TEXT NOT NULL, file TEXT NOT NULL, rows INTEGER NOT NULL,
    dim INTEGER NOT NULL);
CREATE TABLE descriptors (image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE, method TEXT NOT NULL,
    shard_id INTEGER NOT NULL, row INTEGER NOT NULL, PRIMARY KEY (image_id, method));
CREATE TABLE states (method TEXT NOT NULL, kind TEXT NOT NULL, file TEXT NOT NULL, generation INTEGER NOT NULL,
    PRIMARY KEY (method, kind));
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO methods VALUES ('m', '{"a": 1}', 0, 3);
INSERT INTO images VALUES (1, X'2f612e6a7067', NULL, 1, 1, 'h', 4, 3, NULL, 0);
INSERT INTO shards VALUES (1, 'm', 'shards/m/1-1.npy', 1, 2);
INSERT INTO descriptors VALUES (1, 'm', 1, 0);
"""


def test_a_schema_1_catalog_is_migrated_after_a_backup(tmp_path):
    (tmp_path / "cat" / "shards" / "m").mkdir(parents=True)
    np.save(tmp_path / "cat" / "shards" / "m" / "1-1.npy", np.array([[1.0, 2.0]], np.float32))
    db = sqlite3.connect(tmp_path / "cat" / DB_NAME)
    db.executescript(SCHEMA_1_TABLES)
    db.close()
    cat = CatalogStore(tmp_path / "cat")
    assert cat.get_meta("schema_version") == str(schema_mod.SCHEMA_VERSION)
    backups = list((tmp_path / "cat" / "backups").glob("catalog-*-before-schema-2.sqlite"))
    assert len(backups) == 1
    old = sqlite3.connect(backups[0])
    assert old.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("1",)
    old.close()
    assert cat.method_config("m") == {"a": 1} and cat.generation("m") == 3
    assert cat.load_descriptors("m")[2].tolist() == [[1.0, 2.0]] and cat.check() == []
    cat.ensure_method("m", {"a": 1})  # weights of schema-1 descriptors stay unknown, not guessed
    assert cat.query("SELECT weights FROM methods") == [(None,)]


def test_only_the_last_two_backups_are_kept(tmp_path):
    cat = CatalogStore(tmp_path / "cat")
    made = [cat.backup("test") for _ in range(3)]
    assert sorted((tmp_path / "cat" / "backups").glob("*.sqlite")) == sorted(made[1:])
    restored = sqlite3.connect(made[-1])
    assert restored.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "2"
    restored.close()


# -- item 10: messages ---------------------------------------------------------------------
def test_a_read_only_catalog_says_read_only_not_damaged(tmp_path):
    CatalogStore(tmp_path / "cat").close()
    con = sqlite3.connect(f"file:{tmp_path / 'cat' / DB_NAME}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError) as exc:
        con.execute("INSERT INTO meta VALUES ('x', 'y')")
    con.close()
    message = str(readable_error(exc.value, tmp_path / "cat"))
    assert "is read-only" in message and "damaged" not in message


def test_disk_full_at_creation_says_full_not_damaged(tmp_path, monkeypatch):
    def full(_con):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(schema_mod, "init_schema", full)
    with pytest.raises(LookalikeError, match="is full") as exc:
        CatalogStore(tmp_path / "cat")
    assert "damaged" not in str(exc.value) and not (tmp_path / "cat" / DB_NAME).exists()
