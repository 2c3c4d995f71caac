"""Duplicate groups of a collection in three tiers, kept apart everywhere (Qt-free).

* **exact**: photos with the same content (catalog content hash and byte size), and a camera
  RAW with its JPEG/HEIC side-car (same folder and name: one exposure).
* **near**: the same photo edited (re-encoded, resized, cropped, colour-adjusted, rotated,
  stamped, format-converted). A pair is a *candidate* when its search vectors are close
  (cosine >= ``candidate``, among each photo's ``verify_k`` nearest neighbours in the kNN
  graph: no all-pairs step) or, with ``rotations``, when their pHashes agree after a quarter
  or half turn (:meth:`DuplicateFinder.find_rotation_pairs`), and it is a near-duplicate only
  once :class:`engine.services.near_duplicate.NearDuplicateVerifier` passed it on all four of
  its steps (a similarity transform fits the matched points tightly, maps one frame almost
  inside the other, is supported by matches spread over the overlap, and the aligned pixels
  agree block by block). A group is then built from verified pairs around the photo it
  suggests to keep: **every other member is verified against that photo**, so a chain A~B~C
  never puts C in A's group unless C~A was verified too.
* **similar**: another shot of the same scene (bursts, other viewpoints): search vectors at or
  above ``threshold`` that are not near-duplicates. For browsing only: never proposed for
  removal (``DuplicateGroup.removable`` is False).

Only exact and near groups are proposed for removal. Decisions are remembered in the catalog
(``CatalogStore.set_pair_decisions``, keyed by content hash, so they survive moves and
re-indexing): a pair marked "distinct" (not a duplicate) or "resolved" (reviewed: the user
moved the others, or kept them all) is never grouped again. Verification results are stored
there too, so an interrupted run resumes where it stopped and a re-run only checks new pairs.

Cost (measured, ``docs/duplicates_eval.md``): the kNN graph is a faiss search of every photo
against the collection's index; verification costs one feature extraction per photo with a
candidate and a few milliseconds per candidate pair (at most ``verify_k`` per photo), so it
grows linearly with the collection.

Nothing here ever deletes a file: :func:`move_to_folder` moves files without overwriting.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import faiss
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components, reverse_cuthill_mckee

from engine.store.catalog import ImageRecord
from engine.errors import ImageLoadError
from engine.imaging.formats import RAW_EXTENSIONS, is_raw_path, raw_sidecar_pairs, sidecar_key
from engine.services.near_duplicate import NearDuplicateConfig, NearDuplicateVerifier, PairCheck

# The similar tier's cosine threshold: chosen from the precision/recall sweep of the
# descriptor alone on the default method (docs/duplicates_eval.md, "descriptor only" column).
DEFAULT_THRESHOLD = 0.87
# Lowest cosine at which a pair is verified: below the similarity of every edited copy of the
# benchmark under the default method (25 % downscales and 20 % crops score lowest).
DEFAULT_CANDIDATE = 0.70
DEFAULT_K = 16
DEFAULT_VERIFY_K = 8
DEFAULT_FLOOR = 0.5

TIERS = ("exact", "near", "similar")
TIER_TITLES = {"exact": "identical files", "near": "near-duplicates (the same photo, edited)",
               "similar": "similar shots (browse only)"}

DISTINCT = "distinct"   # a person said: not duplicates
RESOLVED = "resolved"   # a person reviewed the group (moved the others away, or kept them all)

# Keep-best rules, in the default order (the first rule that tells two photos apart decides).
KEEP_RULES = ("resolution", "file_size", "format", "folder", "oldest")
KEEP_RULE_TITLES = {"resolution": "largest resolution", "file_size": "larger file",
                    "format": "preferred format", "folder": "preferred folder", "oldest": "oldest"}
# Preferred formats, best first: camera RAW (engine.imaging.formats.RAW_EXTENSIONS), then HEIF.
DEFAULT_FORMATS = tuple(sorted(RAW_EXTENSIONS)) + (".heic", ".heif")


def size_text(n: int) -> str:
    """A file size as people read it (MB, or KB below 1 MB)."""
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} KB"


@dataclass(frozen=True)
class KeepRules:
    """Which photo of a group is suggested to keep: ``order`` of :data:`KEEP_RULES`;
    ``formats``: file extensions preferred, best first (others rank after them, equal);
    ``folders``: preferred folders, best first (a photo under none ranks after them)."""

    order: tuple[str, ...] = KEEP_RULES
    formats: tuple[str, ...] = DEFAULT_FORMATS
    folders: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = [r for r in self.order if r not in KEEP_RULES]
        if unknown:
            raise ValueError(f"unknown keep rule(s) {', '.join(unknown)}; choose from {', '.join(KEEP_RULES)}")

    def rank(self, rule: str, p: "PhotoInfo"):
        """Smaller is better. File sizes are compared within one format only (a PNG made
        from a JPEG is larger, not better): see :meth:`key`."""
        if rule == "resolution":
            return -p.pixels
        if rule == "file_size":
            return (_format_family(p.path), -p.size)
        if rule == "format":
            ext = Path(p.path).suffix.lower()
            fm = [f.lower() for f in self.formats]
            return fm.index(ext) if ext in fm else len(fm)
        if rule == "folder":
            for n, f in enumerate(self.folders):
                if p.path.startswith(os.path.join(os.path.abspath(os.path.expanduser(f)), "")):
                    return n
            return len(self.folders)
        return p.date  # oldest

    def sort(self, members: Iterable["PhotoInfo"]) -> list["PhotoInfo"]:
        members = list(members)
        # "Larger file" only tells photos of one format apart: across formats it is a tie.
        mixed = len({_format_family(m.path) for m in members}) > 1
        # A RAW's side-car never goes before it, whatever the rules: the RAW is the original.
        raws = {sidecar_key(m.path) for m in members if is_raw_path(m.path)}
        return sorted(members, key=lambda m: (not is_raw_path(m.path) and sidecar_key(m.path) in raws,
                                              self.key(m, mixed)))

    def key(self, p: "PhotoInfo", mixed_formats: bool = False) -> tuple:
        out = []
        for r in self.order:
            v = self.rank(r, p)
            if r == "file_size":
                v = 0 if mixed_formats else v[1]
            out.append(v)
        return tuple(out) + (p.path,)

    def reason(self, keep: "PhotoInfo", other: "PhotoInfo", mixed_formats: bool = False) -> str:
        """Why ``keep`` is suggested over ``other`` (the runner-up): the deciding rule, as
        :meth:`sort` applied it (``mixed_formats``: the group holds several formats)."""
        if is_raw_path(keep.path) and _raw_and_sidecar(keep.path, other.path):
            return "the camera's RAW original (the other file is its side-car of the same exposure)"
        for r in self.order:
            a, b = self.rank(r, keep), self.rank(r, other)
            if r == "file_size" and (mixed_formats or a[0] != b[0]):
                continue  # across formats file sizes say nothing
            if a == b:
                continue
            if r == "resolution":
                return f"largest resolution ({keep.width} × {keep.height})"
            if r == "file_size":
                return f"larger file ({size_text(keep.size)} vs {size_text(other.size)})"
            if r == "format":
                return f"preferred format ({Path(keep.path).suffix.upper().lstrip('.')})"
            if r == "folder":
                return f"in a preferred folder ({os.path.dirname(keep.path)})"
            return f"oldest ({time.strftime('%Y-%m-%d %H:%M', time.localtime(keep.date))})"
        return "all rules tie: first by path"

    def to_json(self) -> dict:
        return {"order": list(self.order), "formats": list(self.formats), "folders": list(self.folders)}

    @classmethod
    def from_json(cls, d: dict) -> "KeepRules":
        return cls(tuple(d.get("order", KEEP_RULES)), tuple(d.get("formats", DEFAULT_FORMATS)),
                   tuple(d.get("folders", ())))


KEEP_RULES_META = "duplicates.keep_rules"


def load_keep_rules(catalog) -> KeepRules:
    """The collection's keep rules (catalog meta), or the defaults."""
    raw = catalog.get_meta(KEEP_RULES_META)
    if not raw:
        return KeepRules()
    try:
        return KeepRules.from_json(json.loads(raw))
    except (ValueError, TypeError, AttributeError):
        return KeepRules()  # damaged or from another version: the defaults, nothing lost


