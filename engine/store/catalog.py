"""The collection catalog: SQLite (WAL) plus per-method float32 ``.npy`` descriptor shards.

Layout of a catalog directory::

    catalog.sqlite          images, failures, folders, methods, shards, descriptor rows
    shards/<method>/<n>.npy one file per indexing batch, written atomically
    state/<method>-<kind>.npz learned state (PCA, PFA, hedge weights...), written atomically
    index.lock              held (flock) by the process that is indexing

Crash safety: a shard file is written to a temporary name, fsync'ed and renamed *before*
the SQLite transaction that references it commits. A kill between the two leaves an
unreferenced shard, which :meth:`CatalogStore.open` deletes; the catalog itself is always
either before or after a batch. Paths are stored as bytes (``os.fsencode``) so names
that are not valid UTF-8 survive. No pickle anywhere: ``np.load(allow_pickle=False)``.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from engine.errors import CatalogBusyError, CatalogError, LookalikeError
from engine.store.atomic import atomic_write_bytes

SCHEMA_VERSION = 1
DB_NAME = "catalog.sqlite"

_SCHEMA = """
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
    generation INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS shards (
    id INTEGER PRIMARY KEY, method TEXT NOT NULL, file TEXT NOT NULL,
    rows INTEGER NOT NULL, dim INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS descriptors (
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    method TEXT NOT NULL, shard_id INTEGER NOT NULL, row INTEGER NOT NULL,
    PRIMARY KEY (image_id, method));
CREATE INDEX IF NOT EXISTS descriptors_by_shard ON descriptors(shard_id);
CREATE TABLE IF NOT EXISTS states (
    method TEXT NOT NULL, kind TEXT NOT NULL, file TEXT NOT NULL, generation INTEGER NOT NULL,
    PRIMARY KEY (method, kind));
"""

# Duplicate finder state, keyed by content hash pairs (a < b) so it survives moves, renames
# and re-indexing. Added without a schema version bump: the tables are created if missing
# on every open (old catalogs gain them; an older Lookalike ignores them).
_DUPLICATE_SCHEMA = """
CREATE TABLE IF NOT EXISTS duplicate_decisions (
    a TEXT NOT NULL, b TEXT NOT NULL, decision TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (a, b));
CREATE TABLE IF NOT EXISTS duplicate_checks (
    a TEXT NOT NULL, b TEXT NOT NULL, verifier TEXT NOT NULL, verdict INTEGER NOT NULL,
    detail TEXT NOT NULL, PRIMARY KEY (a, b, verifier));
"""


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
        if not db.exists():
            if not create:
                raise CatalogError(f"No catalog at {self.dir} (run 'lookalike index FOLDER --catalog {self.dir}' first).")
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CatalogError(f"Cannot create the catalog folder {self.dir}: {exc.strerror}.") from None
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(db, check_same_thread=False, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._check_schema()
        except sqlite3.DatabaseError as exc:
            raise CatalogError(f"The catalog {db} cannot be read ({exc}); it is not a Lookalike catalog or it is damaged.") from None
        self._remove_orphans()

    # -- schema -------------------------------------------------------------------------
    def _check_schema(self) -> None:
        has_meta = self._db.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        if not has_meta:
            tables = self._db.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0]
            if tables:
                raise CatalogError(f"{self.dir / DB_NAME} is an SQLite file but not a Lookalike catalog.")
            self._db.executescript(_SCHEMA + _DUPLICATE_SCHEMA)
            self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            self._db.execute("INSERT INTO meta VALUES ('created', ?)", (str(time.time()),))
            return
        row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise CatalogError(
                f"The catalog at {self.dir} was written by a newer Lookalike (schema {version}, this "
                f"version reads {SCHEMA_VERSION}); update Lookalike or use another --catalog.")
        if version < SCHEMA_VERSION:
            self._migrate(version)
        self._db.executescript(_DUPLICATE_SCHEMA)

    def _migrate(self, version: int) -> None:
        # Schema 1 is the first; older catalogs cannot exist. Future migrations go here, one
        # step per version, each inside a transaction.
        raise CatalogError(f"The catalog at {self.dir} has an unknown old schema {version}; re-index into a new --catalog.")

    def _remove_orphans(self) -> None:
        """Delete temp files and shard files that no committed transaction references."""
        shard_root = self.dir / "shards"
        if not shard_root.exists():
            return
        known = {r[0] for r in self._db.execute("SELECT file FROM shards")}
        for p in shard_root.rglob("*"):
            if p.is_file():
                rel = p.relative_to(self.dir).as_posix()
                if rel not in known and (p.suffix in (".npy", ".tmp")):
                    try:
                        p.unlink()
                    except OSError:
                        pass

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
                        cur.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                if "full" in str(exc).lower():  # "database or disk is full"
                    raise LookalikeError(f"The disk holding the catalog ({self.dir}) is full; free some space "
                                         f"and try again (finished photos are kept).") from None
                raise

    def query(self, sql: str, params: Sequence = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- meta ---------------------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.query("SELECT value FROM meta WHERE key=?", (key,))
        return row[0][0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as cur:
            cur.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # -- folders ------------------------------------------------------------------------
    def add_folder(self, path: str | os.PathLike) -> int:
        p = Path(path).expanduser()
        if not p.is_dir():
            raise LookalikeError(f"Folder not found: {p}")
        blob = encode_path(p.resolve())
        with self.transaction() as cur:
            cur.execute("INSERT OR IGNORE INTO folders(path, added) VALUES (?, ?)", (blob, time.time()))
            return cur.execute("SELECT id FROM folders WHERE path=?", (blob,)).fetchone()[0]

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
    def ensure_method(self, name: str, config: dict) -> None:
        """Register ``name`` with its config; a different config for an indexed method is an error."""
        cfg = json.dumps(config, sort_keys=True)
        row = self.query("SELECT config FROM methods WHERE name=?", (name,))
        if row and row[0][0] != cfg:
            if self.query("SELECT 1 FROM descriptors WHERE method=? LIMIT 1", (name,)):
                raise LookalikeError(
                    f"Method '{name}' is already indexed in this catalog with other settings; "
                    f"drop it first (lookalike drop-method {name}) or use another --catalog.")
        with self.transaction() as cur:
            cur.execute("INSERT OR REPLACE INTO methods(name, config, created, generation) VALUES (?, ?, ?, "
                        "COALESCE((SELECT generation FROM methods WHERE name=?), 0))",
                        (name, cfg, time.time(), name))

    def method_config(self, name: str) -> dict | None:
        row = self.query("SELECT config FROM methods WHERE name=?", (name,))
        return json.loads(row[0][0]) if row else None

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
            try:
                (self.dir / f).unlink()
            except OSError:
                pass

    # -- descriptors --------------------------------------------------------------------
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
        shard_dir = self.dir / "shards" / _safe(method)
        name = f"{time.time_ns()}-{os.getpid()}.npy"
        rel = (Path("shards") / _safe(method) / name).as_posix()
        try:
            atomic_write_bytes(shard_dir / name, lambda f: np.save(f, descriptors, allow_pickle=False))
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise LookalikeError(f"The disk holding the catalog ({self.dir}) is full; free some space and index again (finished photos are kept).") from None
            raise
        ids: list[int] = []
        now = time.time()
        try:
            with self.transaction() as cur:
                cur.execute("INSERT INTO shards(method, file, rows, dim) VALUES (?, ?, ?, ?)",
                            (method, rel, len(images), descriptors.shape[1]))
                shard_id = cur.lastrowid
                for row, im in enumerate(images):
                    blob = encode_path(im.path)
                    old = cur.execute("SELECT id, size, mtime_ns, hash FROM images WHERE path=?", (blob,)).fetchone()
                    if old and (old[1], old[2], old[3]) != (im.size, im.mtime_ns, im.hash):
                        cur.execute("DELETE FROM descriptors WHERE image_id=?", (old[0],))
                        cur.execute("UPDATE methods SET generation = generation + 1")
                    if old:
                        cur.execute("UPDATE images SET folder_id=?, size=?, mtime_ns=?, hash=?, width=?, height=?, "
                                    "taken=?, indexed_at=? WHERE id=?",
                                    (im.folder_id, im.size, im.mtime_ns, im.hash, im.width, im.height, im.taken, now, old[0]))
                        image_id = old[0]
                    else:
                        cur.execute("INSERT INTO images(path, folder_id, size, mtime_ns, hash, width, height, taken, indexed_at) "
                                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                    (blob, im.folder_id, im.size, im.mtime_ns, im.hash, im.width, im.height, im.taken, now))
                        image_id = cur.lastrowid
                    cur.execute("INSERT OR REPLACE INTO descriptors VALUES (?, ?, ?, ?)", (image_id, method, shard_id, row))
                    cur.execute("DELETE FROM failures WHERE path=?", (blob,))
                    ids.append(image_id)
                cur.execute("UPDATE methods SET generation = generation + 1 WHERE name=?", (method,))
        except BaseException:
            try:
                (self.dir / rel).unlink()
            except OSError:
                pass
            raise
        return ids

    def load_descriptors(self, method: str) -> tuple[np.ndarray, list[str], np.ndarray]:
        """``(image ids, paths, descriptors (N, D) float32)`` of ``method``, ordered by image id."""
        rows = self.query(
            "SELECT d.image_id, i.path, d.shard_id, d.row, s.file, s.dim FROM descriptors d "
            "JOIN images i ON i.id = d.image_id JOIN shards s ON s.id = d.shard_id "
            "WHERE d.method=? ORDER BY d.image_id", (method,))
        if not rows:
            return np.zeros(0, np.int64), [], np.zeros((0, 0), np.float32)
        dim = rows[0][5]
        out = np.empty((len(rows), dim), np.float32)
        by_shard: dict[int, list[tuple[int, int]]] = {}
        files: dict[int, str] = {}
        for k, r in enumerate(rows):
            by_shard.setdefault(r[2], []).append((k, r[3]))
            files[r[2]] = r[4]
        for sid, pairs in by_shard.items():
            arr = np.load(self.dir / files[sid], mmap_mode="r", allow_pickle=False)
            dst, src = zip(*pairs)
            out[list(dst)] = arr[list(src)]
        return np.array([r[0] for r in rows], np.int64), [decode_path(r[1]) for r in rows], out

    def compact(self, method: str) -> None:
        """Rewrite ``method``'s descriptors into one shard and delete the old shard files."""
        ids, _paths, desc = self.load_descriptors(method)
        old = [r[0] for r in self.query("SELECT file FROM shards WHERE method=?", (method,))]
        if len(old) <= 1 or len(ids) == 0:
            return
        name = f"{time.time_ns()}-{os.getpid()}-compact.npy"
        rel = (Path("shards") / _safe(method) / name).as_posix()
        atomic_write_bytes(self.dir / rel, lambda f: np.save(f, desc, allow_pickle=False))
        with self.transaction() as cur:
            cur.execute("INSERT INTO shards(method, file, rows, dim) VALUES (?, ?, ?, ?)", (method, rel, len(ids), desc.shape[1]))
            sid = cur.lastrowid
            cur.executemany("UPDATE descriptors SET shard_id=?, row=? WHERE image_id=? AND method=?",
                            [(sid, k, int(i), method) for k, i in enumerate(ids)])
            cur.execute("DELETE FROM shards WHERE method=? AND id<>?", (method, sid))
        for f in old:
            try:
                (self.dir / f).unlink()
            except OSError:
                pass

    # -- learned state ------------------------------------------------------------------
    def save_state(self, method: str, kind: str, arrays: dict[str, np.ndarray], generation: int | None = None) -> None:
        """Store a learned state (``dict`` of arrays) as an ``.npz``; replaces the previous one."""
        rel = (Path("state") / f"{_safe(method)}-{_safe(kind)}-{time.time_ns()}.npz").as_posix()
        try:
            atomic_write_bytes(self.dir / rel, lambda f: np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()}))
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise LookalikeError(f"The disk holding the catalog ({self.dir}) is full; free some space and try "
                                     f"again (the previous {kind} state of {method} is kept).") from None
            raise
        gen = self.generation(method) if generation is None else generation
        with self.transaction() as cur:
            old = cur.execute("SELECT file FROM states WHERE method=? AND kind=?", (method, kind)).fetchone()
            cur.execute("INSERT OR REPLACE INTO states VALUES (?, ?, ?, ?)", (method, kind, rel, gen))
        if old:
            try:
                (self.dir / old[0]).unlink()
            except OSError:
                pass

    def load_state(self, method: str, kind: str) -> tuple[dict[str, np.ndarray], int] | None:
        """``(arrays, generation it was learned at)`` or None."""
        row = self.query("SELECT file, generation FROM states WHERE method=? AND kind=?", (method, kind))
        if not row:
            return None
        with np.load(self.dir / row[0][0], allow_pickle=False) as z:
            return {k: z[k] for k in z.files}, row[0][1]

    def delete_state(self, method: str, kind: str) -> None:
        with self.transaction() as cur:
            old = cur.execute("SELECT file FROM states WHERE method=? AND kind=?", (method, kind)).fetchone()
            cur.execute("DELETE FROM states WHERE method=? AND kind=?", (method, kind))
        if old:
            try:
                (self.dir / old[0]).unlink()
            except OSError:
                pass

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

    # -- integrity ----------------------------------------------------------------------
    def check(self) -> list[str]:
        """Integrity problems (empty list when healthy): SQLite check, shard files, row bounds."""
        problems = [r[0] for r in self.query("PRAGMA integrity_check") if r[0] != "ok"]
        for sid, f, rows, dim in self.query("SELECT id, file, rows, dim FROM shards"):
            p = self.dir / f
            if not p.is_file():
                problems.append(f"missing shard file {f}")
                continue
            try:
                arr = np.load(p, mmap_mode="r", allow_pickle=False)
            except (ValueError, OSError) as exc:
                problems.append(f"unreadable shard {f}: {exc}")
                continue
            if arr.shape != (rows, dim):
                problems.append(f"shard {f} has shape {arr.shape}, expected {(rows, dim)}")
        bad = self.query("SELECT count(*) FROM descriptors d JOIN shards s ON s.id=d.shard_id WHERE d.row >= s.rows")[0][0]
        if bad:
            problems.append(f"{bad} descriptor rows point past the end of their shard")
        dangling = self.query("SELECT count(*) FROM descriptors d LEFT JOIN shards s ON s.id=d.shard_id WHERE s.id IS NULL")[0][0]
        if dangling:
            problems.append(f"{dangling} descriptor rows reference no shard")
        dup = self.query("SELECT count(*) FROM (SELECT path FROM images GROUP BY path HAVING count(*) > 1)")[0][0]
        if dup:
            problems.append(f"{dup} duplicated image paths")
        return problems

    # -- locking ------------------------------------------------------------------------
    @contextmanager
    def index_lock(self) -> Iterator[None]:
        """Exclusive lock for indexing; released automatically if the process dies."""
        path = self.dir / "index.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except ImportError:  # pragma: no cover - Windows
                import msvcrt

                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            except BlockingIOError:
                raise CatalogBusyError(
                    f"This collection is already being indexed by another Lookalike process "
                    f"(lock {path}); wait for it to finish or close the other window.") from None
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            yield
        finally:
            os.close(fd)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
