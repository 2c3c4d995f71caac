"""Vector indexes for search at scale: exact below a size threshold, approximate above it.

:class:`VectorIndex` answers ``search(queries (Q,D), k) -> (scores (Q,k), rows (Q,k))`` with
inner-product scores, best first, rows ``-1`` where there are fewer than ``k`` vectors, exactly
like a faiss inner-product index, so :class:`engine.search.index.SearchIndex` can use either.

Kinds (``AnnConfig.kind``; ``"auto"`` picks by collection size):

* ``exact``: every vector is scored. Stored as fp32 (``faiss.IndexFlatIP``, 4 bytes per
  dimension) below ``fp16_above`` vectors and as fp16 (``faiss.IndexScalarQuantizer``
  ``QT_fp16``, 2 bytes per dimension, scores within ~1e-3 of fp32) above, which halves the
  memory traffic that bounds a single query's latency.
* ``ivfpq`` (default above ``exact_threshold``): PCA to ``pca_dims``, an inverted file of
  ``nlist`` lists (probing ``nprobe``) with product-quantised codes of ``pq_m`` bytes.
* ``hnsw``: PCA to ``pca_dims`` then an HNSW graph (``hnsw_m`` links, ``ef_search``).

Design of our own (not from a paper): both approximate kinds are a *coarse stage* that
proposes ``max(k * refine_factor, refine_min)`` candidates, which are then re-scored exactly
with the fp16 copy of the vectors (the "refine" stage), so reported scores are exact inner
products and recall@k is limited only by the shortlist. The coarse stage works in L2 on the
PCA-projected vectors: for l2-normalised vectors ``|q-x|^2 = 2 - 2 q.x``, so L2 ranking equals
inner-product ranking and, unlike inner product, is unchanged by PCA's mean subtraction.
IVF-PQ was chosen over HNSW by measurement on 2 CPU cores (``bench``, docs/BENCHMARKS.md):
HNSW's graph construction costs ~4x more per added vector (0.18 vs 0.04 ms at 50k), which
makes a 1M index slow to build on a laptop CPU, and its memory per vector is larger (3840 vs
2632 bytes with the refine copy). At 1M, 4000 lists probed 256 at a time give recall@10 0.967
at 7.9 ms p95 on 2 cores.

Incremental updates: :meth:`VectorIndex.add` appends vectors (rows continue from ``ntotal``).
When an exact index crosses ``exact_threshold`` under ``kind="auto"`` it is converted once
(the coarse stage is trained on the vectors it holds); afterwards new vectors are only
encoded with the trained codebooks, never retrained. :meth:`trained_state` /
:meth:`from_trained_state` save and restore the trained (empty) coarse stage as a uint8
array (faiss serialisation, no pickle) so a rebuilt index skips training.

Memory per vector of dimension D (``memory_bytes_per_vector``): exact fp32 ``4D``, exact
fp16 ``2D``; approximate: PQ codes ``pq_m`` + 8 bytes of id in the inverted lists (IVF-PQ)
or ``4*pca_dims + 8*hnsw_m`` (HNSW), plus the fp16 refine copy ``2D``.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import faiss
import numpy as np

from engine.errors import LookalikeError

log = logging.getLogger(__name__)

ANN_KINDS = ("auto", "exact", "ivfpq", "hnsw")


@dataclass(frozen=True)
class AnnConfig:
    """Settings of a :class:`VectorIndex` (see the module docstring for each kind).

    ``exact_threshold``: with ``kind="auto"``, collections of at most this many vectors are
    searched exactly. ``fp16_above``: exact indexes above this size store fp16.
    ``nlist``: inverted lists (None: ``4 * sqrt(N)`` clipped to [64, 8192], N the collection
    size). ``nprobe``: lists probed per query (None: ``nlist // 16``, at least 16).
    ``train_size``: vectors sampled to train PCA, the coarse quantiser and PQ (None:
    ``39 * nlist``, faiss's minimum per list, at least 30k). Measured at 1M synthetic
    vectors on 2 cores (docs/BENCHMARKS.md): 692 lists trained on 30k vectors needed nprobe
    128 for recall@10 0.98 at 12.2 ms p95; 4000 lists on 160k vectors reach 0.96 at nprobe
    256 in 8.5 ms (training 61 s instead of 56 s).
    ``refine_factor``/``refine_min``: the coarse shortlist is ``max(k*factor, min)``.
    ``build_threads``: OpenMP threads for training and adding (None: faiss's default, all
    cores). Default 1: on a busy 2-core machine one thread trained IVF-PQ 4x faster than two
    (50 s vs 214 s for 10k vectors: PQ training is many tiny k-means whose parallel regions
    wait at barriers for descheduled threads); set None on an idle many-core machine.
    """

    kind: str = "auto"
    exact_threshold: int = 100_000
    fp16_above: int = 20_000
    pca_dims: int = 256
    nlist: int | None = None
    pq_m: int = 64
    nprobe: int | None = None
    hnsw_m: int = 32
    ef_construction: int = 64
    ef_search: int = 128
    refine_factor: int = 4
    refine_min: int = 200
    train_size: int | None = None
    seed: int = 0
    build_threads: int | None = 1

    def __post_init__(self) -> None:
        if self.kind not in ANN_KINDS:
            raise LookalikeError(f"Unknown index kind '{self.kind}'; choose one of {', '.join(ANN_KINDS)}.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "AnnConfig":
        return dataclasses.replace(self, **changes)


def auto_nlist(n: int) -> int:
    """Inverted lists for ``n`` vectors: ``4 sqrt(n)`` clipped to [64, 8192] (faiss's usual rule)."""
    return int(min(8192, max(64, 4 * math.sqrt(max(n, 1)))))


def _as_f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


class VectorIndex:
    """Inner-product search over l2-normalised vectors; exact or approximate (see module doc)."""

    def __init__(self, dim: int, config: AnnConfig | None = None):
        self.d = int(dim)
        self.config = config or AnnConfig()
        self.kind = "ivfpq" if self.config.kind == "ivfpq" else "hnsw" if self.config.kind == "hnsw" else "exact"
        self._exact: faiss.Index | None = None  # exact kind: the whole index
        self._coarse: faiss.Index | None = None  # approximate kinds: PCA + IVF-PQ / HNSW
        self._buf = np.zeros((0, self.d), np.float16)  # fp16 copy for the refine stage (grows x1.5)
        self._n = 0
        self._fp16 = False
        self.trained_on = 0
        if self.kind == "exact":
            self._exact = faiss.IndexFlatIP(self.d)

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def build(cls, vectors: np.ndarray, config: AnnConfig | None = None,
              trained_state: np.ndarray | None = None) -> "VectorIndex":
        """Index ``vectors (N, D)``; the kind follows ``config`` (``auto``: by N)."""
        config = config or AnnConfig()
        vectors = _as_f32(vectors)
        n, d = vectors.shape
        kind = config.kind
        if kind == "auto":
            kind = "exact" if n <= config.exact_threshold else "ivfpq"
        if kind == "exact":
            idx = cls(d, config.replace(kind="exact"))
            if n > config.fp16_above:
                idx._exact = _fp16_flat(d)
                idx._fp16 = True
            idx._exact.add(vectors)
            idx._n = n
            idx.config = config
            return idx
        idx = cls(d, config.replace(kind=kind))
        idx.config = config
        if trained_state is not None:
            idx._load_trained(trained_state)
        else:
            idx.train(vectors, expected_total=n)
        idx._add_approx(vectors)
        return idx

    @classmethod
    def from_coarse(cls, coarse: faiss.Index, refine: np.ndarray, config: AnnConfig) -> "VectorIndex":
        """An approximate index from its populated coarse stage and its refine copy (fp16
        ``(ntotal, D)``, e.g. a read-only memmap, so the vectors stay on disk): how an index
        trained by :meth:`train` and filled chunk by chunk elsewhere is searched
        (:mod:`engine.archive.merge`)."""
        if coarse.ntotal != len(refine):
            raise ValueError(f"the coarse stage holds {coarse.ntotal} vectors, the refine copy {len(refine)}")
        idx = cls(refine.shape[1], config.replace(kind="ivfpq" if config.kind == "auto" else config.kind))
        idx.config = config
        idx._coarse = coarse
        idx._buf = refine
        idx._n = len(refine)
        idx._set_search_params()
        return idx

    def train(self, vectors: np.ndarray, expected_total: int | None = None) -> None:
        """Train the approximate coarse stage (PCA, IVF-PQ / HNSW) on a sample of ``vectors``.

        ``expected_total``: how many vectors the index will hold (default ``len(vectors)``);
        it sets the number of inverted lists. Used by :meth:`build`; call it directly to
        build a large index chunk by chunk (``train(sample, expected_total=N)`` then
        ``add(chunk)`` repeatedly) without holding all vectors as fp32.
        """
        if self.kind == "exact":
            return
        c = self.config
        n = len(vectors)
        nlist = c.nlist or auto_nlist(expected_total or n)
        size = c.train_size or max(30_000, 39 * nlist)
        rng = np.random.default_rng(c.seed)
        sample = vectors if n <= size else vectors[np.sort(rng.choice(n, size, replace=False))]
        dims = min(c.pca_dims, self.d)
        pca = faiss.PCAMatrix(self.d, dims)
        if self.kind == "ivfpq":
            nlist = max(1, min(nlist, len(sample) // 39))  # faiss wants >= 39 points per list
            m = c.pq_m if dims % c.pq_m == 0 else math.gcd(dims, c.pq_m)
            # 8-bit codes need 256 centroids per sub-quantiser: fewer bits for tiny samples.
            nbits = 8 if len(sample) >= 256 * 39 else max(1, min(8, int(math.log2(max(2, len(sample) // 39)))))
            quantizer = faiss.IndexFlatL2(dims)
            base = faiss.IndexIVFPQ(quantizer, dims, nlist, m, nbits)
            base.cp.seed = c.seed
        else:
            base = faiss.IndexHNSWFlat(dims, c.hnsw_m)
            base.hnsw.efConstruction = c.ef_construction
        coarse = faiss.IndexPreTransform(pca, base)
        with _faiss_threads(c.build_threads):
            coarse.train(_as_f32(sample))
        self._coarse = coarse
        self.trained_on = len(sample) if self.kind == "ivfpq" else n
        self._set_search_params()

    def _set_search_params(self) -> None:
        base = faiss.downcast_index(self._coarse.index)
        if isinstance(base, faiss.IndexIVF):
            base.nprobe = min(self.config.nprobe or max(16, base.nlist // 16), base.nlist)
        elif isinstance(base, faiss.IndexHNSW):
            base.hnsw.efSearch = self.config.ef_search

    @property
    def _store(self) -> np.ndarray:
        return self._buf[:self._n]

    def _add_approx(self, vectors: np.ndarray) -> None:
        if self._coarse is None:
            raise RuntimeError("train() the approximate index before adding vectors")
        vectors = _as_f32(vectors)
        if len(vectors) == 0:
            return
        with _faiss_threads(self.config.build_threads):
            self._coarse.add(vectors)
        need = self._n + len(vectors)
        if need > len(self._buf):
            grown = np.empty((max(need, int(len(self._buf) * 1.5)), self.d), np.float16)
            grown[:self._n] = self._buf[:self._n]
            self._buf = grown
        self._buf[self._n:need] = vectors
        self._n = need

    def add(self, vectors: np.ndarray) -> None:
        """Append ``vectors``; under ``kind="auto"`` an exact index turns approximate past the threshold."""
        vectors = _as_f32(vectors)
        if vectors.ndim != 2 or vectors.shape[1] != self.d:
            raise ValueError(f"expected vectors of dimension {self.d}, got {vectors.shape}")
        if self.kind != "exact":
            self._add_approx(vectors)
            return
        total = self._n + len(vectors)
        if self.config.kind == "auto" and total > self.config.exact_threshold:
            old = self.reconstruct_all()
            rebuilt = VectorIndex.build(np.concatenate([old, vectors]), self.config.replace(kind="ivfpq"))
            rebuilt.config = self.config
            self.__dict__.update(rebuilt.__dict__)
            return
        if not self._fp16 and total > self.config.fp16_above:
            old = self.reconstruct_all()
            self._exact = _fp16_flat(self.d)
            self._exact.add(old)
            self._fp16 = True
        self._exact.add(vectors)
        self._n = total

    def reconstruct_all(self) -> np.ndarray:
        """All indexed vectors as fp32 ``(N, D)`` (fp16-rounded where stored as fp16)."""
        if self.kind != "exact":
            return self._store.astype(np.float32)
        if self._n == 0:
            return np.zeros((0, self.d), np.float32)
        return self._exact.reconstruct_n(0, self._n)

    # -- persistence of the trained coarse stage -------------------------------------------
    def trained_state(self) -> np.ndarray | None:
        """The trained, empty coarse stage as uint8 (faiss serialisation), or None when exact."""
        if self.kind == "exact" or self._coarse is None:
            return None
        empty = faiss.clone_index(self._coarse)
        empty.reset()
        return faiss.serialize_index(empty)

    def _load_trained(self, state: np.ndarray) -> None:
        coarse = faiss.deserialize_index(np.ascontiguousarray(state, dtype=np.uint8))
        if coarse.d != self.d or coarse.ntotal != 0:
            raise ValueError("stored index state does not match these vectors")
        self._coarse = coarse
        self._set_search_params()

    # -- queries -------------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        return self._n

    def __len__(self) -> int:
        return self._n

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores (Q,k), rows (Q,k))`` by inner product, best first; rows -1 when missing."""
        q = _as_f32(np.atleast_2d(queries))
        k = int(k)
        with _faiss_threads(1 if len(q) < SINGLE_THREAD_BELOW else None):
            return self._search(q, k)

    def _search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.kind == "exact":
            return self._exact.search(q, k)
        kk = min(self._n, max(k * self.config.refine_factor, self.config.refine_min, k))
        _dist, cand = self._coarse.search(q, kk)
        scores = np.full((len(q), k), -np.inf, np.float32)
        rows = np.full((len(q), k), -1, np.int64)
        for i in range(len(q)):
            c = cand[i][cand[i] >= 0]
            if len(c) == 0:
                continue
            # Elementwise product, not BLAS gemv: BLAS's thread pool on a busy 2-core machine
            # cost a constant ~12 ms per query here (threads waiting for each other).
            s = np.einsum("ij,j->i", self._store[c].astype(np.float32), q[i], optimize=False)
            top = min(k, len(c))
            part = np.argpartition(-s, top - 1)[:top] if top < len(c) else np.arange(len(c))
            order = part[np.argsort(-s[part], kind="stable")]
            scores[i, :top] = s[order]
            rows[i, :top] = c[order]
        return scores, rows

    def memory_bytes_per_vector(self) -> float:
        """Bytes of RAM per indexed vector (see the module docstring)."""
        if self.kind == "exact":
            return float(self.d * (2 if self._fp16 else 4))
        refine = 2 * self.d
        base = faiss.downcast_index(self._coarse.index)
        if isinstance(base, faiss.IndexIVFPQ):
            return float(base.pq.code_size + 8 + refine)
        return float(4 * base.d + 8 * self.config.hnsw_m + refine)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "ntotal": self._n, "dim": self.d,
                               "bytes_per_vector": self.memory_bytes_per_vector()}
        if self.kind == "exact":
            out["storage"] = "fp16" if self._fp16 else "fp32"
        else:
            base = faiss.downcast_index(self._coarse.index)
            if isinstance(base, faiss.IndexIVF):
                out.update(nlist=base.nlist, nprobe=base.nprobe)
        return out


# A few queries are answered on one OpenMP thread: on a busy 2-core machine, faiss's parallel
# regions wait at barriers for a descheduled sibling thread, which made one 10k exact query
# 5x slower (40 ms vs 8 ms, p50) than single-threaded; batches still use every core.
SINGLE_THREAD_BELOW = 8


@contextmanager
def _faiss_threads(n: int | None) -> Iterator[None]:
    if n is None:
        yield
        return
    old = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(old)


def _fp16_flat(d: int) -> faiss.Index:
    idx = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    idx.train(np.zeros((1, d), np.float32))  # fp16 needs no statistics; marks it trained
    return idx


ANN_STATE_KIND = "ann"  # catalog state holding the trained coarse stage of a method's index
RETRAIN_GROWTH = 4  # retrain once the collection is this many times the size it was trained for


def build_vector_index(catalog, method_name: str, vectors: np.ndarray,
                       config: AnnConfig | None = None) -> VectorIndex:
    """The search index of a method's search vectors, reusing the catalog's trained codebooks.

    Approximate indexes store their trained (empty) coarse stage in the catalog (state kind
    ``"ann"``), so rebuilding after photos were added only encodes vectors; training runs
    again when none is stored, when the dimension changed, or when the collection grew
    beyond ``RETRAIN_GROWTH`` times the size it was trained for.
    """
    config = config or AnnConfig()
    vectors = _as_f32(vectors)
    n, d = vectors.shape
    kind = config.kind if config.kind != "auto" else ("exact" if n <= config.exact_threshold else "ivfpq")
    if kind == "exact":
        return VectorIndex.build(vectors, config)
    code = ANN_KINDS.index(kind)
    stored = catalog.load_state(method_name, ANN_STATE_KIND)
    trained = None
    if stored is not None:
        st = stored[0]
        if (int(st["kind"][0]) == code and int(st["dim"][0]) == d
                and n <= RETRAIN_GROWTH * int(st["trained_for"][0])):
            trained = st["coarse"]
    if trained is not None:
        try:
            return VectorIndex.build(vectors, config.replace(kind=kind), trained)
        except (ValueError, RuntimeError) as exc:  # a damaged or foreign state: train again
            log.warning("stored %s index state unusable (%s); training again", method_name, exc)
    idx = VectorIndex.build(vectors, config.replace(kind=kind))
    state = idx.trained_state()
    if state is not None:
        catalog.save_state(method_name, ANN_STATE_KIND, {
            "coarse": np.asarray(state, np.uint8), "kind": np.array([code], np.int64),
            "dim": np.array([d], np.int64), "trained_for": np.array([n], np.int64)})
    return idx