def save_keep_rules(catalog, rules: KeepRules) -> None:
    catalog.set_meta(KEEP_RULES_META, json.dumps(rules.to_json()))


def _raw_and_sidecar(a: str, b: str) -> bool:
    return is_raw_path(a) != is_raw_path(b) and sidecar_key(a) == sidecar_key(b)


def _format_family(path: str) -> str:
    ext = Path(path).suffix.lower()
    return {".jpeg": ".jpg", ".jpe": ".jpg", ".jfif": ".jpg", ".tiff": ".tif", ".heif": ".heic"}.get(ext, ext)


def _near_config() -> NearDuplicateConfig:
    return NearDuplicateConfig()


def _keep_rules() -> KeepRules:
    return KeepRules()


@dataclass(frozen=True)
class DuplicateConfig:
    """Settings of the duplicate finder.

    ``threshold``: cosine of search vectors at or above which two photos are *similar*
    (browse-only tier). ``candidate``: lowest cosine at which a pair is verified as a possible
    near-duplicate. ``k``: neighbours per photo in the kNN graph; ``verify_k``: of those, how
    many (the most similar) are verified. ``floor``: lowest similarity kept in the graph (the
    lowest threshold the GUI slider regroups at without recomputing). ``exact``: include the
    exact tier. ``rotations``: also verify pairs whose pHash matches after a 90/180/270 degree
    turn (within ``rotation_distance`` bits): rotated copies, which the descriptor does not see
    as close. ``workers``: threads verifying pairs. ``near``: the verifier's thresholds;
    ``keep``: the keep-best rules.
    """

    threshold: float = DEFAULT_THRESHOLD
    candidate: float = DEFAULT_CANDIDATE
    k: int = DEFAULT_K
    verify_k: int = DEFAULT_VERIFY_K
    floor: float = DEFAULT_FLOOR
    exact: bool = True
    rotations: bool = True
    rotation_distance: int = 12
    workers: int = 2
    near: NearDuplicateConfig = field(default_factory=_near_config)
    keep: KeepRules = field(default_factory=_keep_rules)


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

    @property
    def folder(self) -> str:
        return os.path.dirname(self.path)

    @classmethod
    def from_record(cls, r: ImageRecord) -> "PhotoInfo":
        return cls(r.path, r.id, r.size, r.width, r.height, r.taken, r.mtime_ns / 1e9, r.hash)


