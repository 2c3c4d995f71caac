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
from engine.nn.features import CPU_FORWARD_BATCH, FeatureExtractor
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
    """The simplest thing a user could run: full decode, resize, describe one at a time on
    PyTorch eager with its defaults (all cores, contiguous NCHW), no decode overlap."""
    method = create_method(method_name)
    extractor = FeatureExtractor(method.config.backbone, "cpu", channels_last=False, batch_size=1, runtime="torch")
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


class _TimedExtractor:
    """A FeatureExtractor that adds up the time spent in its forward passes (``feature_maps``),
    so a method's describe splits into forward and pooling whatever its taps and scales."""

    def __init__(self, inner: FeatureExtractor):
        self.inner = inner
        self.seconds = 0.0

    def feature_maps(self, *args, **kwargs):
        t = time.perf_counter()
        try:
            return self.inner.feature_maps(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t

    def __getattr__(self, name):
        return getattr(self.inner, name)


def measure_stages(paths: list[Path], method, side: int, repeat: int = 2) -> dict:
    """Single-thread milliseconds per image of each indexing stage at the method's settings:
    decode + resize to the decode side (``load_image`` as the indexer calls it: JPEG draft,
    then resize), the trunk forward at every scale, pooling. Their sum is the CPU time one
    image costs; the CPU bound is cores x 1000 / that sum."""
    decode_ms = _median_ms(lambda p: load_image(p, side), paths)
    images = [load_image(p, side) for p in paths[:6]]
    out = {}
    for runtime in ("auto", "torch"):
        timed = _TimedExtractor(FeatureExtractor(method.config.backbone, "cpu", runtime=runtime))
        with torch_threads(1):
            method.describe(images[:1], timed)  # export (ONNX) and warm-up
            timed.seconds = 0.0
            t = time.perf_counter()
            for _ in range(repeat):
                for im in images:
                    method.describe([im], timed)
            n = repeat * len(images)
            describe_ms, forward_ms = (time.perf_counter() - t) * 1000 / n, timed.seconds * 1000 / n
        if runtime == "auto":
            out.update(runtime=timed.inner.runtime_description(), forward_ms=forward_ms,
                       pooling_ms=max(0.0, describe_ms - forward_ms), describe_ms=describe_ms)
        else:
            out["forward_torch_ms"] = forward_ms
    out["decode_resize_ms"] = decode_ms
    out["onnx_vs_torch_forward"] = out["forward_torch_ms"] / out["forward_ms"]
    out["cpu_ms_per_image"] = decode_ms + out["describe_ms"]
    out["cpu_bound_images_per_s"] = available_cores() * 1000.0 / out["cpu_ms_per_image"]
    return out


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
                 "scales": list(method.config.to_dict().get("scales") or ()),
                 "jpeg_megapixels": 12.0, "n_images": n_images}
    out.update(measure_decode(paths, side))
    log(f"decode full {out['decode_ms']:.0f} ms, draft {out['decode_draft_ms']:.0f} ms")

    plan = plan_threads(torch.device("cpu"))
    t = time.perf_counter()
    extractor = get_extractor(method.config.backbone, "cpu")
    out["model_load_s"] = time.perf_counter() - t
    # What the app does on the CPU (engine.nn.features.CPU_FORWARD_BATCH), first: the process
    # peak right after it is the app's indexing peak (the stage timings below run the PyTorch
    # eager model at full size as well, and larger batches take more memory).
    app_batch = CPU_FORWARD_BATCH
    app_run = run_pipeline(folder, method_name, extractor, app_batch, work)
    app_run["forward_batch"] = app_batch
    out["app_forward_batch"] = app_batch
    out["app_images_per_s"] = app_run["images_per_s"]
    out["peak_rss_mb_app_batch"] = peak_rss_mb()
    log(f"pipeline batch {app_batch} (the app's): {app_run['images_per_s']:.2f} images/s, "
        f"peak RSS {out['peak_rss_mb_app_batch']:.0f} MB")
    stages = measure_stages(paths, method, side)
    out["stages"] = stages
    out["forward_ms"] = stages["forward_ms"]
    out["onnx_vs_torch_forward"] = stages["onnx_vs_torch_forward"]
    log(f"stages (1 thread, ms/image): decode+resize {stages['decode_resize_ms']:.0f}, "
        f"forward {stages['forward_ms']:.0f} ({stages['runtime']}; PyTorch eager {stages['forward_torch_ms']:.0f}), "
        f"pooling {stages['pooling_ms']:.0f}")
    # The bound: every core busy with some stage of some image, none idle (total CPU time per
    # image over the cores), not max(decode, forward) as if each stage had a core of its own.
    out["bound_images_per_s"] = stages["cpu_bound_images_per_s"]
    out["torch_threads_planned"], out["decode_workers_planned"] = plan.torch_threads, plan.decode_workers

    rows = []
    for b in batch_sizes:
        r = app_run if b == app_batch else run_pipeline(folder, method_name, extractor, b, work)
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
    out["other_formats"] = bench_other_formats(extractor, work, log, n=max(4, n_images // 4))
    out["peak_rss_mb_with_24mp_and_plain_loop"] = peak_rss_mb()  # the process peak after every run above
    return out


def bench_other_formats(extractor, work: Path, log, n: int = 6) -> list[dict]:
    """The pipeline on 24 MP JPEGs and on 12 MP HEICs (when pillow-heif is installed), at the
    default settings: what a newer phone or camera hands the indexer."""
    from .jpegs import make_jpegs, make_photo, source_photos

    rows = []
    big = work / "jpegs24"
    make_jpegs(big, n, size=(5657, 4243))
    rows.append({"kind": "24 MP JPEG", **run_pipeline(big, DEFAULT_METHOD, extractor, 1, work)})
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
    except ImportError:
        log("pillow-heif not installed: no HEIC row")
        return rows
    heic = work / "heic12"
    heic.mkdir(exist_ok=True)
    sources = source_photos()
    for i in range(n):
        make_photo(i, (4000, 3000), sources).save(heic / f"photo_{i:03d}.heic", quality=90)
    rows.append({"kind": "12 MP HEIC", **run_pipeline(heic, DEFAULT_METHOD, extractor, 1, work)})
    for r in rows:
        log(f"{r['kind']}: {r['images_per_s']:.2f} images/s")
    return rows


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
