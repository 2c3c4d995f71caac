"""The archive folder: what is planned, what each shard holds, and how a shard is committed.

    ARCHIVE_DIR/
      archive.json              the plan: method and settings, weights, sources, shard count,
                                the listings that planned the shards
      listing.json              what the last listing of the sources found gone or changed
      index.lock                held (flock) by the ``archive index`` driver
      prepare.npz               the method's prepared state (only methods that prepare)
      plan/00000.json           shard 0's files: [[path, size, mtime_ns], ...]
      shards/00000.npy          shard 0's raw descriptors (rows, D) float32
      shards/00000.json         shard 0's manifest (path, size, mtime, content hash ... of each
                                described photo, the failed files with reasons, who described
                                it); written last, so its presence means the shard is finished
      shards/00000.claim.json   the worker describing shard 0 now (host, pid); removed at commit
      index.json, index-*/      the merged search index (:mod:`engine.archive.merge`)

A rerun that lists the sources again appends shards (:func:`engine.archive.plan.grow_plan`):
their plans first, ``archive.json`` last, so a shard that ``archive.json`` counts always has
its plan, and a planned shard's files never change.

Every file is written through :func:`engine.store.atomic.atomic_write_bytes`. A shard's
descriptors are written before its manifest, and the manifest records their size and
BLAKE2b digest (:mod:`engine.store.integrity`, the catalog's checksums): a worker killed
between the two leaves descriptors without a manifest, which the next run writes again.
Paths are kept as Python strings; JSON's ``\\udcXX`` escapes carry file names that are not
valid UTF-8 through unchanged.
"""
from __future__ import annotations

import json
import os
import platform
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from engine.errors import LookalikeError
from engine.indexing.indexer import FoundFile
from engine.store.atomic import atomic_write_bytes, atomic_write_text
from engine.store.catalog import try_index_lock
from engine.store.integrity import digest, npy_bytes

FORMAT = 1
KIND = "lookalike-archive"
INFO_NAME = "archive.json"


class ArchiveError(LookalikeError):
    """The folder is not an archive, or not one this version reads, or it is being written."""


@dataclass(frozen=True)
class ArchiveInfo:
    """``archive.json``: what an archive holds. Method, settings, weights, sources and shard
    size are fixed when the sources are first listed; each later listing that found new photos
    appends shards.

    ``weights``: the ``--weights`` file as given (every worker must read it at that path), None
    for the built-in weights; ``weights_fingerprint``: what the catalog would record for it.
    ``listing_failed``: folders and files the listing could not read (``{"path", "reason"}``);
    ``ignored``: files without an image extension. ``prepared``: the digest of
    ``prepare.npz`` for methods that prepare, else None. ``listings``: one
    ``{"first_shard", "shards", "files", "listed"}`` per listing that planned shards (the first
    plan, then each growth; within one, every shard is full but the last); empty in an archive
    planned before archives could grow (one listing: all its shards). ``listed``: when the
    sources were last listed. ``shards`` and ``files`` are the totals over all listings;
    ``ignored`` and ``listing_failed`` are the last listing's.
    """

    method: str
    config: dict[str, Any]
    weights: str | None
    weights_fingerprint: str
    sources: list[str]
    shard_size: int
    shards: int
    files: int
    ignored: int = 0
    listing_failed: list[dict[str, str]] = field(default_factory=list)
    created: float = 0.0
    prepared: str | None = None
    listings: list[dict[str, Any]] = field(default_factory=list)
    listed: float = 0.0

    def plan_listings(self) -> list[dict[str, Any]]:
        """``listings``, or the one listing of an archive planned before they were recorded."""
        return self.listings or [{"first_shard": 0, "shards": self.shards, "files": self.files,
                                  "listed": self.created}]

    def to_json(self) -> str:
        return json.dumps({"kind": KIND, "format": FORMAT, **asdict(self)}, indent=1)

    @classmethod
    def from_json(cls, text: str, where: Path) -> "ArchiveInfo":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArchiveError(f"{where} is damaged ({exc}); it cannot be read as an archive.") from None
        if not isinstance(data, dict) or data.get("kind") != KIND:
            raise ArchiveError(f"{where} does not describe a Lookalike archive.")
        if data.get("format") != FORMAT:
            raise ArchiveError(f"{where} is archive format {data.get('format')}; this Lookalike reads format {FORMAT}.")
        data.pop("kind")
        data.pop("format")
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ArchiveError(f"{where} has fields this Lookalike does not know ({', '.join(sorted(unknown))}): "
                               f"it was written by a newer version.")
        return cls(**data)


@dataclass(frozen=True)
class ShardManifest:
    """``shards/NNNNN.json``: one finished shard.

    ``photos``: one dict per descriptor row, in row order (``path, size, mtime_ns, hash,
    width, height, taken``). ``failed``: ``{"path", "size", "mtime_ns", "reason"}`` of files
    that could not be described. ``descriptors_bytes`` / ``descriptors_digest``: of the
    ``.npy`` file, checked before it is used. ``worker``: host, pid and what ran the network.
    """

    shard: int
    photos: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    dim: int
    descriptors_bytes: int
    descriptors_digest: str
    worker: dict[str, Any]
    seconds: float
    finished: float


def worker_identity() -> dict[str, Any]:
    """Who is describing: the host name and process id (what ``archive status`` and the
    claims show; a path a result shows was read on that host)."""
    return {"host": platform.node(), "pid": os.getpid()}


def shard_name(shard: int) -> str:
    return f"{shard:05d}"


