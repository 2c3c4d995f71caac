"""Salvage a damaged catalog: keep the damaged file aside, copy what SQLite can still read.

The damaged ``catalog.sqlite`` (with its ``-wal``/``-shm``) and the ``shards/`` and
``state/`` folders are moved into ``damaged-<time>/`` in the catalog folder: nothing is
deleted. A fresh catalog is created, and every table is copied row by row from the damaged
file: a table whose pages cannot be walked is read in rowid ranges, and the ranges that
still fail are skipped (counted). The shard and state files the salvaged rows reference
are moved back; the rest stay in ``damaged-<time>/``. What could not be salvaged is
re-indexed from the folders by ``lookalike repair`` (:mod:`engine.cli.repair`).

Python's ``sqlite3`` has no ``.recover`` (that is the sqlite3 shell's, and no program is
run from Lookalike), hence the row-range copy.
"""
from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import CatalogBusyError, UnsafePathError
from engine.store.catalog import CatalogStore, try_index_lock
from engine.store.confine import confined
from engine.store.schema import DB_NAME

log = logging.getLogger(__name__)

RANGE_ROWS = 256
MAX_PROBE_ROWID = 1 << 22

# (table, what is read from the damaged file, how it is written into the fresh one). The
# reads name their columns, so a schema-1 file (no checksum, weights or config hash
# columns) is read by the second form.
_TABLES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("meta", ("SELECT rowid, key, value FROM meta WHERE rowid BETWEEN ? AND ?",),
     "INSERT OR IGNORE INTO meta VALUES (?, ?)"),
    ("folders", ("SELECT rowid, id, path, added FROM folders WHERE rowid BETWEEN ? AND ?",),
     "INSERT OR IGNORE INTO folders(id, path, added) VALUES (?, ?, ?)"),
    ("images", ("SELECT rowid, id, path, folder_id, size, mtime_ns, hash, width, height, taken, indexed_at FROM images "
                "WHERE rowid BETWEEN ? AND ?",),
     "INSERT OR IGNORE INTO images VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
    ("failures", ("SELECT rowid, path, folder_id, size, mtime_ns, reason, at FROM failures WHERE rowid BETWEEN ? AND ?",),
     "INSERT OR IGNORE INTO failures VALUES (?, ?, ?, ?, ?, ?)"),
    ("methods", ("SELECT rowid, name, config, created, generation, weights, config_hash FROM methods "
                 "WHERE rowid BETWEEN ? AND ?",
                 "SELECT rowid, name, config, created, generation, NULL, NULL FROM methods WHERE rowid BETWEEN ? AND ?"),
     "INSERT OR IGNORE INTO methods VALUES (?, ?, ?, ?, ?, ?)"),
    ("shards", ("SELECT rowid, id, method, file, rows, dim, bytes, checksum FROM shards WHERE rowid BETWEEN ? AND ?",
                "SELECT rowid, id, method, file, rows, dim, NULL, NULL FROM shards WHERE rowid BETWEEN ? AND ?"),
     "INSERT OR IGNORE INTO shards VALUES (?, ?, ?, ?, ?, ?, ?)"),
    ("descriptors", ("SELECT rowid, image_id, method, shard_id, row FROM descriptors WHERE rowid BETWEEN ? AND ?",),
     "INSERT OR IGNORE INTO descriptors VALUES (?, ?, ?, ?)"),
    ("states", ("SELECT rowid, method, kind, file, generation, bytes, checksum FROM states WHERE rowid BETWEEN ? AND ?",
                "SELECT rowid, method, kind, file, generation, NULL, NULL FROM states WHERE rowid BETWEEN ? AND ?"),
     "INSERT OR IGNORE INTO states VALUES (?, ?, ?, ?, ?, ?)"),
    ("duplicate_decisions", ("SELECT rowid, a, b, decision, at FROM duplicate_decisions WHERE rowid BETWEEN ? AND ?",),
     "INSERT OR IGNORE INTO duplicate_decisions VALUES (?, ?, ?, ?)"),
    ("duplicate_checks", ("SELECT rowid, a, b, verifier, verdict, detail FROM duplicate_checks "
                          "WHERE rowid BETWEEN ? AND ?",),
     "INSERT OR IGNORE INTO duplicate_checks VALUES (?, ?, ?, ?, ?)"),
)
# Rows of the damaged file that describe the fresh catalog itself are not copied.
_OWN_META = ("schema_version", "created")


@dataclass
class SalvageReport:
    kept_at: Path
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows copied
    lost_ranges: dict[str, int] = field(default_factory=dict)  # table -> rowid ranges that could not be read
    unreadable_tables: list[str] = field(default_factory=list)

    def words(self) -> list[str]:
        said = [f"the damaged catalog is kept in {self.kept_at}"]
        said += [f"salvaged {n} {table} rows" for table, n in self.rows.items() if n]
        said += [f"{table}: {n} ranges of up to {RANGE_ROWS} rows could not be read"
                 for table, n in self.lost_ranges.items()]
        said += [f"{table}: nothing could be read" for table in self.unreadable_tables]
        return said