@dataclass
class DuplicateGroup:
    """Photos of one tier; ``members[0]`` is the one suggested to keep (by ``rules``).

    ``similarity``: the weakest descriptor similarity inside the group (1.0 for exact);
    ``evidence``: what confirmed it (the weakest verified pair, for near groups)."""

    members: list[PhotoInfo]
    tier: str
    similarity: float
    evidence: str = ""
    rules: KeepRules = field(default_factory=KeepRules)
    others: list[str] = field(init=False)
    reason: str = field(init=False)

    def __post_init__(self) -> None:
        if self.tier not in TIERS:
            raise ValueError(f"unknown tier {self.tier!r}")
        self.members = self.rules.sort(self.members)
        # A symbolic link to another member is no copy: keeping it and moving "the others"
        # would move the only real file. A real file is kept whenever there is one.
        real = [m for m in self.members if not os.path.islink(m.path)]
        if real and real[0] is not self.members[0]:
            self.members.remove(real[0])
            self.members.insert(0, real[0])
        self.others = [m.path for m in self.members[1:]]
        keep = self.members[0]
        # Against the best member that is not an identical file (identical files tie on every rule).
        differ = [m for m in self.members[1:] if (m.hash, m.size) != (keep.hash, keep.size)]
        if differ:
            mixed = len({_format_family(m.path) for m in self.members}) > 1
            self.reason = self.rules.reason(keep, differ[0], mixed)
        else:
            self.reason = "identical files: the first by path" if len(self.members) > 1 else ""

    @property
    def exact(self) -> bool:
        return self.tier == "exact"

    @property
    def removable(self) -> bool:
        """Exact and near groups may be proposed for removal; similar groups never."""
        return self.tier != "similar"

    @property
    def keep(self) -> PhotoInfo:
        return self.members[0]

    @property
    def paths(self) -> list[str]:
        return [m.path for m in self.members]

    def with_members(self, members: list[PhotoInfo]) -> "DuplicateGroup":
        return DuplicateGroup(members, self.tier, self.similarity, self.evidence, self.rules)

    def to_json(self) -> dict:
        return {"tier": self.tier, "similarity": round(float(self.similarity), 4), "evidence": self.evidence,
                "keep": self.keep.path if self.removable else None,
                "keep_reason": self.reason if self.removable else None,
                "members": [{"path": m.path, "folder": m.folder, "width": m.width, "height": m.height,
                             "size": m.size, "date": m.date} for m in self.members]}


def sort_keep_first(members: Iterable[PhotoInfo], rules: KeepRules | None = None) -> list[PhotoInfo]:
    return (rules or KeepRules()).sort(members)


