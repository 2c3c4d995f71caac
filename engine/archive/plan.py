"""Listing an archive's sources once and splitting the files into shards.

The listing is the desktop indexer's (:func:`engine.indexing.indexer.walk_images`: same
image extensions, hidden and system folders skipped, symlink loops broken). A file reached
from two sources (nested folders) is planned once. The plan is written before any shard is
described and never changes afterwards, so a shard number always means the same files on
every rerun and every worker; photos added to the sources later belong in a new archive
(or a new plan: docs/SCALE.md).
"""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Callable

from engine.archive.layout import ArchiveError, ArchiveInfo, ArchiveLayout
from engine.descriptors.methods import Method
from engine.errors import LookalikeError
from engine.indexing.indexer import FoundFile, walk_images
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


def checked_sources(sources: list[str]) -> list[str]:
    """Absolute paths of the source folders, or a clear error for one that is not a folder."""
    out = []
    for s in sources:
        path = os.path.abspath(os.path.expanduser(s))
        if not os.path.isdir(path):
            raise LookalikeError(f"Folder not found: {s}")
        out.append(path)
    return out


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
    shards = (len(files) + shard_size - 1) // shard_size
    for shard in range(shards):
        layout.write_plan(shard, files[shard * shard_size:(shard + 1) * shard_size])
    info = ArchiveInfo(method.name, config_json(method), weights, weights_fingerprint(weights), sources,
                       shard_size, shards, len(files), ignored, failed, time.time())
    layout.write_info(info)  # last: the plan exists once archive.json does
    emit(f"listed {len(files)} photos in {time.monotonic() - t0:.1f} s: {shards} shards of up to {shard_size}")
    return info


def _check_same_plan(layout: ArchiveLayout, info: ArchiveInfo, sources: list[str], method: Method | None,
                     weights: str | None, shard_size: int | None) -> None:
    """A rerun continues the recorded plan: asking for other sources, another method or other
    settings is an error (silently mixing two plans would mix two kinds of descriptors)."""
    asked: dict[str, Any] = {}
    if sources and checked_sources(sources) != info.sources:
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
