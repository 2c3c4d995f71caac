"""The catalog's SQLite file: schema, atomic creation, migrations, backups, readable errors.

Creation is atomic at the file level: the schema and its version are written in one
transaction to a hidden temporary file (rollback journal, so everything is in that one file
once it is closed), which is then linked into place as ``catalog.sqlite``. A kill at any
moment leaves either no catalog (and a temporary file the next creation removes) or a
complete one, so a 0-byte ``catalog.sqlite`` is always damage, never "new".

Backups use SQLite's online backup API (a consistent copy even while WAL readers are
open) into ``backups/``, before a schema migration and before ``lookalike repair``; the
last :data:`KEEP_BACKUPS` are kept.
"""
from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

from engine.errors import CatalogDamagedError, CatalogError, LookalikeError
from engine.store.atomic import fsync_dir

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
DB_NAME = "catalog.sqlite"
KEEP_BACKUPS = 2

# Schema 2 (over 1): size and checksum of every shard and state file; the backbone weights'
# fingerprint and a hash of the config of every method (see CatalogStore.ensure_method).
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS folders (
    id INTEGER PRIMARY KEY, path BLOB UNIQUE NOT NULL, added REAL NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY, path BLOB UNIQUE NOT NULL, folder_id INTEGER,
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, hash TEXT NOT NULL,
    width INTEGER, height INTEGER, taken REAL, indexed_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS failures (
    path BLOB PRIMARY KEY, folder_id INTEGER, size INTEGER, mtime_ns INTEGER,
    reason TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS methods (
    name TEXT PRIMARY KEY, config TEXT NOT NULL, created REAL NOT NULL,
    generation INTEGER NOT NULL DEFAULT 0, weights TEXT, config_hash TEXT);
CREATE TABLE IF NOT EXISTS shards (
    id INTEGER PRIMARY KEY, method TEXT NOT NULL, file TEXT NOT NULL,
    rows INTEGER NOT NULL, dim INTEGER NOT NULL, bytes INTEGER, checksum TEXT);
CREATE TABLE IF NOT EXISTS descriptors (
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    method TEXT NOT NULL, shard_id INTEGER NOT NULL, row INTEGER NOT NULL,
    PRIMARY KEY (image_id, method));
CREATE INDEX IF NOT EXISTS descriptors_by_shard ON descriptors(shard_id);
CREATE TABLE IF NOT EXISTS states (
    method TEXT NOT NULL, kind TEXT NOT NULL, file TEXT NOT NULL, generation INTEGER NOT NULL,
    bytes INTEGER, checksum TEXT, PRIMARY KEY (method, kind));
"""

# Duplicate finder state, keyed by content hash pairs (a < b) so it survives moves, renames
# and re-indexing. Added without a schema version bump: the tables are created if missing
# on every open (old catalogs gain them; an older Lookalike ignores them).
DUPLICATE_SCHEMA = """
CREATE TABLE IF NOT EXISTS duplicate_decisions (
    a TEXT NOT NULL, b TEXT NOT NULL, decision TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (a, b));
CREATE TABLE IF NOT EXISTS duplicate_checks (
    a TEXT NOT NULL, b TEXT NOT NULL, verifier TEXT NOT NULL, verdict INTEGER NOT NULL,
    detail TEXT NOT NULL, PRIMARY KEY (a, b, verifier));
"""

_MIGRATE_1_TO_2 = """
BEGIN IMMEDIATE;
ALTER TABLE shards ADD COLUMN bytes INTEGER;
ALTER TABLE shards ADD COLUMN checksum TEXT;
ALTER TABLE states ADD COLUMN bytes INTEGER;
ALTER TABLE states ADD COLUMN checksum TEXT;
ALTER TABLE methods ADD COLUMN weights TEXT;
ALTER TABLE methods ADD COLUMN config_hash TEXT;
"""

_SQLITE_FULL, _SQLITE_READONLY, _SQLITE_CANTOPEN, _SQLITE_CORRUPT, _SQLITE_NOTADB = 13, 8, 14, 11, 26
_SQLITE_IOERR = 10


def readable_error(exc: sqlite3.Error, directory: Path) -> LookalikeError:
    """One sentence a person can act on for an SQLite error on the catalog in ``directory``."""
    code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
    text = str(exc).lower()
    db = directory / DB_NAME
    if code == _SQLITE_FULL or "full" in text:
        return LookalikeError(f"The disk holding the catalog ({directory}) is full; free some space and try "
                              f"again (finished photos are kept).")
    if code == _SQLITE_READONLY or "readonly" in text or "read-only" in text:
        return CatalogError(f"The catalog {db} is read-only: Lookalike must be able to write to it and to its "
                            f"folder (check their permissions, or copy the catalog and use that --catalog).")
    if code == _SQLITE_CANTOPEN:
        return CatalogError(f"The catalog {db} cannot be opened ({exc}): check that its folder exists and that "
                            f"Lookalike may read and write in it.")
    if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB) or "malformed" in text or "not a database" in text:
        return CatalogDamagedError(f"The catalog {db} cannot be read: it is damaged ({exc}); run 'lookalike repair --catalog "
                                   f"{directory}' to salvage what it still holds and index the rest again "
                                   f"(the damaged file is kept).")
    if code == _SQLITE_IOERR:
        return CatalogError(f"Reading or writing the catalog {db} failed ({exc}): is the disk still connected "
                            f"and healthy?")
    return CatalogError(f"The catalog {db} cannot be used ({exc}).")


def init_schema(con: sqlite3.Connection) -> None:
    """Create every table and the schema version in one transaction (``con`` in autocommit)."""
    con.executescript("BEGIN IMMEDIATE;\n" + SCHEMA + DUPLICATE_SCHEMA)  # stays open: no COMMIT
    try:
        con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        con.execute("INSERT OR REPLACE INTO meta VALUES ('created', ?)", (str(time.time()),))
        con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise


def create_catalog_file(directory: Path) -> None:
    """Write a new, complete ``catalog.sqlite`` in ``directory`` (see the module docstring)."""
    db = directory / DB_NAME
    for leftover in directory.glob(f".{DB_NAME}.*.creating*"):  # from a creation that was killed
        _unlink(leftover)
    tmp = directory / f".{DB_NAME}.{os.getpid()}.{threading.get_ident()}.creating"
    try:
        con = sqlite3.connect(tmp, isolation_level=None)
        try:
            init_schema(con)
        finally:
            con.close()
        try:
            os.link(tmp, db)  # never replaces a catalog another process created meanwhile
        except FileExistsError:
            pass
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            if not db.exists():  # a file system without hard links (FAT, exFAT)
                os.replace(tmp, db)
    except sqlite3.Error as exc:
        raise readable_error(exc, directory) from None
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise LookalikeError(f"The disk holding the catalog ({directory}) is full; free some space and try "
                                 f"again.") from None
        raise CatalogError(f"Cannot create the catalog in {directory}: {exc.strerror or exc}.") from None
    finally:
        _unlink(tmp)
        _unlink(tmp.with_name(tmp.name + "-journal"))
    fsync_dir(directory)


def migrate(con: sqlite3.Connection, version: int, directory: Path, config_hash) -> None:
    """Bring a catalog of schema ``version`` to :data:`SCHEMA_VERSION`, one step per version,
    each in one transaction, after a backup. ``config_hash(config json) -> str``."""
    if version != 1:
        # Schema 1 is the first: an older number is no Lookalike catalog we can read.
        raise CatalogError(f"The catalog at {directory} has an unknown old schema {version}; re-index into a "
                           f"new --catalog.")
    backup(con, directory, "before-schema-2")
    con.executescript(_MIGRATE_1_TO_2)  # stays open: the hashes and version join it
    try:
        for name, config in con.execute("SELECT name, config FROM methods").fetchall():
            con.execute("UPDATE methods SET config_hash=? WHERE name=?", (config_hash(config), name))
        con.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))
        con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise
    log.info("catalog %s migrated from schema 1 to %d", directory, SCHEMA_VERSION)


def backup(con: sqlite3.Connection, directory: Path, reason: str) -> Path:
    """A consistent copy of the catalog in ``directory/backups`` (online backup API); keeps
    the last :data:`KEEP_BACKUPS`. Returns the copy's path."""
    folder = directory / "backups"
    folder.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{time.time_ns() % 1_000_000_000:09d}"
    dest = folder / f"catalog-{stamp}-{reason}.sqlite"
    tmp = folder / f".{dest.name}.tmp"
    try:
        target = sqlite3.connect(tmp)
        try:
            con.backup(target)
        finally:
            target.close()
        os.replace(tmp, dest)
    except BaseException:
        _unlink(tmp)
        raise
    for old in sorted(folder.glob("catalog-*.sqlite"))[:-KEEP_BACKUPS]:
        _unlink(old)
    return dest


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
