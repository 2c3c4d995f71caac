"""``python -m bench [--quick] [--docs PATH] [--json PATH]``: run the benchmarks, print JSON.

``--quick`` (< 60 s on 2 idle cores) uses fewer images and smaller descriptor sets: the
ANN figure is then measured at ``search_ann_n`` vectors and ``search_ann_1m_p95_ms`` is null.
The full run writes docs/BENCHMARKS.md and its plots (``--no-docs`` to skip).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

QUICK = {"n_images": 6, "batch_sizes": [1, 4], "sizes": [10_000, 100_000], "ann_n": 10_000,
         "compare_n": 3_000, "queries": 30, "datasets": []}
FULL = {"n_images": 24, "batch_sizes": [1, 2, 4, 8, 16], "sizes": [10_000, 100_000, 1_000_000],
        "ann_n": 1_000_000, "compare_n": 50_000, "queries": 200, "datasets": ["ukbench56", "holidays_samples"]}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def machine() -> dict:
    import faiss
    import PIL
    import torch

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    from engine.indexing.indexer import available_cores

    return {"cpu": cpu, "cores": available_cores(), "ram_gb": mem_gb, "python": sys.version.split()[0],
            "torch": torch.__version__, "faiss": faiss.__version__, "pillow": PIL.__version__,
            "cuda": torch.cuda.is_available(), "loadavg_start": list(os.getloadavg())}


def drop_to_results(work: Path, n: int = 10_000) -> dict:
    """Query descriptor (decode a 12 MP JPEG, forward) + exact search over ``n`` vectors: ms."""
    import numpy as np

    from engine.search.ann import VectorIndex
    from engine.api import get_extractor
    from engine.imaging.images import load_image
    from engine.descriptors.methods import DEFAULT_METHOD, create_method

    from .descriptors import DescriptorModel

    m = create_method(DEFAULT_METHOD)
    ex = get_extractor(m.config.backbone, "cpu")
    paths = sorted((work / "jpegs").glob("*.jpg"))[:5]
    # The index has the dimension of the method's search vectors (no fitted state here: for a
    # PFA method that is its full width, an upper bound on the app's 400 dimensions).
    dim = m.search_vectors(m.describe_query(load_image(paths[0], m.decode_side()), ex)[None, :], None).shape[1]
    index = VectorIndex.build(DescriptorModel(dim, themes=500).sample(n, 3))
    from engine.indexing.indexer import available_cores, query_threads, torch_threads

    out = {"drop_to_results_threads": query_threads()}
    # What the app does (engine.api: cores not already busy), all cores, and one thread.
    for label, threads in (("", query_threads()), ("_allcores", available_cores()), ("_1thread", 1)):
        times = []
        with torch_threads(threads):
            for p in paths:
                t = time.perf_counter()
                q = m.describe_query(load_image(p, m.decode_side()), ex)
                v = m.search_vectors(q[None, :], None)
                index.search(np.ascontiguousarray(v, dtype=np.float32), 20)
                times.append((time.perf_counter() - t) * 1000)
        out[f"drop_to_results_10k{label}_ms"] = float(np.median(times))
        out[f"drop_to_results_10k{label}_max_ms"] = float(max(times))
    return out


def ui_probe(photos: Path, work: Path) -> dict:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "bench.ui", str(photos), str(work / "ui-catalog")],
                       capture_output=True, text=True, cwd=REPO, env=env, timeout=1800)
    if r.returncode != 0:
        log(f"ui probe failed: {r.stderr[-800:]}")
        return {"ui_max_block_ms": None, "ui_error": r.stderr[-300:]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small run (< 60 s on 2 idle cores)")
    ap.add_argument("--docs", default=None, help="write the Markdown report here (full run default: docs/BENCHMARKS.md)")
    ap.add_argument("--no-docs", action="store_true")
    ap.add_argument("--json", default=None, help="also save the JSON here")
    ap.add_argument("--skip", default="", help="comma list of sections to skip: index,search,ui,datasets")
    args = ap.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    skip = set(filter(None, args.skip.split(",")))
    t0 = time.perf_counter()
    result: dict = {"mode": "quick" if args.quick else "full", "config": cfg, "machine": machine()}
    with tempfile.TemporaryDirectory(prefix="lookalike-bench-") as tmp:
        work = Path(tmp)
        from .indexing import bench_dataset, bench_indexing

        if "index" not in skip:
            idx = bench_indexing(cfg["n_images"], cfg["batch_sizes"], work, log)
            result["indexing"] = idx
            for k in ("decode_ms", "decode_draft_ms", "forward_ms", "bound_images_per_s", "index_images_per_s",
                      "index_vs_bound", "peak_rss_mb", "plain_loop_images_per_s", "speedup_vs_plain_loop",
                      "onnx_vs_torch_forward", "app_images_per_s", "peak_rss_mb_app_batch", "app_forward_batch"):
                result[k] = idx[k]
            result.update(drop_to_results(work))
            if "datasets" not in skip:
                from engine.api import get_extractor
                from engine.descriptors.methods import DEFAULT_METHOD, create_method

                ex = get_extractor(create_method(DEFAULT_METHOD).config.backbone, "cpu")
                result["datasets"] = [r for r in (bench_dataset(d, ex, idx["index_best_batch"], work)
                                                  for d in cfg["datasets"]) if r]
        if "ui" not in skip:
            photos = work / "jpegs"
            if not photos.is_dir():
                from .jpegs import make_jpegs

                make_jpegs(photos, cfg["n_images"])
            ui = ui_probe(photos, work)
            result["ui"] = ui
            result["ui_max_block_ms"] = ui.get("ui_max_block_ms")
        if "search" not in skip:
            from .search import bench_search

            s = bench_search(cfg["sizes"], cfg["ann_n"], cfg["compare_n"], cfg["queries"], log)
            result["search"] = s
            for k in ("search_exact_100k_p95_ms", "search_ann_1m_p95_ms", "search_ann_p95_ms", "search_ann_n",
                      "ann_recall_at_10"):
                result[k] = s[k]
            result["bytes_per_image"] = s["bytes_per_image"]
    result["machine"]["loadavg_end"] = list(os.getloadavg())
    result["seconds"] = time.perf_counter() - t0
    from .report import targets

    result["targets"] = targets(result)
    text = json.dumps(result, indent=1, default=float)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    if not args.no_docs and (args.docs or not args.quick):
        from .report import write_report

        write_report(result, Path(args.docs) if args.docs else REPO / "docs" / "BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