class SimilarityGraph:
    """kNN graph of a set of l2-normalised vectors: edges ``(i, j, similarity, rank)``, ``i < j``.

    ``rank`` is the better of the two neighbour ranks (0 = nearest). Built once, with a faiss
    search of every vector against ``index`` (anything with faiss's ``search(x, k)``: the
    collection's search index; an exact one over ``vectors`` when None);
    :meth:`components` regroups at any threshold >= ``floor`` without touching the vectors.
    """

    def __init__(self, vectors: np.ndarray, k: int = DEFAULT_K, floor: float = DEFAULT_FLOOR,
                 batch: int = 4096, index=None, progress: Callable[[int, int], None] | None = None):
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.n = len(vectors)
        self.floor = float(floor)
        if self.n < 2:
            self.i = self.j = self.r = np.zeros(0, np.int64)
            self.s = np.zeros(0, np.float32)
            return
        if index is None:
            index = faiss.IndexFlatIP(vectors.shape[1])
            index.add(vectors)
        kk = min(self.n, k + 1)
        src, dst, sim, rank = [], [], [], []
        for start in range(0, self.n, batch):
            s, nn = index.search(vectors[start:start + batch], kk)
            rows = np.repeat(np.arange(start, start + len(s)), kk)
            ranks = np.tile(np.arange(kk), len(s))
            s, nn = s.ravel(), np.asarray(nn).ravel()
            ok = (nn >= 0) & (nn != rows) & (s >= self.floor)
            src.append(rows[ok])
            dst.append(nn[ok])
            sim.append(s[ok])
            rank.append(ranks[ok])
            if progress is not None:
                progress(min(self.n, start + batch), self.n)
        i, j, s, r = (np.concatenate(x) for x in (src, dst, sim, rank))
        # The query itself is rank 0 in a full search: neighbours start at 1.
        r = np.maximum(r - 1, 0)
        a, b = np.minimum(i, j), np.maximum(i, j)
        # De-duplicate (i,j) seen from both ends, keeping the larger similarity and better rank.
        order = np.lexsort((r, -s, b, a))
        a, b, s, r = a[order], b[order], s[order], r[order]
        first = np.ones(len(a), bool)
        first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
        best_rank = np.minimum.reduceat(r, np.flatnonzero(first)) if len(r) else r
        self.i, self.j = a[first].astype(np.int64), b[first].astype(np.int64)
        self.s = np.minimum(s[first], 1.0).astype(np.float32)
        self.r = best_rank.astype(np.int64)

    def components(self, threshold: float, drop: np.ndarray | None = None) -> list[list[int]]:
        """Connected components (of size >= 2) of the edges with similarity >= ``threshold``
        (``drop``: a boolean mask of edges to leave out)."""
        if threshold < self.floor - 1e-6:
            raise ValueError(f"threshold {threshold} is below the graph's floor {self.floor}; rebuild the graph")
        keep = self.s >= threshold
        if drop is not None:
            keep &= ~drop
        return components_of(self.n, self.i[keep], self.j[keep])

    def min_edge(self, members: Sequence[int], threshold: float) -> float:
        """Lowest similarity among the kept edges inside ``members`` (the group's weakest link)."""
        mem = np.zeros(self.n, bool)
        mem[list(members)] = True
        keep = (self.s >= threshold) & mem[self.i] & mem[self.j]
        return float(self.s[keep].min()) if keep.any() else float(threshold)


def components_of(n: int, i: np.ndarray, j: np.ndarray) -> list[list[int]]:
    """Connected components (size >= 2) of the undirected graph on ``n`` nodes with edges (i, j)."""
    if len(i) == 0:
        return []
    m = coo_matrix((np.ones(len(i), np.int8), (np.asarray(i), np.asarray(j))), shape=(n, n))
    _n, labels = connected_components(m, directed=False)
    counts = np.bincount(labels)
    groups: dict[int, list[int]] = {}
    for node in np.flatnonzero(counts[labels] >= 2):
        groups.setdefault(int(labels[node]), []).append(int(node))
    return list(groups.values())


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
    """Indices of photos sharing content hash and size, and of a RAW with its JPEG/HEIC
    side-car (one exposure saved twice by the camera: exact tier, the RAW kept), groups of >= 2."""
    by: dict[tuple[str, int], list[int]] = {}
    for k, p in enumerate(infos):
        by.setdefault((p.hash, p.size), []).append(k)
    groups = [g for g in by.values() if len(g) >= 2]
    return groups + [[raw, sidecar] for raw, sidecar in raw_sidecar_pairs([p.path for p in infos])]


def pair_key(a: PhotoInfo, b: PhotoInfo) -> tuple[str, str]:
    """How a pair's decision is stored: by content hashes (they survive moves and re-indexing),
    or by paths for two identical files (one hash)."""
    if a.hash == b.hash:
        return tuple(sorted((f"path:{a.path}", f"path:{b.path}")))  # type: ignore[return-value]
    return tuple(sorted((a.hash, b.hash)))  # type: ignore[return-value]


@dataclass(frozen=True)
class VerifyProgress:
    """``done`` of ``total`` candidate pairs checked (``cached`` of them known from an earlier
    run); ``phase`` "hashing" while the rotation hashes of new photos are computed (then
    ``done``/``total`` count photos)."""

    done: int
    total: int
    cached: int
    elapsed_s: float
    phase: str = "checking"

    @property
    def eta_s(self) -> float | None:
        fresh = self.done - self.cached
        if fresh <= 0 or self.done >= self.total:
            return None
        return self.elapsed_s / fresh * (self.total - self.done)


@dataclass
class VerifyReport:
    candidates: int = 0
    cached: int = 0
    checked: int = 0
    verified: int = 0
    seconds: float = 0.0
    cancelled: bool = False
    failed_steps: dict[str, int] = field(default_factory=dict)