def salvage_catalog(directory: str | os.PathLike) -> SalvageReport:
    """Move the damaged catalog of ``directory`` aside and rebuild it from what is readable."""
    directory = Path(directory).expanduser().resolve()
    fd = try_index_lock(directory, wait_s=2.0)
    if fd is None:
        raise CatalogBusyError(f"This collection is being indexed by another Lookalike process (lock "
                               f"{directory / 'index.lock'}); repair it once that one has finished.")
    try:
        return _salvage_locked(directory)
    finally:
        os.close(fd)


def _salvage_locked(directory: Path) -> SalvageReport:
    aside = directory / f"damaged-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 1_000_000:06d}"
    aside.mkdir()
    for name in (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm", "shards", "state"):
        if (directory / name).exists():
            os.replace(directory / name, aside / name)
    report = SalvageReport(aside)
    fresh = CatalogStore(directory)
    try:
        old = _open_damaged(aside / DB_NAME)
        try:
            for table, reads, write in _TABLES:
                _copy_table(old, fresh, table, reads, write, report)
        finally:
            if old is not None:
                old.close()
        _move_back_files(fresh, directory, aside)
    finally:
        fresh.close()
    return report


def _open_damaged(db: Path) -> sqlite3.Connection | None:
    """A read-only connection to a working copy of the damaged file (the file itself is kept
    as it was). A truncated copy is padded with zeros to the size its header gives: SQLite
    refuses every page of a file shorter than that, even the intact first ones."""
    if not db.exists() or db.stat().st_size == 0:
        return None
    work = db.with_name("salvage-copy.sqlite")
    data = db.read_bytes()
    if len(data) >= 100 and data[:16] == b"SQLite format 3\x00":
        page = int.from_bytes(data[16:18], "big")
        page = 65536 if page == 1 else page
        claimed = page * int.from_bytes(data[28:32], "big")
        data += bytes(max(0, claimed - len(data)))
    work.write_bytes(data)
    for suffix in ("-wal", "-shm"):
        if db.with_name(db.name + suffix).exists():
            shutil.copyfile(db.with_name(db.name + suffix), work.with_name(work.name + suffix))
    try:
        con = sqlite3.connect(work, isolation_level=None)
        con.execute("PRAGMA query_only=ON")  # read, never write, the damaged file
        return con
    except sqlite3.Error as exc:
        log.warning("the damaged catalog %s cannot be opened at all: %s", db, exc)
        return None


def _copy_table(old: sqlite3.Connection | None, fresh: CatalogStore, table: str, reads: tuple[str, ...],
                write: str, report: SalvageReport) -> None:
    """Copy ``table`` in rowid ranges; a range that fails is counted and skipped."""
    rows, lost = None, 0
    for read in reads if old is not None else ():
        try:
            old.execute(read, (0, 0)).fetchall()  # does this form fit the file's columns?
        except sqlite3.Error:
            continue
        rows, lost = _read_ranges(old, table, read)
        break
    if rows is None:
        report.unreadable_tables.append(table)
        return
    copied = 0
    with fresh.transaction() as cur:
        for row in rows:
            if table == "meta" and row[1] in _OWN_META:
                continue
            try:
                copied += cur.execute(write, row[1:]).rowcount
            except sqlite3.IntegrityError:  # e.g. a descriptor of an image row that was lost
                pass
    report.rows[table] = copied
    if lost:
        report.lost_ranges[table] = lost


def _read_ranges(old: sqlite3.Connection, table: str, read: str) -> tuple[list[tuple], int]:
    """Every readable row of ``table`` and the number of rowid ranges that failed. When even
    the last rowid cannot be found, ranges are tried up to ``MAX_PROBE_ROWID``, stopping
    after 64 empty ranges past the last row found."""
    try:
        top, probing = old.execute("SELECT max(rowid) FROM " + table).fetchone()[0] or 0, False
    except sqlite3.Error:
        top, probing = MAX_PROBE_ROWID, True
    rows: list[tuple] = []
    lost = empty = 0
    for start in range(0, top + 1, RANGE_ROWS):
        try:
            got = old.execute(read, (start, start + RANGE_ROWS - 1)).fetchall()
        except sqlite3.Error:
            lost += 1
            continue
        rows += got
        empty = 0 if got else empty + 1
        if probing and rows and empty >= 64:
            break
    return rows, lost


def _move_back_files(fresh: CatalogStore, directory: Path, aside: Path) -> None:
    """Put back the shard and state files the salvaged rows reference (others stay aside)."""
    for (rel,) in fresh.query("SELECT file FROM shards UNION SELECT file FROM states"):
        try:
            src, dst = confined(aside, rel, "catalog file"), confined(directory, rel, "catalog file")
        except UnsafePathError as exc:
            log.warning("not moved back: %s", exc)
            continue
        if src.is_file() and not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
