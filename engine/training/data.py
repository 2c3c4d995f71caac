"""Training data: labelled groups of photos, group splits, and strong augmentation.

Two labelled layouts are read:

* a benchmark folder with ``ground_truth.json`` (``../shared/datasets/README.md`` format):
  its ``groups`` list when present, otherwise each query's positives form a group (groups
  that share an image are merged);
* a folder of folders: every sub-folder is one group (its images, recursively).

Self-supervised training on a personal collection has no labels: each photo is its own group
and its positives are made by :func:`strong_augment` (random resized crop, rotation, colour
jitter, perspective, JPEG re-compression).
"""
from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageEnhance

from engine.errors import LookalikeError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


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


def _merge_groups(groups: list[list[str]]) -> list[list[str]]:
    parent: dict[str, str] = {}

    def find(a: str) -> str:
        while parent.setdefault(a, a) != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for g in groups:
        for name in g:
            find(name)
        for name in g[1:]:
            parent[find(name)] = find(g[0])
    merged: dict[str, list[str]] = {}
    for name in parent:
        merged.setdefault(find(name), []).append(name)
    return [sorted(v) for _k, v in sorted(merged.items())]


def load_ground_truth_groups(folder: Path) -> LabelledImages:
    """Groups of a ``ground_truth.json`` benchmark folder (images not in any group are left out)."""
    gt = json.loads((folder / "ground_truth.json").read_text())
    img_dir = folder / gt.get("images_dir", "images")
    groups = gt.get("groups") or [q.get("positives", []) for q in gt.get("queries", [])]
    groups = _merge_groups([list(g) for g in groups if g])
    paths, labels = [], []
    for gi, g in enumerate(groups):
        for name in g:
            paths.append(img_dir / name)
            labels.append(gi)
    return LabelledImages(paths, np.asarray(labels, dtype=np.int64), str(folder))


def load_folder_groups(folder: Path) -> LabelledImages:
    """Folder-per-group layout: every sub-folder of ``folder`` is a group."""
    paths, labels = [], []
    subs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    for gi, sub in enumerate(subs):
        for p in sorted(sub.rglob("*")):
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
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