class DuplicateFinder:
    """The three tiers of a set of photos with their search vectors (see the module docstring).

    ``catalog``: where decisions and verification results are read and written (None: in
    memory only). ``verifier``: the pair check (a :class:`NearDuplicateVerifier` by default).
    """

    def __init__(self, infos: Sequence[PhotoInfo], vectors: np.ndarray, config: DuplicateConfig = DuplicateConfig(),
                 catalog=None, verifier: NearDuplicateVerifier | None = None, index=None,
                 progress: Callable[[int, int], None] | None = None):
        if len(infos) != len(vectors):
            raise ValueError("one vector per photo is needed")
        self.infos = list(infos)
        self.config = config
        self.catalog = catalog
        self.verifier = verifier or NearDuplicateVerifier(config.near)
        self._verifier_key = self.verifier.config.key()
        floor = min(config.floor, config.threshold, config.candidate)
        self.graph = SimilarityGraph(vectors, config.k, floor, index=index, progress=progress)
        self._exact = exact_groups(self.infos) if config.exact else []
        self.decisions: dict[tuple[str, str], str] = catalog.pair_decisions() if catalog is not None else {}
        self._stored = catalog.pair_checks(self._verifier_key) if catalog is not None else {}
        self.checks: dict[tuple[int, int], PairCheck] = {}
        self.rotation_pairs: set[tuple[int, int]] = set()
        self._lock = threading.Lock()
        self.verify_ran = False   # verify() was called (groups() then uses what it checked)
        self.complete = False     # ... and ran to the end (not cancelled)

    @classmethod
    def from_collection(cls, collection, method: str | None = None, folder: str | os.PathLike | None = None,
                        config: DuplicateConfig | None = None, verifier: NearDuplicateVerifier | None = None,
                        progress: Callable[[int, int], None] | None = None) -> "DuplicateFinder":
        """Finder over ``collection``'s photos indexed with ``method`` (optionally under
        ``folder``), with the collection's decisions, stored checks and keep rules."""
        if config is None:
            config = DuplicateConfig(keep=load_keep_rules(collection.catalog))
        idx = collection.search_index(method)
        records = {r.id: r for r in collection.catalog.images()}
        rows = list(range(len(idx.ids)))
        if folder is not None:
            prefix = os.path.join(os.path.abspath(os.fspath(folder)), "")
            rows = [k for k in rows if idx.paths[k].startswith(prefix)]
        rows = [k for k in rows if int(idx.ids[k]) in records]
        infos = [PhotoInfo.from_record(records[int(idx.ids[k])]) for k in rows]
        vectors = idx.vectors[rows] if rows else np.zeros((0, idx.vectors.shape[1]), np.float32)
        # The whole collection: search through its index (approximate above 100k photos).
        whole = len(rows) == len(idx.ids)
        return cls(infos, vectors, config, collection.catalog, verifier, idx.index if whole else None, progress)

    # -- decisions ------------------------------------------------------------------------
    def decided(self, a: int, b: int) -> str | None:
        return self.decisions.get(pair_key(self.infos[a], self.infos[b]))

    def _same_content(self, a: int, b: int) -> bool:
        """Identical files, or a RAW and its side-car (the same exposure: exact tier too)."""
        pa, pb = self.infos[a], self.infos[b]
        return (pa.hash == pb.hash and pa.size == pb.size) or _raw_and_sidecar(pa.path, pb.path)

    # -- verification ---------------------------------------------------------------------
    def find_rotation_pairs(self, progress: Callable[[int, int], None] | None = None,
                            cancel: threading.Event | None = None) -> set[tuple[int, int]]:
        """Pairs whose pHashes agree once one photo is turned by 90, 180 or 270 degrees (the
        hashes are stored in the catalog by content hash: computed once per photo). Searched
        with a faiss binary index, ``verify_k`` neighbours per photo and turn."""
        if not self.config.rotations or len(self.infos) < 2:
            return set()
        hashes = rotation_hashes(self.infos, self.catalog, progress, cancel)
        if hashes is None:
            return set()
        as_bytes = np.ascontiguousarray(hashes).view(np.uint8).reshape(len(hashes), 4, 8)
        index = faiss.IndexBinaryFlat(64)
        index.add(np.ascontiguousarray(as_bytes[:, 0]))
        k = min(len(hashes), self.config.verify_k + 1)
        out: set[tuple[int, int]] = set()
        for turn in (1, 2, 3):
            dist, nn = index.search(np.ascontiguousarray(as_bytes[:, turn]), k)
            for a, (ds, ns) in enumerate(zip(dist, nn)):
                for d, b in zip(ds, ns):
                    if b >= 0 and b != a and d <= self.config.rotation_distance:
                        out.add((min(a, int(b)), max(a, int(b))))
        self.rotation_pairs = out
        return out

    def candidate_pairs(self) -> list[tuple[int, int]]:
        """Pairs to verify: close enough, among a photo's ``verify_k`` nearest (plus the
        rotation pairs :meth:`find_rotation_pairs` found), not the same content (the exact
        tier), not decided by a person. Ordered so that the photos of neighbouring pairs are
        near each other (reverse Cuthill-McKee), which keeps the memoised features of a photo
        in memory while its pairs are checked."""
        g, c = self.graph, self.config
        sel = np.flatnonzero((g.s >= c.candidate) & (g.r < c.verify_k))
        pairs = sorted({(int(g.i[e]), int(g.j[e])) for e in sel} | self.rotation_pairs)
        pairs = [(a, b) for a, b in pairs if not self._same_content(a, b) and self.decided(a, b) is None]
        if len(pairs) > 1:
            a = np.array([p[0] for p in pairs])
            b = np.array([p[1] for p in pairs])
            m = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(g.n, g.n)).tocsr()
            pos = np.empty(g.n, np.int64)
            pos[reverse_cuthill_mckee(m + m.T, symmetric_mode=True)] = np.arange(g.n)
            order = np.lexsort((np.minimum(pos[a], pos[b]), np.maximum(pos[a], pos[b])))
            pairs = [pairs[k] for k in order]
        return pairs

    def _stored_key(self, a: int, b: int) -> tuple[str, str]:
        return tuple(sorted((self.infos[a].hash, self.infos[b].hash)))  # type: ignore[return-value]

    def check(self, a: int, b: int) -> PairCheck:
        """The verification of one pair (memoised; stored in the catalog by :meth:`verify`)."""
        key = (min(a, b), max(a, b))
        with self._lock:
            hit = self.checks.get(key)
        if hit is not None:
            return hit
        stored = self._stored.get(self._stored_key(a, b))
        if stored is not None:
            res = PairCheck.from_json(json.loads(stored[1]))
        else:
            res = self.verifier.check(self.infos[key[0]].path, self.infos[key[1]].path)
            if self.catalog is not None and res.failed != "unreadable":
                row = (self.infos[a].hash, self.infos[b].hash, res.ok, json.dumps(res.to_json()))
                self.catalog.save_pair_checks(self._verifier_key, [row])
                self._stored[self._stored_key(a, b)] = (res.ok, row[3])
        with self._lock:
            self.checks[key] = res
        return res

    def verify(self, progress: Callable[[VerifyProgress], None] | None = None,
               cancel: threading.Event | None = None, commit_every: int = 64) -> VerifyReport:
        """Check every candidate pair (stored results are reused; new ones are stored in
        batches, so a cancelled or killed run resumes where it stopped)."""
        t0 = time.monotonic()
        self.verify_ran = True
        if self.config.rotations and not self.rotation_pairs:
            self.find_rotation_pairs(
                None if progress is None else
                lambda d, t: progress(VerifyProgress(d, t, 0, time.monotonic() - t0, "hashing")), cancel)
        pairs = self.candidate_pairs()
        rep = VerifyReport(candidates=len(pairs))
        todo = []
        for a, b in pairs:
            key = (a, b)
            if key in self.checks:
                rep.cached += 1
                continue
            stored = self._stored.get(self._stored_key(a, b))
            if stored is not None:
                self.checks[key] = PairCheck.from_json(json.loads(stored[1]))
                rep.cached += 1
            else:
                todo.append(key)
        done = rep.cached
        if progress is not None:
            progress(VerifyProgress(done, len(pairs), rep.cached, 0.0))
        pending: list[tuple[str, str, bool, str]] = []

        def flush() -> None:
            if pending and self.catalog is not None:
                self.catalog.save_pair_checks(self._verifier_key, pending)
                for ha, hb, v, d in pending:
                    self._stored[tuple(sorted((ha, hb)))] = (v, d)
            pending.clear()

        with ThreadPoolExecutor(max(1, self.config.workers)) as pool:
            step = max(1, commit_every)
            for s in range(0, len(todo), step):
                if cancel is not None and cancel.is_set():
                    rep.cancelled = True
                    break
                chunk = todo[s:s + step]
                results = list(pool.map(lambda ab: self.verifier.check(self.infos[ab[0]].path,
                                                                       self.infos[ab[1]].path), chunk))
                for (a, b), res in zip(chunk, results):
                    self.checks[(a, b)] = res
                    rep.checked += 1
                    if res.failed != "unreadable":  # a file that could not be read is tried again next time
                        pending.append((self.infos[a].hash, self.infos[b].hash, res.ok, json.dumps(res.to_json())))
                flush()
                done += len(chunk)
                if progress is not None:
                    progress(VerifyProgress(done, len(pairs), rep.cached, time.monotonic() - t0))
        flush()
        for a, b in pairs:
            res = self.checks.get((a, b))
            if res is None:
                continue
            if res.ok:
                rep.verified += 1
            else:
                rep.failed_steps[res.failed] = rep.failed_steps.get(res.failed, 0) + 1
        rep.seconds = time.monotonic() - t0
        self.complete = not rep.cancelled
        return rep

    # -- grouping -------------------------------------------------------------------------
    def _confirmed(self, a: int, b: int) -> bool:
        """May ``b`` be removed as a copy of ``a``? Same content, or verified (checked now if
        the kNN graph did not propose the pair); never when a person decided otherwise."""
        if self.decided(a, b) is not None:
            return False
        if self._same_content(a, b):
            return bool(self.config.exact)
        return self.check(a, b).ok

    def _sim(self, members: Sequence[int]) -> float:
        return self.graph.min_edge(members, self.graph.floor)

    def groups(self, threshold: float | None = None) -> list[DuplicateGroup]:
        """Exact groups, then near-duplicate groups, then similar groups (each largest first).

        ``threshold``: the similar tier's cosine threshold (the config's when None). Runs
        :meth:`verify` first if it has not run yet (after a cancelled run: what it checked)."""
        if not self.verify_ran:
            self.verify()
        t = self.config.threshold if threshold is None else float(threshold)
        rules = self.config.keep
        g = self.graph
        # Near and exact tiers: components of confirmed pairs, then split around the keep.
        ii, jj = [], []
        for (a, b), res in self.checks.items():
            if res.ok and self.decided(a, b) is None:
                ii.append(a)
                jj.append(b)
        for grp in self._exact:
            for b in grp[1:]:
                if self.decided(grp[0], b) is None:
                    ii.append(grp[0])
                    jj.append(b)
        removable: list[DuplicateGroup] = []
        in_group = np.full(g.n, -1, np.int64)
        for comp in components_of(g.n, np.array(ii, np.int64), np.array(jj, np.int64)):
            order = {id(p): k for k, p in zip(comp, [self.infos[k] for k in comp])}
            pending = [order[id(p)] for p in rules.sort([self.infos[k] for k in comp])]
            while len(pending) >= 2:
                keep, rest = pending[0], pending[1:]
                members = [keep] + [m for m in rest if self._confirmed(keep, m)]
                pending = [m for m in rest if m not in members]
                if len(members) < 2:
                    continue
                exact = all(self._same_content(keep, m) for m in members[1:])
                if exact:
                    same_bytes = all(self.infos[m].hash == self.infos[keep].hash for m in members[1:])
                    grp = DuplicateGroup([self.infos[k] for k in members], "exact", 1.0,
                                         "same content (identical files)" if same_bytes
                                         else "one exposure: the RAW and its JPEG/HEIC side-car", rules)
                else:
                    weakest = min((self.check(keep, m) for m in members[1:] if not self._same_content(keep, m)),
                                  key=lambda r: r.agreement)
                    grp = DuplicateGroup([self.infos[k] for k in members], "near", self._sim(members),
                                         "verified: " + weakest.describe(), rules)
                for k in members:
                    in_group[k] = len(removable)
                removable.append(grp)
        # Similar tier: descriptor neighbours >= t that are not inside one removable group.
        same = (in_group[g.i] >= 0) & (in_group[g.i] == in_group[g.j])
        decided = np.array([self.decided(int(a), int(b)) is not None for a, b in zip(g.i, g.j)], bool) \
            if self.decisions else np.zeros(len(g.i), bool)
        similar = []
        for comp in g.components(max(t, g.floor), drop=same | decided):
            units = {int(in_group[k]) if in_group[k] >= 0 else -1 - k for k in comp}
            if len(units) < 2:
                continue
            similar.append(DuplicateGroup([self.infos[k] for k in comp], "similar", g.min_edge(comp, t),
                                          "similar search vectors, not the same photo", rules))

        def order(grp: DuplicateGroup):
            return (-len(grp.members), -grp.similarity, grp.keep.path)

        exact = sorted((x for x in removable if x.tier == "exact"), key=order)
        near = sorted((x for x in removable if x.tier == "near"), key=order)
        return exact + near + sorted(similar, key=order)


