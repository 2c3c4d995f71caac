"""Listing an archive's sources and splitting the files into shards; growing the plan later.

The listing is the desktop indexer's (:func:`engine.indexing.indexer.walk_images`: same
image extensions, hidden and system folders skipped, symlink loops broken). A file reached
from two sources (nested folders) is planned once. The first plan is written before any
shard is described.

A plan only grows (:func:`grow_plan`, run by every ``archive index`` on an existing archive
unless ``--no-relist``): the recorded sources are listed again and the files no shard plans
yet are appended as new shards numbered after the last one. A planned shard's number and
files never change, so finished shards are still skipped and every worker still agrees on
what a shard holds. Files the plan has and the listing does not find now ("gone") or finds
with another size or modification time after they were described ("changed") are counted,
listed in ``listing.json`` and otherwise left as they are: a gone photo that was described
stays in the index with its record (the search shows it as not reachable), one not yet
described fails when its shard is described ("deleted"); a changed photo keeps the
descriptor of the version that was described (describing it again would put two rows of one
path in the shards; a new archive describes the new versions). Files changed before their
shard was described are described as they are then and not reported.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

from engine.archive.layout import ArchiveError, ArchiveInfo, ArchiveLayout
from engine.descriptors.methods import Method
from engine.errors import LookalikeError
from engine.indexing.indexer import FoundFile, walk_images
from engine.store.atomic import atomic_write_text
from engine.store.catalog import weights_fingerprint

log = logging.getLogger(__name__)

# Photos per shard: a shard is the unit of work lost when a worker dies and of what a rerun
# skips. 2,000 photos are ~7 min of one CPU core's work at the default method (4.9 images/s
# per 1-CPU worker, bench/archive.py) and 10 MB of descriptors; 100M photos are then 50,000
# shards (docs/SCALE.md).
DEFAULT_SHARD_SIZE = 2000


def config_json(method: Method) -> dict[str, Any]:
    """The method's settings as ``archive.json`` holds them (JSON: tuples are lists)."""
    return json.loads(json.dumps(method.config.to_dict()))


def list_sources(sources: list[str]) -> tuple[list[FoundFile], int, list[dict[str, str]]]:
    """``(image files, non-image files ignored, unreadable folders and files)`` of the
    sources, each file once, in walk order."""
    files: list[FoundFile] = []
    seen: set[str] = set()
    ignored = 0
    failed: list[dict[str, str]] = []
    for source in sources:
        for found in walk_images(source, lambda p, r: failed.append({"path": p, "reason": r})):
            if isinstance(found, tuple):
                ignored += 1
            elif found.path not in seen:
                seen.add(found.path)
                files.append(found)
    return files, ignored, failed


def _absolute(source: str) -> str:
    return os.path.abspath(os.path.expanduser(source))


def checked_sources(sources: list[str]) -> list[str]:
    """Absolute paths of the source folders, or a clear error for one that is not a folder."""
    out = []
    for s in sources:
        path = _absolute(s)
        if not os.path.isdir(path):
            raise LookalikeError(f"Folder not found: {s}")
        out.append(path)
    return out


def _write_shards(layout: ArchiveLayout, first: int, files: list[FoundFile], shard_size: int) -> int:
    """Plans of the shards ``first, first + 1, ...`` holding ``files`` in order; how many."""
    shards = (len(files) + shard_size - 1) // shard_size
    for k in range(shards):
        layout.write_plan(first + k, files[k * shard_size:(k + 1) * shard_size])
    return shards


def plan_archive(layout: ArchiveLayout, sources: list[str], method: Method | None, weights: str | None,
                 shard_size: int | None = None,
                 emit: Callable[[str], None] = lambda message: None) -> ArchiveInfo:
    """The archive's plan: the one already written (checked against what was asked; None /
    empty: as recorded), else a new listing of ``sources`` written as shards and then
    ``archive.json``. A new plan needs ``method``; ``shard_size`` None is ``DEFAULT_SHARD_SIZE``."""
    if shard_size is not None and shard_size < 1:
        raise LookalikeError(f"The shard size must be at least 1 photo, not {shard_size}.")
    if layout.is_archive():
        info = layout.read_info()
        _check_same_plan(layout, info, sources, method, weights, shard_size)
        return info
    if not sources:
        raise LookalikeError(f"{layout.dir} is not an archive yet; give the photo folders to describe.")
    if method is None:
        raise ValueError("a new archive needs a method")
    shard_size = shard_size or DEFAULT_SHARD_SIZE
    sources = checked_sources(sources)
    emit(f"listing {len(sources)} source folder(s)")
    t0 = time.monotonic()
    files, ignored, failed = list_sources(sources)
    if not files:
        raise LookalikeError(f"No photos found in {', '.join(sources)}.")
    shards = _write_shards(layout, 0, files, shard_size)
    now = time.time()
    info = ArchiveInfo(method.name, config_json(method), weights, weights_fingerprint(weights), sources,
                       shard_size, shards, len(files), ignored, failed, now,
                       listings=[{"first_shard": 0, "shards": shards, "files": len(files), "listed": now}], listed=now)
    layout.write_info(info)  # last: the plan exists once archive.json does
    emit(f"listed {len(files)} photos in {time.monotonic() - t0:.1f} s: {shards} shards of up to {shard_size}")
    return info


