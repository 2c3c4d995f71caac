"""``archive status``: how far an archive is, without reading its manifests.

Shards finished and in progress come from one listing of ``shards/`` (a claim names the host
and process describing a shard now; a claim without a live run behind it is a shard that was
interrupted and will be described again); photos, failures and memory from the index
manifest when the index is built.
"""
from __future__ import annotations

import os
from typing import Any

from engine.archive.layout import ArchiveLayout
from engine.archive.merge import read_index_manifest


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
        "index": None,
    }
    if index is not None:
        out["index"] = {"kind": index.kind, "photos": index.photos, "failed": index.failed, "dim": index.dim,
                        "ann": index.ann, "bytes_per_photo": index.bytes_per_photo,
                        "ram_mb_per_million": round(index.bytes_per_photo["ram"], 1),
                        "seconds": index.seconds, "built": index.built}
    return out


def _claim(layout: ArchiveLayout, shard: int) -> dict[str, Any] | None:
    if not layout.claim_path(shard).exists():
        return None
    return layout.read_claim(shard)
