"""The collection catalog: SQLite (WAL) plus per-method float32 ``.npy`` descriptor shards.

Layout of a catalog directory::

    catalog.sqlite          images, failures, folders, methods, shards, descriptor rows
    shards/<method>/<n>.npy one file per indexing batch, written atomically (merged into
                            shards of up to CHUNK_ROWS rows once a method has more than
                            COMPACT_ABOVE_SHARDS of them)
    state/<method>-<kind>.npz learned state (PCA, PFA, hedge weights...), written atomically
    backups/                SQLite snapshots before a schema migration and before a repair
    index.lock              held (flock) by the process that is indexing

Crash safety: a shard file is written to a temporary name, fsync'ed and renamed *before*
the SQLite transaction that references it commits. A kill between the two leaves an
unreferenced shard, which the next process to take the index lock deletes
(:meth:`CatalogStore.clean_orphans`; a process that opens the catalog while another one
indexes leaves the indexer's files alone); the catalog itself is always either before or
after a batch. Every shard and state file has its size and checksum recorded with the row
that references it and is verified whenever it is read (:mod:`engine.store.integrity`): a
damaged shard is skipped by searches and described again by the next index run. Every file
name read from the catalog is confined to the catalog folder (:mod:`engine.store.confine`).
Paths are stored as bytes (``os.fsencode``) so names that are not valid UTF-8 survive. No
pickle anywhere: ``np.load(allow_pickle=False)``.
"""
from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from engine.errors import (CatalogBusyError, CatalogDamagedError, CatalogError, LookalikeError, UnsafePathError,
                           WeightsMissingError)
from engine.store.atomic import atomic_write_bytes
from engine.store.confine import confined, is_confined
from engine.store.integrity import DamagedFile, digest, npy_bytes, npz_bytes, read_shard, read_state
from engine.store.schema import (DB_NAME, DUPLICATE_SCHEMA, SCHEMA_VERSION, backup, create_catalog_file,
                                 init_schema, migrate, readable_error)

log = logging.getLogger(__name__)

__all__ = ["CatalogStore", "DB_NAME", "SCHEMA_VERSION", "ImageRecord", "NewImage", "BUILTIN_WEIGHTS",
           "atomic_write_bytes", "content_hash", "weights_fingerprint"]

# A method with more shards than this is compacted at the end of an index run (one shard
# per batch of 8 would mean ~6,250 files opened per load at 50k photos); shards are merged
# into files of CHUNK_ROWS rows, so a damaged file costs at most that many re-described photos.
COMPACT_ABOVE_SHARDS = 64
CHUNK_ROWS = 4096
# The learned state the indexer computes before describing (PCA, whitening...): descriptors
# depend on it, so a damaged one means its method's photos are described again.
PREPARE_KIND = "prepare"
BUILTIN_WEIGHTS = "builtin"


def encode_path(path: str | os.PathLike) -> bytes:
    return os.fsencode(os.path.abspath(os.fspath(path)))


def decode_path(blob: bytes) -> str:
    return os.fsdecode(bytes(blob))