PHASH_STATE = ("duplicates", "rotation-phash")  # (catalog state "method", kind)


def rotation_hashes(infos: Sequence[PhotoInfo], catalog=None, progress: Callable[[int, int], None] | None = None,
                    cancel: threading.Event | None = None, save_every: int = 2000) -> np.ndarray | None:
    """(N, 4) uint64 pHashes of each photo turned 0/90/180/270 degrees; known ones come from
    the catalog (by content hash), new ones are computed (one small decode each) and stored in
    batches. An unreadable photo gets hashes that match nothing. None when cancelled."""
    from engine.imaging.phash import phash_rotations

    known: dict[str, np.ndarray] = {}
    if catalog is not None:
        got = catalog.load_state(*PHASH_STATE)
        if got is not None:
            known = dict(zip(got[0]["hash"].tolist(), got[0]["phash"]))
    out = np.zeros((len(infos), 4), np.uint64)
    todo = []
    for k, p in enumerate(infos):
        h = known.get(p.hash)
        if h is None:
            todo.append(k)
        else:
            out[k] = h
    # A photo that cannot be read must match nothing: distinct random bits per photo.
    rng = np.random.default_rng(len(infos))

    def save() -> None:
        if catalog is not None and todo:
            keys = list(known)
            catalog.save_state(*PHASH_STATE, {"hash": np.array(keys), "phash": np.array([known[h] for h in keys],
                                                                                          np.uint64).reshape(-1, 4)})

    for n, k in enumerate(todo, 1):
        if cancel is not None and cancel.is_set():
            save()
            return None
        try:
            out[k] = np.array(phash_rotations(infos[k].path), np.uint64)
            known[infos[k].hash] = out[k].copy()
        except (ImageLoadError, OSError, ValueError):  # unreadable now: left out, tried again next time
            out[k] = rng.integers(0, 2**63, 4, dtype=np.uint64)
        if progress is not None and (n % 64 == 0 or n == len(todo)):
            progress(n, len(todo))
        if n % save_every == 0:
            save()
    save()
    return out


