"""Training data: labelled groups of photos, group splits, and strong augmentation.

Two labelled layouts are read:

* a benchmark folder with ``ground_truth.json``, read and validated by
  :func:`engine.evaluation.dataset.load_ground_truth` (the parser ``eval`` uses): each query's
  positives and the query photo itself form a group (the query photo left out where it is
  its own junk, as in the strict landmark sets), and groups that share an image are merged
  (so the photos of one UKBench object, one Holidays scene, one landmark are one group);
* a folder of folders: every sub-folder is one group (its images, recursively).

Self-supervised training on a personal collection has no labels: each photo is its own group
and its positives are made by :func:`strong_augment` (random resized crop, rotation, colour
jitter, perspective, JPEG re-compression).
"""
from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageEnhance
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from engine.errors import LookalikeError
from engine.evaluation.dataset import load_ground_truth
from engine.imaging.images import is_image_path


@dataclass
class LabelledImages:
    """Image paths with integer group labels (``labels[i]`` is the group of ``paths[i]``)."""

    paths: list[Path]
    labels: np.ndarray
    source: str = ""

    def __len__(self) -> int:
        return len(self.paths)

    def groups(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for i, g in enumerate(self.labels.tolist()):
            out.setdefault(int(g), []).append(i)
        return out

    def subset(self, indices: Sequence[int]) -> "LabelledImages":
        idx = list(indices)
        return LabelledImages([self.paths[i] for i in idx], self.labels[idx].copy(), self.source)


def merge_overlapping_groups(groups: Sequence[Sequence[str]]) -> list[list[str]]:
    """Groups that share a name merged into one (connected components of "listed together");
    each group sorted, the groups ordered by their first name."""
    names = sorted({n for g in groups for n in g})
    index = {n: i for i, n in enumerate(names)}
    pairs = [(index[g[0]], index[n]) for g in groups if g for n in g[1:]]
    rows, cols = (list(side) for side in zip(*pairs)) if pairs else ([], [])
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(names), len(names)))
    _count, component = connected_components(graph, directed=False)
    merged: dict[int, list[str]] = {}
    for name, c in zip(names, component.tolist()):
        merged.setdefault(c, []).append(name)
    return sorted(merged.values())


def load_ground_truth_groups(folder: Path) -> LabelledImages:
    """Groups of a ``ground_truth.json`` benchmark folder (images of no query are left out)."""
    dataset = load_ground_truth(folder)
    groups = merge_overlapping_groups([[*q.positives, *([q.image] if q.image not in q.junk else [])]
                                       for q in dataset.queries])
    paths, labels = [], []
    for gi, g in enumerate(groups):
        for name in g:
            paths.append(dataset.path_of(name))
            labels.append(gi)
    return LabelledImages(paths, np.asarray(labels, dtype=np.int64), str(folder))


def load_folder_groups(folder: Path) -> LabelledImages:
    """Folder-per-group layout: every sub-folder of ``folder`` is a group."""
    paths, labels = [], []
    subs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    for gi, sub in enumerate(subs):
        for p in sorted(sub.rglob("*")):
            if p.is_file() and is_image_path(p):
                paths.append(p)
                labels.append(gi)
    return LabelledImages(paths, np.asarray(labels, dtype=np.int64), str(folder))


def load_labelled(folder: str | Path) -> LabelledImages:
    """Labelled groups of ``folder`` (``ground_truth.json`` or folder-per-group)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise LookalikeError(f"Training data folder not found: {folder}")
    data = load_ground_truth_groups(folder) if (folder / "ground_truth.json").is_file() else load_folder_groups(folder)
    n_groups = len([g for g in data.groups().values() if len(g) >= 2])
    if n_groups < 2:
        raise LookalikeError(f"{folder} has {n_groups} group(s) with 2 or more photos; training needs at least 2.")
    return data


def split_groups(data: LabelledImages, train_fraction: float = 0.5, seed: int = 0) -> tuple[LabelledImages, LabelledImages]:
    """Split by *group* (no group on both sides): ``(train, held_out)``."""
    gids = sorted(data.groups())
    rng = np.random.default_rng(seed)
    rng.shuffle(gids)
    k = max(1, int(round(len(gids) * train_fraction)))
    train_g = set(gids[:k])
    tr = [i for i, g in enumerate(data.labels.tolist()) if g in train_g]
    te = [i for i, g in enumerate(data.labels.tolist()) if g not in train_g]
    return data.subset(tr), data.subset(te)


def data_hash(paths: Sequence[str | Path], content_hashes: Sequence[str] | None = None) -> str:
    """Hash identifying a training set: file names (and content hashes when given), order-free."""
    h = hashlib.blake2b(digest_size=16)
    keys = [f"{Path(p).name}:{c}" for p, c in zip(paths, content_hashes or [""] * len(paths))]
    for k in sorted(keys):
        h.update(k.encode("utf-8", "surrogateescape"))
        h.update(b"\0")
    return h.hexdigest()


def _perspective_coeffs(src: list[tuple[float, float]], dst: list[tuple[float, float]]) -> list[float]:
    a, b = [], []
    for (x, y), (u, v) in zip(dst, src):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        b += [u, v]
    return np.linalg.solve(np.asarray(a, float), np.asarray(b, float)).tolist()


def strong_augment(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A strongly altered view of ``img`` for self-supervised positives (deterministic given ``rng``).

    Random resized crop (35-100 % of the area, aspect 3/4..4/3), rotation (±15°), perspective
    (corners moved up to 8 % of the side), colour jitter (brightness, contrast, saturation
    ×0.6..1.4) and JPEG re-compression (quality 30..85). Output has the input's size.
    """
    img = img.convert("RGB")
    w, h = img.size
    # random resized crop
    for _ in range(10):
        area = w * h * rng.uniform(0.35, 1.0)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        cw, ch = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
        if 0 < cw <= w and 0 < ch <= h:
            x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            img = img.crop((x0, y0, x0 + cw, y0 + ch)).resize((w, h), Image.BILINEAR)
            break
    img = img.rotate(float(rng.uniform(-15, 15)), resample=Image.BILINEAR, expand=False)
    d = 0.08
    src = [(0, 0), (w, 0), (w, h), (0, h)]
    dst = [(x + float(rng.uniform(-d, d)) * w, y + float(rng.uniform(-d, d)) * h) for x, y in src]
    img = img.transform((w, h), Image.PERSPECTIVE, _perspective_coeffs(src, dst), Image.BILINEAR)
    img = ImageEnhance.Brightness(img).enhance(float(rng.uniform(0.6, 1.4)))
    img = ImageEnhance.Contrast(img).enhance(float(rng.uniform(0.6, 1.4)))
    img = ImageEnhance.Color(img).enhance(float(rng.uniform(0.6, 1.4)))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(rng.integers(30, 86)))
    buf.seek(0)
    out = Image.open(buf)
    out.load()
    return out.convert("RGB")
