"""Near-duplicate and exact-duplicate groups of a collection (Qt-free).

Two tiers:

* **exact**: photos whose catalog content hash (``engine.catalog.content_hash``) and byte size
  are equal: byte-identical copies (or, in theory, a hash collision of the sampled bytes).
* **near**: photos whose search vectors (l2-normalised, inner product = cosine similarity)
  are at least ``threshold`` apart, joined transitively (connected components), so a group is
  "a chain of near-identical pairs" (resized, re-compressed, lightly cropped or edited copies,
  burst shots).

The kNN graph is computed once (:class:`SimilarityGraph`, a faiss exact kNN search of every
photo against the collection, edges kept down to ``floor``); regrouping for another threshold
only filters the stored edges and runs connected components, which is a few milliseconds even
for 50,000 photos, so a GUI slider can regroup live.

Design of our own (no paper covers it): the kNN graph with ``k`` neighbours misses pairs in
groups larger than ``k + 1`` only when they are not linked through other members, which
transitivity makes rare; ``k`` = 16 by default. The default threshold was chosen from the
precision/recall sweep of ``bench/duplicates_eval.py`` (see ``docs/duplicates_eval.md``).

Nothing here ever deletes a file: :func:`move_to_folder` moves files without overwriting.
"""
from __future__ import annotations

import errno
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import faiss
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .catalog import ImageRecord

# Chosen from the precision/recall sweep of bench/duplicates_eval.py on the default method.
DEFAULT_THRESHOLD = 0.87
DEFAULT_K = 16
DEFAULT_FLOOR = 0.5


@dataclass(frozen=True)
class DuplicateConfig:
    """Settings of the duplicate finder.

    ``threshold``: cosine similarity of search vectors at or above which two photos are
    near-duplicates. ``k``: neighbours per photo in the precomputed graph. ``floor``: lowest
    similarity kept in the graph (lowest threshold the slider can regroup at without
    recomputing). ``exact``: include the exact (content hash) tier.
    """

    threshold: float = DEFAULT_THRESHOLD
    k: int = DEFAULT_K
    floor: float = DEFAULT_FLOOR
    exact: bool = True


@dataclass(frozen=True)
class PhotoInfo:
    """What the duplicates view shows of one photo."""

    path: str
    image_id: int
    size: int
    width: int | None
    height: int | None
    taken: float | None
    mtime: float
    hash: str

    @property
    def pixels(self) -> int:
        return (self.width or 0) * (self.height or 0)

    @property
    def date(self) -> float:
        """Date taken (EXIF), else the file's modification time."""
        return self.taken if self.taken is not None else self.mtime

    @classmethod
    def from_record(cls, r: ImageRecord) -> "PhotoInfo":
        return cls(r.path, r.id, r.size, r.width, r.height, r.taken, r.mtime_ns / 1e9, r.hash)


@dataclass
class DuplicateGroup:
    """Photos that are copies of each other; ``members[0]`` is the one suggested to keep."""

    members: list[PhotoInfo]
    exact: bool
    similarity: float  # lowest similarity of the edges that built the group (1.0 for exact)
    others: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.members = sort_keep_first(self.members)
        self.others = [m.path for m in self.members[1:]]

    @property
    def keep(self) -> PhotoInfo:
        return self.members[0]

    @property
    def paths(self) -> list[str]:
        return [m.path for m in self.members]

    def to_json(self) -> dict:
        return {"exact": self.exact, "similarity": round(float(self.similarity), 4), "keep": self.keep.path,
                "members": [{"path": m.path, "width": m.width, "height": m.height, "size": m.size,
                             "date": m.date} for m in self.members]}


def keep_key(p: PhotoInfo) -> tuple:
    """Sort key of the keep suggestion: largest resolution, then oldest, then largest file, then path."""
    return (-p.pixels, p.date, -p.size, p.path)


def sort_keep_first(members: Iterable[PhotoInfo]) -> list[PhotoInfo]:
    return sorted(members, key=keep_key)


