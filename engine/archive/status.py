"""``archive status``: how far an archive is, without reading its manifests.

Shards finished and in progress come from one listing of ``shards/`` (a claim names the host
and process describing a shard now; a claim without a live run behind it is a shard that was
interrupted and will be described again); photos, failures and memory from the index
manifest when the index is built; what the last listing of the sources found new, gone and
changed from ``listing.json`` (written by :func:`engine.archive.plan.grow_plan`).
"""
from __future__ import annotations

import json
import os
from typing import Any

from engine.archive.layout import ArchiveLayout
from engine.archive.merge import index_is_current, read_index_manifest


def archive_status(directory: str | os.PathLike) -> dict[str, Any]:
    layout = ArchiveLayout(directory)
    info = layout.read_info()
    finished = layout.finished_shards(info.shards)
    claims = [c for s in range(info.shards) if s not in finished and (c := _claim(layout, s)) is not None]
    index = read_index_manifest(layout)
    out: dict[str, Any] = {
        "archive": str(layout.dir), "method": info.method, "config": info.config,
        "weights": info.weights or "built-in", "sources": info.sources, "planned_photos": info.files,
        "ignored": info.ignored, "listing_failed": len(info.listing_failed), "shard_size": info.shard_size,
        "shards": info.shards, "finished_shards": len(finished), "claimed_shards": claims,
        "listings": len(info.plan_listings()), "listed": info.listed or info.created,
        "last_listing": _last_listing(layout), "index": None,
    }
    if index is not None:
        out["index"] = {"kind": index.kind, "photos": index.photos, "failed": index.failed, "dim": index.dim,
                        "ann": index.ann, "bytes_per_photo": index.bytes_per_photo,
                        "ram_mb_per_million": round(index.bytes_per_photo["ram"], 1),
                        "seconds": index.seconds, "built": index.built, "sidecars": index.sidecars,
                        "current": index_is_current(layout, info.shards)}
    return out


def _claim(layout: ArchiveLayout, shard: int) -> dict[str, Any] | None:
    if not layout.claim_path(shard).exists():
        return None
    return layout.read_claim(shard)


def _last_listing(layout: ArchiveLayout) -> dict[str, Any] | None:
    """The counts of ``listing.json`` (its path lists stay in the file), None before a rerun listed."""
    try:
        data = json.loads(layout.listing_path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return {k: v for k, v in data.items() if not isinstance(v, list)}
