"""``python -m bench.archive [--photos N] [--size WxH] [--index-n N] [--json PATH]``: archives.

On one folder of generated photos (bench/jpegs.py), with the default method:

* **desktop**: the desktop :class:`engine.indexing.indexer.Indexer` with the app's thread plan.
* **ray**: ``archive index`` on the embedded local Ray instance, one 1-CPU worker per core.
  ``end_to_end`` counts everything (Ray start-up, workers importing torch and loading the
  model, listing, committing); ``steady`` is each worker's photos over the seconds it spent
  in its shards, summed over the workers (what a long run approaches).
* **overhead**: desktop images/s over Ray's (steady and end to end), and per core running
  the network (the desktop's torch threads vs one per Ray worker).
* **decode**: one core decoding photos for the method (header, content hash, the re-read
  check: the worker's own decode), the bound of a GPU worker, whose network is fed by the
  decode threads on its CPU cores.
* **index**: :func:`engine.archive.merge.build_archive_index` over a synthetic archive of
  ``--index-n`` photos (the default method's dimension), in a child process (its peak RSS).

and the extrapolations docs/SCALE.md quotes: core-hours and machine-hours per 10M photos for
CPU workers from the steady rate, for a GPU worker from the decode rate (an upper bound on
its speed: no GPU on the benchmark machine, the GPU's own forward rate is not measured), and
the index build at 100M photos from the per-photo build times.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PER_10M = 10_000_000
MACHINE_CORES = 16  # a typical cluster node (and the GPU machine this project can borrow)
GPU_DECODE_CORES = MACHINE_CORES - 1  # one core feeds the GPU, the others decode


def log(msg: str) -> None:
    print(f"[bench.archive {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def desktop_rate(photos: Path, work: Path) -> dict:
    from engine.api import Collection
    from engine.descriptors.methods import DEFAULT_METHOD

    import torch

    from engine.indexing.indexer import plan_threads

    col = Collection.open(work / "desktop", device="cpu")
    t = time.perf_counter()
    report = col.index(method=DEFAULT_METHOD, folders=[str(photos)])
    dt = time.perf_counter() - t
    col.close()
    plan = plan_threads(torch.device("cpu"))
    return {"photos": report.indexed, "failed": len(report.failed), "seconds": round(dt, 2),
            "images_per_s": round(report.indexed / dt, 3), "torch_threads": plan.torch_threads,
            "decode_threads": plan.decode_workers}


def ray_rate(photos: Path, work: Path, shard_size: int) -> dict:
    from engine.archive.layout import ArchiveLayout
    from engine.archive.runner import index_archive
    from engine.indexing.indexer import available_cores

    out = work / "archive"
    report = index_archive(out, [str(photos)], shard_size=shard_size, workers=available_cores())
    layout = ArchiveLayout(out)
    busy: dict[int, list[float]] = {}
    for shard in range(report.shards):
        m = layout.read_manifest(shard)
        photos_s = busy.setdefault(m.worker["pid"], [0, 0.0])
        photos_s[0] += len(m.photos) + len(m.failed)
        photos_s[1] += m.seconds
    steady = sum(n / s for n, s in busy.values() if s > 0)
    return {**report.to_json(), "end_to_end_images_per_s": round((report.photos + report.failed) / report.seconds, 3),
            "steady_images_per_s": round(steady, 3), "workers_that_described": len(busy),
            "per_worker": [{"photos": n, "busy_s": round(s, 2)} for n, s in busy.values()]}


def decode_rate(photos: Path) -> dict:
    """Photos per second one core decodes for the default method, as a worker does."""
    from engine.descriptors.methods import DEFAULT_METHOD, create_method
    from engine.indexing.indexer import _decode, walk_images

    side = create_method(DEFAULT_METHOD).decode_side()
    files = [f for f in walk_images(photos) if not isinstance(f, tuple)]
    t = time.perf_counter()
    for f in files:
        _decode(f, 0, side)
    dt = time.perf_counter() - t
    return {"photos": len(files), "decode_side": side, "seconds": round(dt, 2), "images_per_s": round(len(files) / dt, 3)}


def synthetic_archive(directory: Path, n: int, dim: int, shard_size: int) -> None:
    """An archive whose shards hold ``n`` synthetic descriptors (bench/descriptors.py), as
    ``archive index`` leaves it, for timing the index build alone."""
    from engine.archive.layout import ArchiveInfo, ArchiveLayout
    from engine.archive.plan import config_json
    from engine.descriptors.methods import DEFAULT_METHOD, create_method

    from .descriptors import DescriptorModel

    layout = ArchiveLayout(directory)
    shards = -(-n // shard_size)
    method = create_method(DEFAULT_METHOD)
    layout.write_info(ArchiveInfo(method.name, config_json(method), None, "builtin", ["/synthetic"], shard_size,
                                  shards, n, created=time.time()))
    model = DescriptorModel(dim, themes=2000)
    for s in range(shards):
        rows = min(shard_size, n - s * shard_size)
        photos = [{"path": f"/synthetic/{s:05d}/{i:05d}.jpg", "size": 3_000_000, "mtime_ns": 0, "hash": "0" * 32,
                   "width": 4000, "height": 3000, "taken": None} for i in range(rows)]
        layout.commit_shard(s, model.sample(rows, s), photos, [], {"host": "synthetic", "pid": 0}, 0.0)


def index_build(work: Path, n: int, dim: int = 1280, shard_size: int = 2000) -> dict:
    """Build the index of a synthetic archive in a child process: times and its peak RSS."""
    directory = work / "synthetic-archive"
    t = time.perf_counter()
    synthetic_archive(directory, n, dim, shard_size)
    log(f"synthetic archive of {n} photos written in {time.perf_counter() - t:.1f} s")
    code = ("import json, sys; from engine.archive.merge import build_archive_index; "
            "from engine.search.ann import AnnConfig; "
            "m = build_archive_index(sys.argv[1], AnnConfig(kind='ivfpq')); "
            "print(json.dumps({'seconds': m.seconds, 'bytes_per_photo': m.bytes_per_photo, 'nlist': m.ann['nlist'], "
            "'train_size': m.ann['train_size']}))")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = subprocess.run([sys.executable, "-c", code, str(directory)], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], check=True)
    peak_mb = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    built = json.loads(out.stdout.strip().splitlines()[-1])
    return {"photos": n, "dim": dim, "shard_size": shard_size, **built, "peak_rss_mb": round(peak_mb, 1)}


def extrapolate(ray: dict, decode: dict, index: dict) -> dict:
    """Machine-hours per 10M photos and the 100M index build, from the measured rates (linear
    scaling assumed: shards are independent, each worker reads its own files)."""
    per_core = ray["steady_images_per_s"] / max(1, ray["workers_that_described"])
    cpu_core_hours = PER_10M / per_core / 3600
    gpu = {}
    for label, d in decode.items():
        rate = d["images_per_s"] * GPU_DECODE_CORES
        gpu[f"gpu_worker_decode_bound_images_per_s_{label}"] = round(rate, 1)
        gpu[f"gpu_machine_hours_per_10M_{label}_({GPU_DECODE_CORES}_decode_cores)"] = round(PER_10M / rate / 3600, 2)
    s = index["seconds"]
    per_photo = {k: s[k] / index["photos"] for k in ("tables", "add")}
    b = index["bytes_per_photo"]
    return {
        "cpu_worker_images_per_s_per_core": round(per_core, 3),
        "cpu_core_hours_per_10M": round(cpu_core_hours, 1),
        f"cpu_{MACHINE_CORES}core_machine_hours_per_10M": round(cpu_core_hours / MACHINE_CORES, 1),
        **gpu,
        "index_100M_tables_hours": round(per_photo["tables"] * 1e8 / 3600, 2),
        "index_100M_add_hours_at_measured_nlist": round(per_photo["add"] * 1e8 / 3600, 2),
        "index_ram_mb_per_million": round(b["ram"], 1),
        "refine_disk_gb_per_million": round(b["refine"] / 1000, 2),
        "raw_disk_gb_per_million": round(b["raw"] / 1000, 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.archive", description=__doc__.split("\n")[0])
    p.add_argument("--photos", type=int, default=96, help="generated photos (default 96)")
    p.add_argument("--size", default="2048x1536", help="their size (default 2048x1536, 3 MP)")
    p.add_argument("--shard-size", type=int, default=12, help="photos per shard of the Ray run (default 12)")
    p.add_argument("--index-n", type=int, default=100_000, help="photos of the synthetic archive indexed (default 100k)")
    p.add_argument("--decode-12mp", type=int, default=8, help="12 MP photos whose decode is timed (default 8)")
    p.add_argument("--json", metavar="PATH", default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    from .__main__ import machine
    from .jpegs import make_jpegs

    w, h = (int(v) for v in args.size.lower().split("x"))
    result: dict = {"machine": machine(), "photo_size": [w, h]}
    with tempfile.TemporaryDirectory(prefix="lookalike-bench-archive-") as tmp:
        work = Path(tmp)
        log(f"index build over {args.index_n} synthetic photos")
        result["index"] = index_build(work, args.index_n)
        log(f"generating {args.photos} photos of {w}x{h}")
        make_jpegs(work / "photos", args.photos, (w, h))
        log(f"decode rate (one core), the run's photos and {args.decode_12mp} of 4000x3000")
        make_jpegs(work / "photos-12mp", args.decode_12mp, (4000, 3000), seed=1)
        result["decode"] = {"run_photos": decode_rate(work / "photos"), "12mp": decode_rate(work / "photos-12mp")}
        log("desktop indexer")
        result["desktop"] = desktop_rate(work / "photos", work)
        log("archive index on the local Ray instance")
        result["ray"] = ray_rate(work / "photos", work, args.shard_size)
    desktop, ray = result["desktop"], result["ray"]
    # Per core of the network: the desktop runs the network on its torch threads (decode
    # overlaps on another thread); each 1-CPU Ray worker decodes and describes on its core.
    result["overhead"] = {
        "steady": round(desktop["images_per_s"] / ray["steady_images_per_s"], 3),
        "end_to_end": round(desktop["images_per_s"] / ray["end_to_end_images_per_s"], 3),
        "per_network_core": round((desktop["images_per_s"] / desktop["torch_threads"])
                                  / (ray["steady_images_per_s"] / ray["workers_that_described"]), 3)}
    result["extrapolation"] = extrapolate(result["ray"], result["decode"], result["index"])
    result["machine"]["loadavg_end"] = list(os.getloadavg())
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