class SimilarityGraph:
    """kNN graph of a set of l2-normalised vectors: edges ``(i, j, similarity)``, ``i < j``.

    Built once with a faiss exact inner-product kNN search; :meth:`components` regroups at any
    threshold >= ``floor`` without touching the vectors again.
    """

    def __init__(self, vectors: np.ndarray, k: int = DEFAULT_K, floor: float = DEFAULT_FLOOR,
                 batch: int = 4096):
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.n = len(vectors)
        self.floor = float(floor)
        if self.n < 2:
            self.i = self.j = np.zeros(0, np.int64)
            self.s = np.zeros(0, np.float32)
            return
        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(vectors)
        kk = min(self.n, k + 1)
        src, dst, sim = [], [], []
        for start in range(0, self.n, batch):
            s, nn = index.search(vectors[start:start + batch], kk)
            rows = np.repeat(np.arange(start, start + len(s)), kk)
            s, nn = s.ravel(), nn.ravel()
            ok = (nn >= 0) & (nn != rows) & (s >= self.floor)
            src.append(rows[ok])
            dst.append(nn[ok])
            sim.append(s[ok])
        i, j, s = np.concatenate(src), np.concatenate(dst), np.concatenate(sim)
        a, b = np.minimum(i, j), np.maximum(i, j)
        # De-duplicate (i,j) seen from both ends, keeping the larger similarity.
        order = np.lexsort((-s, b, a))
        a, b, s = a[order], b[order], s[order]
        first = np.ones(len(a), bool)
        first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
        self.i, self.j, self.s = a[first], b[first], np.minimum(s[first], 1.0).astype(np.float32)

    def components(self, threshold: float) -> list[list[int]]:
        """Connected components (of size >= 2) of the edges with similarity >= ``threshold``."""
        if threshold < self.floor - 1e-6:
            raise ValueError(f"threshold {threshold} is below the graph's floor {self.floor}; rebuild the graph")
        keep = self.s >= threshold
        if not keep.any():
            return []
        i, j = self.i[keep], self.j[keep]
        m = coo_matrix((np.ones(len(i), np.int8), (i, j)), shape=(self.n, self.n))
        _n, labels = connected_components(m, directed=False)
        counts = np.bincount(labels)
        groups: dict[int, list[int]] = {}
        for node in np.flatnonzero(counts[labels] >= 2):
            groups.setdefault(int(labels[node]), []).append(int(node))
        return list(groups.values())

    def min_edge(self, members: Sequence[int], threshold: float) -> float:
        """Lowest similarity among the kept edges inside ``members`` (the group's weakest link)."""
        mem = np.zeros(self.n, bool)
        mem[list(members)] = True
        keep = (self.s >= threshold) & mem[self.i] & mem[self.j]
        return float(self.s[keep].min()) if keep.any() else float(threshold)


def pairs_of(groups: Iterable[Sequence]) -> set[tuple]:
    """All unordered pairs inside groups (for precision/recall of pairs)."""
    out: set[tuple] = set()
    for g in groups:
        g = sorted(g)
        for a in range(len(g)):
            for b in range(a + 1, len(g)):
                out.add((g[a], g[b]))
    return out


def exact_groups(infos: Sequence[PhotoInfo]) -> list[list[int]]:
    """Indices of photos sharing content hash and size (groups of size >= 2)."""
    by: dict[tuple[str, int], list[int]] = {}
    for k, p in enumerate(infos):
        by.setdefault((p.hash, p.size), []).append(k)
    return [g for g in by.values() if len(g) >= 2]