def content_hash(path: str | os.PathLike, chunk: int = 65536) -> str:
    """Fast content hash: BLAKE2b of the size and three 64 KiB samples (start, middle, end).

    Reading whole 10 MB photos would make re-scans I/O bound; the samples catch every edit
    that re-encodes a JPEG or PNG (which changes the whole byte stream) and truncations.
    """
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        h.update(size.to_bytes(8, "little"))
        offsets = [0] if size <= 3 * chunk else [0, size // 2 - chunk // 2, size - chunk]
        for off in offsets:
            f.seek(off)
            h.update(f.read(chunk if size > 3 * chunk else size))
    return h.hexdigest()


_fingerprints: dict[tuple[str, int, int], str] = {}


def weights_fingerprint(weights: str | os.PathLike | None) -> str:
    """What the catalog records for the backbone weights a method runs with: the built-in
    ones, or the checksum of a ``--weights`` file (cached per path, size and mtime)."""
    if weights is None:
        return BUILTIN_WEIGHTS
    path = os.path.abspath(os.fspath(weights))
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise WeightsMissingError(f"Weights file not found: {weights}") from None
    except OSError as exc:
        raise LookalikeError(f"Weights file {weights} cannot be read: {exc.strerror or exc}.") from None
    key = (path, st.st_size, st.st_mtime_ns)
    if key not in _fingerprints:
        h = hashlib.blake2b(digest_size=16)
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _fingerprints[key] = "blake2b-128:" + h.hexdigest()
    return _fingerprints[key]


def _describe_weights(fingerprint: str | None) -> str:
    return "the built-in weights" if fingerprint == BUILTIN_WEIGHTS else f"a --weights file ({fingerprint})"


def config_hash(config_json: str) -> str:
    return digest(config_json.encode("utf-8"))


def _inside(child: bytes, parent: bytes) -> bool:
    """Whether the (absolute, fsencoded) folder ``child`` is ``parent`` or under it."""
    sep = os.fsencode(os.sep)
    return child == parent or child.startswith(parent if parent.endswith(sep) else parent + sep)


@dataclass(frozen=True)
class DamagedShard:
    id: int
    method: str
    file: str
    photos: int
    reason: str


@dataclass(frozen=True)
class DamagedState:
    method: str
    kind: str
    file: str
    reason: str


@dataclass(frozen=True)
class ImageRecord:
    id: int
    path: str
    size: int
    mtime_ns: int
    hash: str
    width: int | None
    height: int | None
    taken: float | None


@dataclass(frozen=True)
class NewImage:
    """One decoded image ready to be stored with its descriptor."""

    path: str
    size: int
    mtime_ns: int
    hash: str
    width: int
    height: int
    taken: float | None = None
    folder_id: int | None = None


class CatalogStore:
    """One collection's catalog. Thread-safe for one writer and many readers in a process."""

    def __init__(self, directory: str | os.PathLike, create: bool = True):
        self.dir = Path(directory).expanduser().resolve()
        db = self.dir / DB_NAME
        self._lock = threading.RLock()
        self._lock_fd: int | None = None  # index.lock, while this object holds it
        self._skipped: dict[str, int] = {}  # per method: descriptors the last load could not read
        if not db.exists():
            if not create:
                raise CatalogError(f"No catalog at {self.dir} (run 'lookalike index FOLDER --catalog {self.dir}' first).")
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CatalogError(f"Cannot create the catalog folder {self.dir}: {exc.strerror}.") from None
            create_catalog_file(self.dir)
        elif db.is_file() and db.stat().st_size == 0:
            # A catalog is created whole (engine.store.schema), so an empty file is damage:
            # taking it as a new catalog would forget every photo and delete every shard.
            raise CatalogDamagedError(
                f"The catalog {db} is empty (0 bytes): it was damaged (a disk or copy problem). Run 'lookalike "
                f"repair --catalog {self.dir} FOLDER...' to rebuild it from your photo folders (the empty file "
                f"is kept aside).")
        try:
            self._db = sqlite3.connect(db, check_same_thread=False, timeout=30, isolation_level=None)
        except sqlite3.Error as exc:
            raise readable_error(exc, self.dir) from None
        try:
            self._check_schema()  # first: another program's SQLite file is left exactly as it was
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as exc:
            self._db.close()
            raise readable_error(exc, self.dir) from None
        except BaseException:
            self._db.close()
            raise
        self._clean_orphans_if_idle()

    # -- schema -------------------------------------------------------------------------
    def _check_schema(self) -> None:
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" not in tables:
            if tables:
                raise CatalogError(f"{self.dir / DB_NAME} is an SQLite file but not a Lookalike catalog.")
            init_schema(self._db)  # an SQLite file without tables: nothing to lose
            return
        row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None and self._unfinished_creation(tables):
            # An older Lookalike created the tables and the version in two steps; a kill
            # between them left this (empty) catalog, which is finished now.
            init_schema(self._db)
            return
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise CatalogError(
                f"The catalog at {self.dir} was written by a newer Lookalike (schema {version}, this "
                f"version reads {SCHEMA_VERSION}); update Lookalike or use another --catalog.")
        if version < SCHEMA_VERSION:
            migrate(self._db, version, self.dir, config_hash)
        self._db.executescript(DUPLICATE_SCHEMA)

    def _unfinished_creation(self, tables: set[str]) -> bool:
        if not {"folders", "images", "failures", "methods", "shards", "descriptors", "states"} <= tables:
            return False
        return self._db.execute(
            "SELECT (SELECT count(*) FROM folders) + (SELECT count(*) FROM images) + (SELECT count(*) FROM failures) "
            "+ (SELECT count(*) FROM methods) + (SELECT count(*) FROM shards) + (SELECT count(*) FROM descriptors) "
            "+ (SELECT count(*) FROM states)").fetchone()[0] == 0

    def backup(self, reason: str) -> Path:
        """Snapshot the catalog into ``backups/`` (the last two are kept); returns the copy."""
        with self._lock:
            try:
                return backup(self._db, self.dir, reason)
            except sqlite3.Error as exc:
                raise readable_error(exc, self.dir) from None

    # -- SQL ----------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            cur = self._db.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE")
                try:
                    yield cur
                    cur.execute("COMMIT")
                except BaseException:
                    # SQLite has already rolled back after some errors (disk full, I/O): a
                    # second ROLLBACK would raise and hide the real error.
                    if self._db.in_transaction:
                        try:
                            cur.execute("ROLLBACK")
                        except sqlite3.Error:
                            pass
                    raise
            except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError):
                raise  # bugs, not the catalog's state
            except sqlite3.Error as exc:
                raise readable_error(exc, self.dir) from None

    def query(self, sql: str, params: Sequence = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError):
                raise
            except sqlite3.Error as exc:
                raise readable_error(exc, self.dir) from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _file(self, rel: str) -> Path:
        """A file named by a catalog row, confined to the catalog folder."""
        return confined(self.dir, rel, "catalog file")

    def _unlink(self, rel: str) -> None:
        try:
            self._file(rel).unlink()
        except UnsafePathError as exc:
            log.warning("not deleting: %s", exc)
        except OSError:
            pass

    # -- meta ---------------------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.query("SELECT value FROM meta WHERE key=?", (key,))
        return row[0][0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as cur:
            cur.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # -- folders ------------------------------------------------------------------------
    def add_folder(self, path: str | os.PathLike) -> int:
        """Add a photo folder; returns its id. A folder inside one of the collection's
        folders is already part of it (that folder's id is returned); a folder that holds
        some of them absorbs them, so every photo belongs to one folder and is indexed once."""
        p = Path(path).expanduser()
        if not p.is_dir():
            raise LookalikeError(f"Folder not found: {p}")
        blob = encode_path(p.resolve())
        with self.transaction() as cur:
            for fid, other in cur.execute("SELECT id, path FROM folders").fetchall():
                if _inside(blob, bytes(other)):
                    return fid
            cur.execute("INSERT INTO folders(path, added) VALUES (?, ?)", (blob, time.time()))
            fid = cur.lastrowid
            self._merge_nested(cur)
            return fid

    def merge_nested_folders(self) -> int:
        """Merge folders added inside other folders of the collection (by an older Lookalike)
        into the outer one; returns how many were merged."""
        with self.transaction() as cur:
            return self._merge_nested(cur)

    @staticmethod
    def _merge_nested(cur: sqlite3.Cursor) -> int:
        folders = sorted(((bytes(p), i) for i, p in cur.execute("SELECT id, path FROM folders").fetchall()),
                         key=lambda f: len(f[0]))
        outer: list[tuple[bytes, int]] = []
        merged = 0
        for path, fid in folders:
            parent = next((o for o in outer if _inside(path, o[0])), None)
            if parent is None:
                outer.append((path, fid))
                continue
            cur.execute("UPDATE images SET folder_id=? WHERE folder_id=?", (parent[1], fid))
            cur.execute("UPDATE failures SET folder_id=? WHERE folder_id=?", (parent[1], fid))
            cur.execute("DELETE FROM folders WHERE id=?", (fid,))
            merged += 1
        return merged

    def remove_folder(self, path: str | os.PathLike) -> int:
        """Forget a folder and every image and failure under it; returns images removed."""
        blob = encode_path(Path(path).expanduser().resolve())
        with self.transaction() as cur:
            row = cur.execute("SELECT id FROM folders WHERE path=?", (blob,)).fetchone()
            if not row:
                raise LookalikeError(f"{path} is not a folder of this collection.")
            n = cur.execute("DELETE FROM images WHERE folder_id=?", (row[0],)).rowcount
            cur.execute("DELETE FROM failures WHERE folder_id=?", (row[0],))
            cur.execute("DELETE FROM folders WHERE id=?", (row[0],))
            if n:
                cur.execute("UPDATE methods SET generation = generation + 1")
        return n

    def folders(self) -> list[tuple[int, str]]:
        return [(i, decode_path(p)) for i, p in self.query("SELECT id, path FROM folders ORDER BY path")]

    # -- images -------------------------------------------------------------------------
    def images(self, folder_id: int | None = None) -> list[ImageRecord]:
        sql = "SELECT id, path, size, mtime_ns, hash, width, height, taken FROM images"
        rows = self.query(sql + (" WHERE folder_id=?" if folder_id is not None else "") + " ORDER BY id",
                          (folder_id,) if folder_id is not None else ())
        return [ImageRecord(r[0], decode_path(r[1]), *r[2:]) for r in rows]

    def image_by_path(self, path: str | os.PathLike) -> ImageRecord | None:
        rows = self.query("SELECT id, path, size, mtime_ns, hash, width, height, taken FROM images WHERE path=?",
                          (encode_path(path),))
        return ImageRecord(rows[0][0], decode_path(rows[0][1]), *rows[0][2:]) if rows else None

    def image_count(self) -> int:
        return self.query("SELECT count(*) FROM images")[0][0]

    def known_files(self, folder_id: int) -> dict[str, tuple[int, int, int, str]]:
        """``path -> (image id, size, mtime_ns, hash)`` for one folder (used by the indexer)."""
        rows = self.query("SELECT path, id, size, mtime_ns, hash FROM images WHERE folder_id=?", (folder_id,))
        return {decode_path(r[0]): (r[1], r[2], r[3], r[4]) for r in rows}

    def update_mtime(self, image_id: int, mtime_ns: int) -> None:
        with self.transaction() as cur:
            cur.execute("UPDATE images SET mtime_ns=? WHERE id=?", (mtime_ns, image_id))

    def has_descriptor(self, method: str) -> set[int]:
        return {r[0] for r in self.query("SELECT image_id FROM descriptors WHERE method=?", (method,))}

    def remove_images(self, paths: Iterable[str]) -> int:
        blobs = [(encode_path(p),) for p in paths]
        if not blobs:
            return 0
        with self.transaction() as cur:
            n = 0
            for b in blobs:
                n += cur.execute("DELETE FROM images WHERE path=?", b).rowcount
                cur.execute("DELETE FROM failures WHERE path=?", b)
            if n:
                cur.execute("UPDATE methods SET generation = generation + 1")
        return n

    # -- failures -----------------------------------------------------------------------
    def record_failures(self, failures: Sequence[tuple[str, int | None, int | None, int | None, str]]) -> None:
        """``(path, folder_id, size, mtime_ns, reason)`` rows; a failed file loses its image row."""
        if not failures:
            return
        with self.transaction() as cur:
            for path, folder_id, size, mtime_ns, reason in failures:
                blob = encode_path(path)
                if cur.execute("DELETE FROM images WHERE path=?", (blob,)).rowcount:
                    cur.execute("UPDATE methods SET generation = generation + 1")
                cur.execute("INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?, ?, ?)",
                            (blob, folder_id, size, mtime_ns, reason, time.time()))

    def failures(self) -> list[tuple[str, str]]:
        return [(decode_path(p), r) for p, r in self.query("SELECT path, reason FROM failures ORDER BY path")]

    def failure_stat(self, folder_id: int) -> dict[str, tuple[int, int]]:
        rows = self.query("SELECT path, size, mtime_ns FROM failures WHERE folder_id=?", (folder_id,))
        return {decode_path(p): (s, m) for p, s, m in rows}

    def clear_failures(self, paths: Iterable[str]) -> None:
        with self.transaction() as cur:
            for p in paths:
                cur.execute("DELETE FROM failures WHERE path=?", (encode_path(p),))

    # -- methods ------------------------------------------------------------------------
    def ensure_method(self, name: str, config: dict, weights: str = BUILTIN_WEIGHTS) -> None:
        """Register ``name`` with its config and backbone ``weights`` (a
        :func:`weights_fingerprint`); other settings or other weights for an indexed method
        are an error: descriptors of different models cannot be compared."""
        cfg = json.dumps(config, sort_keys=True)
        row = self.query("SELECT config, weights FROM methods WHERE name=?", (name,))
        indexed = bool(self.query("SELECT 1 FROM descriptors WHERE method=? LIMIT 1", (name,)))
        if row and indexed and row[0][0] != cfg:
            raise LookalikeError(
                f"Method '{name}' is already indexed in this catalog with other settings; drop it first "
                f"(lookalike drop-method {name} --catalog {self.dir}) or use another --catalog.")
        if row and indexed:
            self.check_weights(name, weights)
        # Descriptors of a schema-1 catalog do not say which weights made them: left unknown.
        recorded = None if (row and indexed and row[0][1] is None) else weights
        with self.transaction() as cur:
            cur.execute("INSERT OR REPLACE INTO methods(name, config, created, generation, weights, config_hash) "
                        "VALUES (?, ?, ?, COALESCE((SELECT generation FROM methods WHERE name=?), 0), ?, ?)",
                        (name, cfg, time.time(), name, recorded, config_hash(cfg)))

    def check_weights(self, name: str, weights: str) -> None:
        """Refuse to add to or query ``name``'s descriptors with other backbone weights."""
        row = self.query("SELECT weights FROM methods WHERE name=?", (name,))
        if row and row[0][0] is not None and row[0][0] != weights:
            raise LookalikeError(
                f"The photos of method '{name}' in {self.dir} were described with {_describe_weights(row[0][0])}, "
                f"not with {_describe_weights(weights)}: their descriptors cannot be compared. Use the same "
                f"--weights, or index into another --catalog.")

    def method_config(self, name: str) -> dict | None:
        """The stored config of ``name``; one changed outside Lookalike is an error (its
        descriptors were computed with the recorded one)."""
        row = self.query("SELECT config, config_hash FROM methods WHERE name=?", (name,))
        if not row:
            return None
        config, recorded = row[0]
        if recorded is not None and config_hash(config) != recorded:
            raise CatalogError(
                f"The stored settings of method '{name}' in {self.dir} were changed outside Lookalike (they are "
                f"now {config}); its descriptors were computed with other settings. Restore them, or drop the "
                f"method (lookalike drop-method {name} --catalog {self.dir}) and index again.")
        try:
            return json.loads(config)
        except json.JSONDecodeError:
            raise CatalogError(f"The stored settings of method '{name}' in {self.dir} are not readable; drop the "
                               f"method (lookalike drop-method {name} --catalog {self.dir}) and index again.") from None

    def methods(self) -> list[tuple[str, int, int]]:
        """``(name, descriptor count, generation)`` for every method of this collection."""
        return [tuple(r) for r in self.query(
            "SELECT m.name, (SELECT count(*) FROM descriptors d WHERE d.method=m.name), m.generation "
            "FROM methods m ORDER BY m.name")]

    def generation(self, method: str) -> int:
        row = self.query("SELECT generation FROM methods WHERE name=?", (method,))
        return row[0][0] if row else -1

    def drop_method(self, name: str) -> None:
        with self.transaction() as cur:
            files = [r[0] for r in cur.execute("SELECT file FROM shards WHERE method=?", (name,))]
            files += [r[0] for r in cur.execute("SELECT file FROM states WHERE method=?", (name,))]
            cur.execute("DELETE FROM descriptors WHERE method=?", (name,))
            cur.execute("DELETE FROM shards WHERE method=?", (name,))
            cur.execute("DELETE FROM states WHERE method=?", (name,))
            cur.execute("DELETE FROM methods WHERE name=?", (name,))
        for f in files:
            self._unlink(f)

    # -- descriptors --------------------------------------------------------------------
    def _write_shard(self, method: str, descriptors: np.ndarray, tag: str = "") -> tuple[str, int, str]:
        """Write one shard file; returns ``(relative name, bytes, checksum)`` for its row."""
        data = npy_bytes(descriptors)
        rel = (Path("shards") / _safe(method) / f"{time.time_ns()}-{os.getpid()}{tag}.npy").as_posix()
        self._write_file(rel, data, "index again (finished photos are kept)")
        return rel, len(data), digest(data)

    def _write_file(self, rel: str, data: bytes, then: str) -> None:
        """Write ``data`` atomically at ``rel``; a full disk is a clear error saying ``then``."""
        try:
            atomic_write_bytes(self._file(rel), lambda f: f.write(data))
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise LookalikeError(f"The disk holding the catalog ({self.dir}) is full; free some space and "
                                     f"{then}.") from None
            raise

    def add_batch(self, method: str, images: Sequence[NewImage], descriptors: np.ndarray) -> list[int]:
        """Store images and their descriptors in one atomic step; returns image ids.

        An image already in the catalog (changed file) is updated in place and its old
        descriptors for every method dropped, since they describe the old content.
        """
        descriptors = np.ascontiguousarray(descriptors, dtype=np.float32)
        if descriptors.ndim != 2 or len(descriptors) != len(images):
            raise ValueError("descriptors must be (len(images), D)")
        if not np.isfinite(descriptors).all():
            raise ValueError(f"method {method} produced non-finite descriptor values")
        rel, size, checksum = self._write_shard(method, descriptors)
        try:
            with self.transaction() as cur:
                cur.execute("INSERT INTO shards(method, file, rows, dim, bytes, checksum) VALUES (?, ?, ?, ?, ?, ?)",
                            (method, rel, len(images), descriptors.shape[1], size, checksum))
                shard_id = cur.lastrowid
                ids = [self._store_image(cur, im) for im in images]
                cur.executemany("INSERT OR REPLACE INTO descriptors VALUES (?, ?, ?, ?)",
                                [(image_id, method, shard_id, row) for row, image_id in enumerate(ids)])
                cur.execute("UPDATE methods SET generation = generation + 1 WHERE name=?", (method,))
        except BaseException:
            self._unlink(rel)
            raise
        return ids

    @staticmethod
    def _store_image(cur: sqlite3.Cursor, im: NewImage) -> int:
        """Insert or update one image row (in ``add_batch``'s transaction); returns its id."""
        blob = encode_path(im.path)
        old = cur.execute("SELECT id, size, mtime_ns, hash FROM images WHERE path=?", (blob,)).fetchone()
        if old and (old[1], old[2], old[3]) != (im.size, im.mtime_ns, im.hash):
            cur.execute("DELETE FROM descriptors WHERE image_id=?", (old[0],))
            cur.execute("UPDATE methods SET generation = generation + 1")
        cur.execute("DELETE FROM failures WHERE path=?", (blob,))
        if old:
            cur.execute("UPDATE images SET folder_id=?, size=?, mtime_ns=?, hash=?, width=?, height=?, "
                        "taken=?, indexed_at=? WHERE id=?",
                        (im.folder_id, im.size, im.mtime_ns, im.hash, im.width, im.height, im.taken, time.time(),
                         old[0]))
            return old[0]
        cur.execute("INSERT INTO images(path, folder_id, size, mtime_ns, hash, width, height, taken, indexed_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (blob, im.folder_id, im.size, im.mtime_ns, im.hash, im.width, im.height, im.taken, time.time()))
        return cur.lastrowid

    def _read_shards(self, shards: Iterable[tuple]) -> tuple[dict[int, np.ndarray], bool]:
        """Verified arrays of ``(id, file, rows, dim, bytes, checksum)`` shards; damaged ones are
        left out (logged). Also returns whether one of them was missing."""
        arrays: dict[int, np.ndarray] = {}
        missing = False
        for sid, rel, rows, dim, size, checksum in shards:
            try:
                arrays[sid] = read_shard(self._file(rel), rows, dim, size, checksum)
            except DamagedFile as exc:
                missing = missing or exc.reason == "the file is missing"
                log.warning("descriptor shard %s is damaged (%s); its photos are left out", rel, exc.reason)
            except UnsafePathError as exc:
                log.warning("%s; its photos are left out", exc)
        return arrays, missing

    def load_descriptors(self, method: str) -> tuple[np.ndarray, list[str], np.ndarray]:
        """``(image ids, paths, descriptors (N, D) float32)`` of ``method``, ordered by image id.

        Photos whose shard is damaged are left out (their number: :meth:`skipped_at_last_load`);
        the next index run describes them again."""
        for attempt in range(2):
            rows = self.query(
                "SELECT d.image_id, i.path, d.shard_id, d.row, s.file, s.rows, s.dim, s.bytes, s.checksum "
                "FROM descriptors d JOIN images i ON i.id = d.image_id JOIN shards s ON s.id = d.shard_id "
                "WHERE d.method=? ORDER BY d.image_id", (method,))
            arrays, missing = self._read_shards({r[2]: (r[2], *r[4:]) for r in rows}.values())
            if not missing:
                break  # else a compaction elsewhere replaced a shard while we read: read again
        keep = [r for r in rows if r[2] in arrays and r[3] < len(arrays[r[2]])]
        self._skipped[method] = len(rows) - len(keep)
        if not keep:
            return np.zeros(0, np.int64), [], np.zeros((0, rows[0][6] if rows else 0), np.float32)
        out = np.empty((len(keep), keep[0][6]), np.float32)
        by_shard: dict[int, list[tuple[int, int]]] = {}
        for k, r in enumerate(keep):
            by_shard.setdefault(r[2], []).append((k, r[3]))
        for sid, pairs in by_shard.items():
            dst, src = zip(*pairs)
            out[list(dst)] = arrays[sid][list(src)]
        return np.array([r[0] for r in keep], np.int64), [decode_path(r[1]) for r in keep], out

    def skipped_at_last_load(self, method: str) -> int:
        """Photos of ``method`` the last :meth:`load_descriptors` left out (damaged shards)."""
        return self._skipped.get(method, 0)

    def compact_if_fragmented(self, method: str) -> bool:
        """Compact ``method`` when it has more than :data:`COMPACT_ABOVE_SHARDS` shards."""
        n = self.query("SELECT count(*) FROM shards WHERE method=?", (method,))[0][0]
        if n <= COMPACT_ABOVE_SHARDS:
            return False
        self.compact(method)
        return True

    def compact(self, method: str) -> None:
        """Merge ``method``'s shards of fewer than :data:`CHUNK_ROWS` rows into shards of
        :data:`CHUNK_ROWS` rows (the same descriptors, by image id) and delete the old files.
        Damaged shards are left for :meth:`forget_damaged`."""
        with self.index_lock():
            small = self.query("SELECT id, file, rows, dim, bytes, checksum FROM shards WHERE method=? AND rows < ?",
                               (method, CHUNK_ROWS))
            arrays, _missing = self._read_shards(small)
            if len(arrays) <= 1:
                return
            rows = self.query("SELECT image_id, shard_id, row FROM descriptors WHERE method=? AND shard_id IN "
                              "(SELECT value FROM json_each(?)) ORDER BY image_id", (method, json.dumps(list(arrays))))
            desc = np.stack([arrays[sid][row] for _i, sid, row in rows]) if rows else None
            written = [(start, *self._write_shard(method, desc[start:start + CHUNK_ROWS], f"-compact{start}"))
                       for start in range(0, len(rows), CHUNK_ROWS)]
            with self.transaction() as cur:
                for start, rel, size, checksum in written:
                    chunk = rows[start:start + CHUNK_ROWS]
                    cur.execute("INSERT INTO shards(method, file, rows, dim, bytes, checksum) VALUES (?, ?, ?, ?, ?, ?)",
                                (method, rel, len(chunk), desc.shape[1], size, checksum))
                    cur.executemany("UPDATE descriptors SET shard_id=?, row=? WHERE image_id=? AND method=? AND shard_id=?",
                                    [(cur.lastrowid, k, i, method, sid) for k, (i, sid, _r) in enumerate(chunk)])
                cur.executemany("DELETE FROM shards WHERE id=?", [(sid,) for sid in arrays])
            for _sid, rel, *_rest in small:
                if _sid in arrays:
                    self._unlink(rel)

    # -- learned state ------------------------------------------------------------------
    def save_state(self, method: str, kind: str, arrays: dict[str, np.ndarray], generation: int | None = None) -> None:
        """Store a learned state (``dict`` of arrays) as an ``.npz``; replaces the previous one."""
        data = npz_bytes(arrays)
        rel = (Path("state") / f"{_safe(method)}-{_safe(kind)}-{time.time_ns()}.npz").as_posix()
        self._write_file(rel, data, f"try again (the previous {kind} state of {method} is kept)")
        gen = self.generation(method) if generation is None else generation
        try:
            with self.transaction() as cur:
                old = cur.execute("SELECT file FROM states WHERE method=? AND kind=?", (method, kind)).fetchone()
                cur.execute("INSERT OR REPLACE INTO states(method, kind, file, generation, bytes, checksum) "
                            "VALUES (?, ?, ?, ?, ?, ?)", (method, kind, rel, gen, len(data), digest(data)))
        except BaseException:
            self._unlink(rel)
            raise
        if old:
            self._unlink(old[0])

    def load_state(self, method: str, kind: str) -> tuple[dict[str, np.ndarray], int] | None:
        """``(arrays, generation it was learned at)`` or None; a damaged file is a clear error."""
        row = self.query("SELECT file, generation, bytes, checksum FROM states WHERE method=? AND kind=?",
                         (method, kind))
        if not row:
            return None
        rel, gen, size, checksum = row[0]
        try:
            return read_state(self._file(rel), size, checksum), gen
        except DamagedFile as exc:
            raise CatalogError(f"The learned {kind} state of method '{method}' ({rel}) is damaged: {exc.reason}. "
                               f"Run 'lookalike repair --catalog {self.dir}' (or 'lookalike index').") from None

    # -- duplicate finder: decisions and verification results -----------------------------
    def set_pair_decisions(self, pairs: Iterable[tuple[str, str]], decision: str | None) -> int:
        """Store ``decision`` (e.g. "distinct", "resolved") for content-hash pairs; None forgets them."""
        rows = [tuple(sorted(p)) for p in pairs if p[0] != p[1]]
        with self.transaction() as cur:
            for a, b in rows:
                if decision is None:
                    cur.execute("DELETE FROM duplicate_decisions WHERE a=? AND b=?", (a, b))
                else:
                    cur.execute("INSERT OR REPLACE INTO duplicate_decisions VALUES (?, ?, ?, ?)",
                                (a, b, decision, time.time()))
        return len(rows)

    def pair_decisions(self) -> dict[tuple[str, str], str]:
        return {(a, b): d for a, b, d in self.query("SELECT a, b, decision FROM duplicate_decisions")}

    def save_pair_checks(self, verifier: str, rows: Iterable[tuple[str, str, bool, str]]) -> None:
        """Verification results ``(hash a, hash b, verdict, detail)`` of one verifier version."""
        data = [(*sorted((a, b)), verifier, int(bool(v)), d) for a, b, v, d in rows]
        with self.transaction() as cur:
            cur.executemany("INSERT OR REPLACE INTO duplicate_checks VALUES (?, ?, ?, ?, ?)", data)

    def pair_checks(self, verifier: str) -> dict[tuple[str, str], tuple[bool, str]]:
        return {(a, b): (bool(v), d) for a, b, v, d in
                self.query("SELECT a, b, verdict, detail FROM duplicate_checks WHERE verifier=?", (verifier,))}

    # -- damage and repair --------------------------------------------------------------
    def damaged_shards(self, method: str | None = None) -> list[DamagedShard]:
        """Every shard of ``method`` (None: of every method) that fails verification."""
        found = []
        for sid, m, rel, rows, dim, size, checksum in self.query(
                "SELECT id, method, file, rows, dim, bytes, checksum FROM shards WHERE ? IS NULL OR method=?",
                (method, method)):
            try:
                read_shard(self._file(rel), rows, dim, size, checksum)
                continue
            except DamagedFile as exc:
                reason = exc.reason
            except UnsafePathError as exc:
                reason = str(exc)
            photos = self.query("SELECT count(*) FROM descriptors WHERE shard_id=?", (sid,))[0][0]
            found.append(DamagedShard(sid, m, rel, photos, reason))
        return found

    def damaged_states(self, method: str | None = None) -> list[DamagedState]:
        found = []
        for m, kind, rel, size, checksum in self.query(
                "SELECT method, kind, file, bytes, checksum FROM states WHERE ? IS NULL OR method=?", (method, method)):
            try:
                read_state(self._file(rel), size, checksum)
            except DamagedFile as exc:
                found.append(DamagedState(m, kind, rel, exc.reason))
            except UnsafePathError as exc:
                found.append(DamagedState(m, kind, rel, str(exc)))
        return found

    def forget_damaged(self, method: str | None = None) -> list[str]:
        """Drop the descriptor rows of damaged shards and damaged learned states (of ``method``,
        None: every method), so the next index run describes exactly those photos again.
        Returns one sentence per thing forgotten. Needs the index lock (an indexer's
        uncommitted shard must not be judged)."""
        with self.index_lock():
            shards, states = self.damaged_shards(method), self.damaged_states(method)
            said = []
            with self.transaction() as cur:
                for d in shards:
                    cur.execute("DELETE FROM descriptors WHERE shard_id=?", (d.id,))
                    cur.execute("DELETE FROM shards WHERE id=?", (d.id,))
                    cur.execute("UPDATE methods SET generation = generation + 1 WHERE name=?", (d.method,))
                    said.append(f"damaged shard {d.file} ({d.reason}): {d.photos} photos of {d.method} to describe again")
                for s in states:
                    cur.execute("DELETE FROM states WHERE method=? AND kind=?", (s.method, s.kind))
                    again = ""
                    if s.kind == PREPARE_KIND:  # the descriptors were computed with it
                        n = cur.execute("DELETE FROM descriptors WHERE method=?", (s.method,)).rowcount
                        cur.execute("UPDATE methods SET generation = generation + 1 WHERE name=?", (s.method,))
                        again = f"; all {n} photos of {s.method} to describe again"
                    said.append(f"damaged {s.kind} state of {s.method} ({s.reason}) removed{again}")
                n = cur.execute("DELETE FROM descriptors WHERE (? IS NULL OR method=?) AND NOT EXISTS (SELECT 1 FROM "
                                "shards s WHERE s.id=shard_id AND descriptors.row < s.rows)", (method, method)).rowcount
                if n:
                    cur.execute("UPDATE methods SET generation = generation + 1 WHERE ? IS NULL OR name=?", (method, method))
                    said.append(f"{n} descriptor rows pointing at no shard row: their photos to describe again")
            for rel in [d.file for d in shards] + [s.file for s in states]:
                self._unlink(rel)
        return said

    def prepare_index_run(self, method: str) -> list[str]:
        """What an index run of ``method`` does first, under the index lock: delete what killed
        runs left, merge nested folders, forget damaged shards and states of ``method``
        (whose photos the run then describes again). Returns what was repaired, in words."""
        with self.index_lock():
            self.clean_orphans()
            merged = self.merge_nested_folders()
            said = self.forget_damaged(method)
        return said + ([f"{merged} folders inside other folders of the collection merged into them"] if merged else [])

    # -- integrity ----------------------------------------------------------------------
    def check(self) -> list[str]:
        """Integrity problems (empty list when healthy): SQLite check, shard and state files
        (size, checksum, shape, finite values), row bounds, paths that leave the catalog."""
        problems = [r[0] for r in self.query("PRAGMA integrity_check") if r[0] != "ok"]
        for sub in ("shards", "state"):
            if (self.dir / sub).exists() and not is_confined(self.dir, self.dir / sub):
                problems.append(f"{sub}/ leads outside the catalog folder (a symbolic link): nothing in it is used")
        repair = f"the next 'lookalike index' (or 'lookalike repair --catalog {self.dir}') describes them again"
        for d in self.damaged_shards():
            problems.append(f"damaged shard {d.file} ({d.reason}): {d.photos} photos of {d.method} cannot be "
                            f"searched; {repair}")
        for s in self.damaged_states():
            again = f" and describes the {s.method} photos again" if s.kind == PREPARE_KIND else ""
            problems.append(f"damaged {s.kind} state of {s.method} ({s.file}: {s.reason}); the next "
                            f"'lookalike index' (or 'lookalike repair --catalog {self.dir}') removes it{again}")
        bad = self.query("SELECT count(*) FROM descriptors d JOIN shards s ON s.id=d.shard_id WHERE d.row >= s.rows")[0][0]
        if bad:
            problems.append(f"{bad} descriptor rows point past the end of their shard; {repair}")
        dangling = self.query("SELECT count(*) FROM descriptors d LEFT JOIN shards s ON s.id=d.shard_id WHERE s.id IS NULL")[0][0]
        if dangling:
            problems.append(f"{dangling} descriptor rows reference no shard; {repair}")
        dup = self.query("SELECT count(*) FROM (SELECT path FROM images GROUP BY path HAVING count(*) > 1)")[0][0]
        if dup:
            problems.append(f"{dup} duplicated image paths")
        return problems

    def clean_orphans(self) -> int:
        """Delete temp files, and shard and state files that no committed row references;
        returns how many. Only under the index lock: an indexer's shard is unreferenced
        between its rename and its commit, and must not be taken for a crash's leftover."""
        if self._lock_fd is None:
            raise RuntimeError("clean_orphans needs the index lock")
        known = {r[0] for r in self.query("SELECT file FROM shards UNION SELECT file FROM states")}
        removed = 0
        for sub, suffixes in (("shards", (".npy", ".tmp")), ("state", (".npz", ".tmp"))):
            root = self.dir / sub
            if not root.exists() or not is_confined(self.dir, root):
                continue  # never walk (and delete in) a folder outside the catalog
            for p in root.rglob("*"):
                if p.suffix in suffixes and (p.is_symlink() or p.is_file()) \
                        and p.relative_to(self.dir).as_posix() not in known:
                    try:
                        p.unlink()  # a symlink itself, never what it points at
                        removed += 1
                    except OSError:
                        pass
        return removed

    def _clean_orphans_if_idle(self) -> None:
        """On open: clean up after killed writers, only if no process is indexing now."""
        try:
            fd = try_index_lock(self.dir, wait_s=0.0)
        except (OSError, LookalikeError):
            return  # read-only catalog folder: nothing could be deleted anyway
        if fd is None:
            return
        self._lock_fd = fd
        try:
            self.clean_orphans()
        except LookalikeError as exc:
            log.warning("orphan clean-up skipped: %s", exc)
        finally:
            self._lock_fd = None
            os.close(fd)

    # -- locking ------------------------------------------------------------------------
    @contextmanager
    def index_lock(self, wait_s: float = 2.0) -> Iterator[None]:
        """Exclusive lock for indexing and repairs; released automatically if the process
        dies. Re-entrant within this object. Waits up to ``wait_s`` seconds, since another
        process that just opened the catalog holds it for a moment to clean up."""
        if self._lock_fd is not None:
            yield
            return
        try:
            fd = try_index_lock(self.dir, wait_s)
        except OSError as exc:
            raise CatalogError(f"Cannot lock the catalog ({self.dir / 'index.lock'}: {exc.strerror or exc}); "
                               f"Lookalike must be able to write in the catalog folder.") from None
        if fd is None:
            raise CatalogBusyError(
                f"This collection is already being indexed by another Lookalike process "
                f"(lock {self.dir / 'index.lock'}); wait for it to finish or close the other window.")
        self._lock_fd = fd
        try:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            yield
        finally:
            self._lock_fd = None
            os.close(fd)


def try_index_lock(directory: Path, wait_s: float) -> int | None:
    """An fd holding ``directory/index.lock`` (flock; released when the process dies), or
    None when another process holds it for longer than ``wait_s`` seconds."""
    fd = os.open(directory / "index.lock", os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            try:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except ImportError:  # pragma: no cover - Windows
                import msvcrt

                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return fd
        except (BlockingIOError, PermissionError):
            if time.monotonic() >= deadline:
                os.close(fd)
                return None
            time.sleep(0.02)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
