"""Search benchmarks on synthetic descriptor sets: exact latency vs size, IVF-PQ vs HNSW, ANN at 1M."""
from __future__ import annotations

import gc
import time

import faiss
import numpy as np

from engine.search.ann import AnnConfig, VectorIndex

from .descriptors import DescriptorModel, exact_top_k, recall_at

DIM = 1280  # R-MAC on efficientnet-lite0's 1280-channel head: the default method's dimension


def _fill(model: DescriptorModel, n: int, chunk: int = 50_000) -> np.ndarray:
    """``n`` descriptors stored as fp16 (2 bytes per dimension)."""
    out = np.empty((n, model.dim), np.float16)
    for i, start in enumerate(range(0, n, chunk)):
        out[start:start + chunk] = model.sample(min(chunk, n - start), 1_000 + i)
    return out


def _latencies(index: VectorIndex, queries: np.ndarray, k: int) -> tuple[list[float], np.ndarray]:
    index.search(queries[:1], k)  # warm-up
    times, rows = [], []
    for q in queries:
        t = time.perf_counter()
        _s, r = index.search(q[None, :], k)
        times.append((time.perf_counter() - t) * 1000)
        rows.append(r[0])
    return times, np.array(rows)


def _stats(times: list[float]) -> dict:
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95))}


def _exact_index(store: np.ndarray, chunk: int = 100_000) -> VectorIndex:
    cfg = AnnConfig(kind="exact")
    idx = VectorIndex(store.shape[1], cfg)
    for s in range(0, len(store), chunk):
        idx.add(store[s:s + chunk].astype(np.float32))
    return idx


def _approx_index(store: np.ndarray, cfg: AnnConfig, chunk: int = 100_000) -> tuple[VectorIndex, float, float]:
    idx = VectorIndex(store.shape[1], cfg)
    # train() samples what it needs for the lists of a len(store) index; hand it a generous
    # fp32 sample rather than the whole fp16 store (1M x 1280 fp32 would be 5 GB).
    rng = np.random.default_rng(0)
    sample = store[np.sort(rng.choice(len(store), min(200_000, len(store)), replace=False))].astype(np.float32)
    t = time.perf_counter()
    idx.train(sample, expected_total=len(store))
    train_s = time.perf_counter() - t
    t = time.perf_counter()
    for s in range(0, len(store), chunk):
        idx.add(store[s:s + chunk].astype(np.float32))
    return idx, train_s, time.perf_counter() - t


def bench_search(sizes: list[int], ann_n: int, compare_n: int, n_queries: int, log) -> dict:
    faiss.omp_set_num_threads(max(1, faiss.omp_get_max_threads()))
    model = DescriptorModel(DIM, themes=max(1000, max(sizes + [ann_n]) // 50))
    queries = model.sample(n_queries, seed=7)
    out: dict = {"dim": DIM, "queries": n_queries,
                 "bytes_per_image": {"fp32": 4 * DIM, "fp16": 2 * DIM}}
    exact_rows = []
    big = max(sizes + [ann_n])
    t = time.perf_counter()
    store = _fill(model, big)
    log(f"generated {big} synthetic descriptors in {time.perf_counter() - t:.1f} s")
    for n in sizes:
        idx = _exact_index(store[:n])
        times, _ = _latencies(idx, queries, 100)
        row = {"n": n, "kind": "exact", **idx.describe(), **_stats(times)}
        exact_rows.append(row)
        log(f"exact top-100 at {n}: p95 {row['p95_ms']:.1f} ms ({row['storage']})")
        del idx
        gc.collect()
    out["exact"] = exact_rows
    at100k = [r for r in exact_rows if r["n"] == 100_000]
    out["search_exact_100k_p95_ms"] = at100k[0]["p95_ms"] if at100k else None

    # IVF-PQ vs HNSW at the same (smaller) size: build cost, latency, recall, memory.
    sub = store[:compare_n]
    truth = exact_top_k(sub, queries, 10)
    compare = []
    for kind in ("ivfpq", "hnsw"):
        idx, train_s, add_s = _approx_index(sub, AnnConfig(kind=kind))
        times, rows = _latencies(idx, queries, 100)
        compare.append({"kind": kind, "n": compare_n, "train_s": train_s, "add_s": add_s,
                        "add_ms_per_vector": add_s * 1000 / compare_n, **_stats(times),
                        "recall_at_10": recall_at(rows, truth, 10),
                        "bytes_per_vector": idx.memory_bytes_per_vector()})
        log(f"{kind} at {compare_n}: add {add_s:.1f} s, p95 {compare[-1]['p95_ms']:.2f} ms, "
            f"recall@10 {compare[-1]['recall_at_10']:.3f}")
        del idx
        gc.collect()
    out["ivfpq_vs_hnsw"] = compare

    # ANN at ann_n (1M in the full run): IVF-PQ, nprobe sweep, pick the fastest with recall >= 0.95.
    store_n = store[:ann_n]
    t = time.perf_counter()
    truth = exact_top_k(store_n, queries, 10)
    log(f"exact ground truth at {ann_n} in {time.perf_counter() - t:.1f} s")
    cfg = AnnConfig(kind="ivfpq")
    idx, train_s, add_s = _approx_index(store_n, cfg)
    log(f"IVF-PQ at {ann_n}: train {train_s:.1f} s, add {add_s:.1f} s, {idx.describe()}")
    sweep = []
    base = faiss.downcast_index(idx._coarse.index)
    for nprobe in (32, 64, 128, 256, 512):
        if nprobe > base.nlist:
            break
        base.nprobe = nprobe
        times, rows = _latencies(idx, queries, 100)
        sweep.append({"nprobe": nprobe, **_stats(times), "recall_at_10": recall_at(rows, truth, 10)})
        log(f"  nprobe {nprobe}: p95 {sweep[-1]['p95_ms']:.2f} ms, recall@10 {sweep[-1]['recall_at_10']:.3f}")
    ok = [r for r in sweep if r["recall_at_10"] >= 0.95]
    chosen = min(ok, key=lambda r: r["p95_ms"]) if ok else max(sweep, key=lambda r: r["recall_at_10"])
    out["ann"] = {"n": ann_n, "train_s": train_s, "add_s": add_s, **idx.describe(), "sweep": sweep,
                  "chosen_nprobe": chosen["nprobe"]}
    out["bytes_per_image"]["ivfpq_codes"] = float(base.pq.code_size + 8)
    out["bytes_per_image"]["ivfpq_with_fp16_refine"] = idx.memory_bytes_per_vector()
    out["search_ann_n"] = ann_n
    out["search_ann_p95_ms"] = chosen["p95_ms"]
    out["search_ann_1m_p95_ms"] = chosen["p95_ms"] if ann_n >= 1_000_000 else None
    out["ann_recall_at_10"] = chosen["recall_at_10"]
    del idx, store, store_n
    gc.collect()
    return out