def tier_counts(groups: Iterable[DuplicateGroup]) -> dict[str, dict[str, int]]:
    """Per tier: groups, photos, and photos the suggestion would move (0 for similar)."""
    out = {t: {"groups": 0, "photos": 0, "could_go": 0} for t in TIERS}
    for g in groups:
        c = out[g.tier]
        c["groups"] += 1
        c["photos"] += len(g.members)
        c["could_go"] += len(g.members) - 1 if g.removable else 0
    return out


def not_duplicates(catalog, members: Sequence[PhotoInfo]) -> int:
    """Remember that these photos are not duplicates of each other (every pair)."""
    pairs = [pair_key(a, b) for k, a in enumerate(members) for b in members[k + 1:]]
    return catalog.set_pair_decisions(pairs, DISTINCT)


def mark_resolved(catalog, members: Sequence[PhotoInfo]) -> int:
    """Remember that a person reviewed these photos as one group (moved some, or kept all):
    no two of them are proposed together again."""
    pairs = [pair_key(a, b) for k, a in enumerate(members) for b in members[k + 1:]]
    return catalog.set_pair_decisions(pairs, RESOLVED)


def suggested_moves(groups: Iterable[DuplicateGroup]) -> list[tuple[DuplicateGroup, list[str]]]:
    """What "apply the suggestion" moves: for each exact or near group, all but its keep.
    Similar groups are never included."""
    moves = []
    for g in groups:
        keep = os.path.realpath(g.keep.path)
        # Never the file the kept one is (a link's target, a second path of the same file).
        others = [p for p in g.others if os.path.realpath(p) != keep] if g.removable else []
        if others:
            moves.append((g, others))
    return moves


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
            try:
                shutil.copyfileobj(fin, fout, 1 << 20)
                fout.flush()
                os.fsync(fout.fileno())
            except BaseException:  # disk full, unplugged: no partial copy under the photo's name
                fout.close()
                os.unlink(dst)
                raise
        shutil.copystat(src, dst)
        if os.path.getsize(dst) != os.path.getsize(src):
            os.unlink(dst)
            raise OSError(f"copy of {src} to {dst} is incomplete; the original is kept") from None
    os.unlink(src)


def move_to_folder(paths: Iterable[str | os.PathLike], folder: str | os.PathLike,
                   errors: list[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
    """Move files into ``folder`` (created if needed); returns ``(source, destination)`` pairs.

    Never deletes a file's content and never overwrites: a taken name gets a `` (n)`` suffix.
    A file that no longer exists is skipped (not in the result). ``errors``: when given, a file
    that cannot be moved (disk full, permissions) is listed there with its reason and the
    others are still moved, so what did move is never reported as nothing; without it the
    first such error is raised.
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
        try:
            moved.append((str(src), str(_move_to_free_name(src, dest))))
        except OSError as exc:
            if errors is None:
                raise
            errors.append((str(src), exc.strerror or str(exc)))
    return moved


def _move_to_free_name(src: Path, dest: Path) -> Path:
    for _attempt in range(100):
        dst = unique_destination(dest, src.name)
        try:
            _move_no_overwrite(src, dst)
            return dst
        except FileExistsError:
            continue  # someone took the name meanwhile: pick the next one
    raise OSError(f"could not find a free name for {src.name} in {dest}")  # pragma: no cover - 100 races