class ArchiveLayout:
    """The files of one archive folder (nothing is read or created until asked)."""

    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(os.path.abspath(os.path.expanduser(os.fspath(directory))))

    # -- paths ----------------------------------------------------------------------------
    @property
    def info_path(self) -> Path:
        return self.dir / INFO_NAME

    @property
    def listing_path(self) -> Path:
        return self.dir / "listing.json"

    @property
    def prepare_path(self) -> Path:
        return self.dir / "prepare.npz"

    def plan_path(self, shard: int) -> Path:
        return self.dir / "plan" / f"{shard_name(shard)}.json"

    def descriptors_path(self, shard: int) -> Path:
        return self.dir / "shards" / f"{shard_name(shard)}.npy"

    def manifest_path(self, shard: int) -> Path:
        return self.dir / "shards" / f"{shard_name(shard)}.json"

    def claim_path(self, shard: int) -> Path:
        return self.dir / "shards" / f"{shard_name(shard)}.claim.json"

    # -- the plan ---------------------------------------------------------------------------
    def is_archive(self) -> bool:
        return self.info_path.is_file()

    def read_info(self) -> ArchiveInfo:
        try:
            text = self.info_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ArchiveError(f"{self.dir} is not an archive (it has no {INFO_NAME}); "
                               f"'lookalike archive index SOURCE... --out {self.dir}' creates one.") from None
        return ArchiveInfo.from_json(text, self.info_path)

    def write_info(self, info: ArchiveInfo) -> None:
        atomic_write_text(self.info_path, info.to_json())

    def write_plan(self, shard: int, files: list[FoundFile]) -> None:
        rows = [[f.path, f.size, f.mtime_ns] for f in files]
        atomic_write_text(self.plan_path(shard), json.dumps({"shard": shard, "files": rows}))

    def read_plan(self, shard: int) -> list[FoundFile]:
        data = json.loads(self.plan_path(shard).read_text(encoding="utf-8"))
        return [FoundFile(p, int(s), int(m)) for p, s, m in data["files"]]

    # -- shards -----------------------------------------------------------------------------
    def write_claim(self, shard: int) -> None:
        claim = {"shard": shard, **worker_identity(), "started": time.time()}
        atomic_write_bytes(self.claim_path(shard), lambda f: f.write(json.dumps(claim).encode()), durable=False)

    def read_claim(self, shard: int) -> dict[str, Any] | None:
        try:
            return json.loads(self.claim_path(shard).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def commit_shard(self, shard: int, descriptors: np.ndarray, photos: list[dict], failed: list[dict],
                     worker: dict[str, Any], seconds: float) -> ShardManifest:
        """Write the shard's descriptors, then its manifest (the commit), then drop its claim."""
        data = npy_bytes(np.ascontiguousarray(descriptors, dtype=np.float32))
        atomic_write_bytes(self.descriptors_path(shard), lambda f: f.write(data))
        manifest = ShardManifest(shard, photos, failed, int(descriptors.shape[1]) if descriptors.ndim == 2 else 0,
                                 len(data), digest(data), worker, round(seconds, 3), time.time())
        atomic_write_text(self.manifest_path(shard), json.dumps(asdict(manifest)))
        self.claim_path(shard).unlink(missing_ok=True)
        return manifest

    def read_manifest(self, shard: int) -> ShardManifest | None:
        """The shard's manifest, or None while the shard is not finished."""
        try:
            return ShardManifest(**json.loads(self.manifest_path(shard).read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, TypeError) as exc:
            raise ArchiveError(f"{self.manifest_path(shard)} is damaged ({exc}); delete it and run "
                               f"'lookalike archive index --out {self.dir}' to describe that shard again.") from None

    def finished_shards(self, shards: int) -> set[int]:
        """The shards with a manifest (one listing of ``shards/``, whatever their number: a
        rerun of a 50,000-shard archive does not read 50,000 manifests to know what to skip).
        A manifest is written only after its descriptors, so its presence is the commit; a
        descriptors file lost later is found when the index is built (its size and digest)."""
        try:
            names = os.listdir(self.dir / "shards")
        except FileNotFoundError:
            return set()
        found = {int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit()}
        return {s for s in found if s < shards}

    def drop_stale_claims(self, finished: set[int]) -> int:
        """Remove the claims of finished shards: what a worker killed between writing a
        manifest and removing its claim leaves behind (a claim only says who works on what)."""
        dropped = 0
        for shard in finished:
            if self.claim_path(shard).exists():
                self.claim_path(shard).unlink(missing_ok=True)
                dropped += 1
        return dropped

    def planned_count(self, info: ArchiveInfo, shard: int) -> int:
        """Files planned in ``shard`` (within one listing's shards, every shard is full but the last)."""
        for listing in reversed(info.plan_listings()):
            if shard >= listing["first_shard"]:
                return max(0, min(info.shard_size, listing["files"] - (shard - listing["first_shard"]) * info.shard_size))
        return 0

    def remove_unplanned(self, shards: int) -> int:
        """Remove the plans and shard files numbered ``shards`` and above: what a growth killed
        before it wrote ``archive.json`` leaves (no worker describes a shard archive.json does
        not count), so that the next growth's shard of that number starts clean."""
        removed = 0
        for sub in ("plan", "shards"):
            try:
                names = os.listdir(self.dir / sub)
            except FileNotFoundError:
                continue
            for name in names:
                number = name.split(".", 1)[0]
                if number.isdigit() and int(number) >= shards:
                    (self.dir / sub / name).unlink(missing_ok=True)
                    removed += 1
        return removed

    @contextmanager
    def lock(self) -> Iterator[None]:
        """The driver's exclusive lock (one ``archive index`` run per archive at a time)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = try_index_lock(self.dir, wait_s=2.0)
        if fd is None:
            raise ArchiveError(f"Another 'lookalike archive index' is writing {self.dir} "
                               f"(lock {self.dir / 'index.lock'}); wait for it to finish.")
        try:
            yield
        finally:
            os.close(fd)