class DuplicateFinder:
    """Duplicate groups of a set of photos with their search vectors; regroups cheaply."""

    def __init__(self, infos: Sequence[PhotoInfo], vectors: np.ndarray, config: DuplicateConfig = DuplicateConfig()):
        if len(infos) != len(vectors):
            raise ValueError("one vector per photo is needed")
        self.infos = list(infos)
        self.config = config
        self.graph = SimilarityGraph(vectors, config.k, min(config.floor, config.threshold))
        self._exact = exact_groups(self.infos) if config.exact else []

    @classmethod
    def from_collection(cls, collection, method: str | None = None, folder: str | os.PathLike | None = None,
                        config: DuplicateConfig = DuplicateConfig()) -> "DuplicateFinder":
        """Finder over ``collection``'s photos indexed with ``method`` (optionally under ``folder``)."""
        idx = collection.search_index(method)
        records = {r.id: r for r in collection.catalog.images()}
        rows = list(range(len(idx.ids)))
        if folder is not None:
            prefix = os.path.join(os.path.abspath(os.fspath(folder)), "")
            rows = [k for k in rows if idx.paths[k].startswith(prefix)]
        rows = [k for k in rows if int(idx.ids[k]) in records]
        infos = [PhotoInfo.from_record(records[int(idx.ids[k])]) for k in rows]
        vectors = idx.vectors[rows] if rows else np.zeros((0, idx.vectors.shape[1]), np.float32)
        return cls(infos, vectors, config)

    def groups(self, threshold: float | None = None) -> list[DuplicateGroup]:
        """Exact groups first, then near-duplicate groups (largest first), at ``threshold``.

        A near group that contains an exact group is reported once, as a near group holding it;
        exact groups are always reported, whatever the threshold.
        """
        t = self.config.threshold if threshold is None else float(threshold)
        near = self.graph.components(t)
        out: list[DuplicateGroup] = []
        covered: dict[int, int] = {}
        for g in near:
            for k in g:
                covered[k] = len(out)
            out.append(DuplicateGroup([self.infos[k] for k in g], False, self.graph.min_edge(g, t)))
        exact: list[DuplicateGroup] = []
        for g in self._exact:
            if len({covered.get(k, -1) for k in g}) == 1 and g[0] in covered:
                grp = out[covered[g[0]]]
                if len(grp.members) == len(g):
                    grp.exact = True
                    grp.similarity = 1.0
                continue
            exact.append(DuplicateGroup([self.infos[k] for k in g], True, 1.0))
        out.sort(key=lambda grp: (-len(grp.members), -grp.similarity, grp.keep.path))
        return [g for g in out if g.exact] + exact + [g for g in out if not g.exact]


def unique_destination(folder: Path, name: str) -> Path:
    """``folder/name``, or ``folder/stem (1).ext``... when that name is taken."""
    dst = folder / name
    stem, suffix = Path(name).stem, Path(name).suffix
    n = 1
    while os.path.lexists(dst):
        dst = folder / f"{stem} ({n}){suffix}"
        n += 1
    return dst


def _move_no_overwrite(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``, failing with FileExistsError rather than overwriting ``dst``."""
    try:
        os.link(src, dst)  # atomic, fails if dst exists
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            raise FileExistsError(errno.EEXIST, "destination exists", str(dst)) from None
        # Another file system, or links unsupported: exclusive-create copy, then check it.
        with open(src, "rb") as fin, open(dst, "xb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
        shutil.copystat(src, dst)
        if os.path.getsize(dst) != os.path.getsize(src):
            os.unlink(dst)
            raise OSError(f"copy of {src} to {dst} is incomplete; the original is kept") from None
    os.unlink(src)


def move_to_folder(paths: Iterable[str | os.PathLike], folder: str | os.PathLike) -> list[tuple[str, str]]:
    """Move files into ``folder`` (created if needed); returns ``(source, destination)`` pairs.

    Never deletes a file's content and never overwrites: a taken name gets a `` (n)`` suffix.
    A file that no longer exists is skipped (not in the result).
    """
    dest = Path(folder).expanduser()
    dest.mkdir(parents=True, exist_ok=True)
    moved: list[tuple[str, str]] = []
    for p in paths:
        src = Path(p)
        if not src.is_file():
            continue
        if src.parent.resolve() == dest.resolve():
            continue
        for _attempt in range(100):
            dst = unique_destination(dest, src.name)
            try:
                _move_no_overwrite(src, dst)
                break
            except FileExistsError:
                continue  # someone took the name meanwhile: pick the next one
        else:  # pragma: no cover - 100 races in a row
            raise OSError(f"could not find a free name for {src.name} in {dest}")
        moved.append((str(src), str(dst)))
    return moved