def _check_same_plan(layout: ArchiveLayout, info: ArchiveInfo, sources: list[str], method: Method | None,
                     weights: str | None, shard_size: int | None) -> None:
    """A rerun continues the recorded plan: asking for other sources, another method or other
    settings is an error (silently mixing two plans would mix two kinds of descriptors)."""
    asked: dict[str, Any] = {}
    if sources and [_absolute(s) for s in sources] != info.sources:  # a source gone now: the listing says so
        asked["sources"] = (", ".join(sources), ", ".join(info.sources))
    if method is not None and (method.name != info.method or config_json(method) != info.config):
        asked["method"] = (f"{method.name} {method.config.to_dict()}", f"{info.method} {info.config}")
    if weights is not None and weights_fingerprint(weights) != info.weights_fingerprint:
        asked["weights"] = (weights, info.weights or "built-in")
    if shard_size is not None and shard_size != info.shard_size:
        asked["shard size"] = (shard_size, info.shard_size)
    if asked:
        what = "; ".join(f"{k}: asked {a}, recorded {r}" for k, (a, r) in asked.items())
        raise ArchiveError(f"{layout.dir} was planned differently ({what}). A rerun continues the recorded plan: "
                           f"leave these options out, or write a new archive with another --out.")


@dataclass
class Relisting:
    """What listing an archive's sources again found. ``new``: photos no shard planned, now
    planned in ``new_shards`` shards from ``first_new_shard``; ``gone``: planned files not
    found; ``changed``: photos of finished shards whose size or modification time is not the
    one described; ``unreadable``: folders and files the listing could not read (their photos
    are among ``gone``); ``listed``: image files found."""

    listed: int
    new: int
    new_shards: int
    first_new_shard: int
    gone: int
    changed: int
    unreadable: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in dataclasses.asdict(self).items()}


def grow_plan(layout: ArchiveLayout, info: ArchiveInfo,
              emit: Callable[[str], None] = lambda message: None) -> tuple[ArchiveInfo, Relisting]:
    """List the archive's sources again and plan the files no shard has yet as new shards
    after the last one (the module docstring says what happens to gone and changed files).
    The new plans are written first and ``archive.json`` last, each atomically: a growth
    killed before the end leaves the recorded plan as it was (its stray plans are removed by
    the next one). Holds the listing in memory, as the first plan does, and reads every
    shard's plan once (a finished shard's manifest only when one of its files looks changed)."""
    t0 = time.monotonic()
    emit(f"listing the {len(info.sources)} source folder(s) again")
    files, ignored, failed = list_sources(info.sources)
    unplanned = {f.path: f for f in files}
    finished = layout.finished_shards(info.shards)
    gone: list[str] = []
    suspects: dict[int, list[FoundFile]] = {}
    for shard in range(info.shards):
        try:
            planned = layout.read_plan(shard)
        except (OSError, ValueError, KeyError) as exc:
            raise ArchiveError(f"The plan of shard {shard} ({layout.plan_path(shard)}) cannot be read ({exc}); "
                               f"the archive's plan is damaged.") from None
        for f in planned:
            now = unplanned.pop(f.path, None)
            if now is None:
                gone.append(f.path)
            elif now != f and shard in finished:
                suspects.setdefault(shard, []).append(now)
    changed: list[str] = []
    for shard, found in suspects.items():  # the plan's stat is not what was described when the file changed first
        m = layout.read_manifest(shard)
        described = {p["path"]: (p["size"], p["mtime_ns"]) for p in m.photos + m.failed}
        changed.extend(f.path for f in found if described.get(f.path) != (f.size, f.mtime_ns))
    new = [f for f in files if f.path in unplanned]  # listing order
    layout.remove_unplanned(info.shards)
    new_shards = _write_shards(layout, info.shards, new, info.shard_size)
    now = time.time()
    report = Relisting(len(files), len(new), new_shards, info.shards, len(gone), len(changed), len(failed),
                       time.monotonic() - t0)
    atomic_write_text(layout.listing_path, json.dumps({**report.to_json(), "time": now, "gone": gone,
                                                       "changed": changed, "unreadable": failed}, indent=1))
    listings = info.plan_listings() + ([{"first_shard": info.shards, "shards": new_shards, "files": len(new),
                                         "listed": now}] if new else [])
    info = dataclasses.replace(info, shards=info.shards + new_shards, files=info.files + len(new), ignored=ignored,
                               listing_failed=failed, listings=listings, listed=now)
    layout.write_info(info)  # last: the new shards exist once archive.json counts them
    emit(f"listed {len(files)} photos again in {report.seconds:.1f} s: {len(new)} new, planned in {new_shards} new "
         f"shard(s); {len(gone)} planned files not found now, {len(changed)} changed since they were described "
         f"(both kept as described; {layout.listing_path} lists them)")
    return info, report
