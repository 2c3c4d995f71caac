"""Indexing benchmarks: decode (full vs draft), forward, the bound, the pipeline, a plain loop."""
from __future__ import annotations

import resource
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from engine.api import get_extractor
from engine.store.catalog import CatalogStore
from engine.nn.features import FeatureExtractor
from engine.imaging.images import load_image, resize_longest_side
from engine.indexing.indexer import Indexer, available_cores, plan_threads, torch_threads
from engine.descriptors.methods import DEFAULT_METHOD, create_method


def _median_ms(fn, items, repeat: int = 1) -> float:
    times = []
    for _ in range(repeat):
        for it in items:
            t = time.perf_counter()
            fn(it)
            times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def decode_full(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def measure_decode(paths: list[Path], side: int) -> dict:
    decode_full(paths[0])  # warm the file cache and Pillow
    return {
        "decode_ms": _median_ms(decode_full, paths),
        "decode_draft_ms": _median_ms(lambda p: load_image(p, side), paths),
    }


def measure_forward(method, extractor, images: list[Image.Image], threads: int, batch: int, repeat: int = 2) -> float:
    """Median ms per image of ``method.describe`` on decoded images, ``batch`` at a time."""
    with torch_threads(threads):
        method.describe(images[:batch], extractor)  # warm-up (allocators, oneDNN kernels)
        times = []
        for _ in range(repeat):
            for s in range(0, len(images) - batch + 1, batch):
                t = time.perf_counter()
                method.describe(images[s:s + batch], extractor)
                times.append((time.perf_counter() - t) * 1000 / batch)
    return statistics.median(times)


def run_pipeline(paths_dir: Path, method_name: str, extractor, forward_batch: int, work: Path) -> dict:
    """Index ``paths_dir`` into a fresh catalog with the real :class:`Indexer`; images/s."""
    cat = CatalogStore(work / f"cat-{forward_batch}-{time.time_ns()}")
    try:
        method = create_method(method_name)
        cat.ensure_method(method.name, method.config.to_dict())
        fid = cat.add_folder(paths_dir)
        idx = Indexer(cat, method, extractor, batch_size=max(8, forward_batch), forward_batch=forward_batch)
        t = time.perf_counter()
        report = idx.run([(fid, str(paths_dir))])
        dt = time.perf_counter() - t
        return {"images": report.indexed, "failed": len(report.failed), "seconds": dt,
                "images_per_s": report.indexed / dt, "torch_threads": idx.torch_threads,
                "decode_workers": idx.decode_workers}
    finally:
        cat.close()


def run_plain_loop(paths: list[Path], method_name: str, side: int) -> dict:
    """The simplest thing a user could run: full decode, resize, describe one at a time,
    torch defaults (all cores, contiguous NCHW), no decode overlap."""
    method = create_method(method_name)
    extractor = FeatureExtractor(method.config.backbone, "cpu", channels_last=False, batch_size=1)
    extractor.backbone.to(memory_format=torch.contiguous_format)  # the cached model, as torch builds it
    default_threads = available_cores()  # torch's default intra-op threads
    with torch_threads(default_threads):
        method.describe([resize_longest_side(decode_full(paths[0]), side)], extractor)  # warm-up
        t = time.perf_counter()
        rows = []
        for p in paths:
            img = resize_longest_side(decode_full(p), side)
            rows.append(method.describe([img], extractor)[0])
        dt = time.perf_counter() - t
    extractor.backbone.to(memory_format=torch.channels_last)  # back to what FeatureExtractor uses
    return {"images": len(paths), "seconds": dt, "images_per_s": len(paths) / dt, "torch_threads": default_threads}


def bench_indexing(n_images: int, batch_sizes: list[int], work: Path, log) -> dict:
    method_name = DEFAULT_METHOD
    method = create_method(method_name)
    side = method.decode_side()
    folder = work / "jpegs"
    from .jpegs import make_jpegs

    t = time.perf_counter()
    paths = make_jpegs(folder, n_images)
    log(f"generated {n_images} synthetic 12 MP JPEGs in {time.perf_counter() - t:.1f} s "
        f"(mean {np.mean([p.stat().st_size for p in paths]) / 1e6:.1f} MB)")
    out: dict = {"method": method_name, "backbone": method.config.backbone, "image_side": side,
                 "jpeg_megapixels": 12.0, "n_images": n_images}
    out.update(measure_decode(paths, side))
    log(f"decode full {out['decode_ms']:.0f} ms, draft {out['decode_draft_ms']:.0f} ms")

    plan = plan_threads(torch.device("cpu"))
    t = time.perf_counter()
    extractor = get_extractor(method.config.backbone, "cpu")
    out["model_load_s"] = time.perf_counter() - t
    images = [load_image(p, side) for p in paths[: max(4, min(8, n_images))]]
    fwd = {}
    for threads in sorted({1, plan.torch_threads, available_cores()}):
        for b in (1, 4):
            if b <= len(images):
                fwd[f"t{threads}_b{b}"] = measure_forward(method, extractor, images, threads, b)
    out["forward_ms_by_threads_batch"] = fwd
    out["forward_ms"] = measure_forward(method, extractor, images, plan.torch_threads, 1)
    log(f"forward {fwd}")
    # The bound: decode (one decode thread) and forward (the planned torch threads) overlap perfectly.
    out["bound_images_per_s"] = 1000.0 / max(out["decode_draft_ms"], out["forward_ms"])

    rows = []
    for b in batch_sizes:
        r = run_pipeline(folder, method_name, extractor, b, work)
        r["forward_batch"] = b
        rows.append(r)
        log(f"pipeline batch {b}: {r['images_per_s']:.2f} images/s")
    out["pipeline_by_batch"] = rows
    best = max(rows, key=lambda r: r["images_per_s"])
    out["index_images_per_s"] = best["images_per_s"]
    out["index_best_batch"] = best["forward_batch"]
    out["index_vs_bound"] = best["images_per_s"] / out["bound_images_per_s"]
    out["peak_rss_mb"] = peak_rss_mb()
    plain = run_plain_loop(paths, method_name, side)
    out["plain_loop_images_per_s"] = plain["images_per_s"]
    out["speedup_vs_plain_loop"] = best["images_per_s"] / plain["images_per_s"]
    log(f"plain loop {plain['images_per_s']:.2f} images/s")
    return out


def bench_dataset(name: str, extractor, forward_batch: int, work: Path) -> dict | None:
    """Pipeline throughput on a shared dataset's real photos (None when absent)."""
    from .jpegs import SHARED

    d = SHARED / name / "images"
    if not d.is_dir():
        return None
    r = run_pipeline(d, DEFAULT_METHOD, extractor, forward_batch, work)
    with Image.open(next(p for p in sorted(d.iterdir()) if p.is_file())) as im:
        r["example_size"] = list(im.size)
    r["dataset"] = name
    return r
