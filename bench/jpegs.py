"""Synthetic 12-megapixel JPEGs with real content variation, generated in a temp folder.

Each image mixes: an upscaled crop of a real photo from ``../shared/datasets`` when present
(else a procedural scene), multi-scale noise fields, colour gradients, a few filled shapes,
and per-pixel sensor-like grain, then is saved as a quality-90 JPEG (~3-5 MB, like a phone
photo). Never committed: generated at bench time.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def source_photos(limit: int = 64) -> list[Path]:
    """Real photos to crop from (the shared datasets), or [] when absent."""
    out: list[Path] = []
    for name in ("oxford_dev", "holidays_samples", "ukbench56"):
        d = SHARED / name / "images"
        if d.is_dir():
            out.extend(sorted(p for p in d.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")))
        if len(out) >= limit:
            break
    return out[:limit]


def _noise_field(rng, shape, scales=(4, 16, 64)) -> np.ndarray:
    h, w = shape
    acc = np.zeros((h, w), np.float32)
    for s in scales:
        small = rng.standard_normal((max(2, h // s), max(2, w // s))).astype(np.float32)
        im = Image.fromarray(small, mode="F").resize((w, h), Image.Resampling.BICUBIC)
        acc += np.asarray(im) * (s / max(scales))
    return acc


def make_photo(i: int, size=(4000, 3000), sources: list[Path] | None = None, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng((seed, i))
    w, h = size
    bw, bh = w // 4, h // 4  # compose at quarter size, then upscale
    yy, xx = np.mgrid[0:bh, 0:bw].astype(np.float32)
    base = np.zeros((bh, bw, 3), np.float32)
    for c in range(3):
        a, b = rng.uniform(-1, 1, 2) / max(bw, bh)
        base[..., c] = 128 + 60 * np.sin(6 * (a * xx + b * yy) + rng.uniform(0, 6)) + 25 * _noise_field(rng, (bh, bw))
    if sources:
        with Image.open(sources[i % len(sources)]) as src:
            src = src.convert("RGB")
            sw, sh = src.size
            cw, ch = int(sw * rng.uniform(0.5, 0.9)), int(sh * rng.uniform(0.5, 0.9))
            x0, y0 = int(rng.integers(0, sw - cw + 1)), int(rng.integers(0, sh - ch + 1))
            crop = np.asarray(src.crop((x0, y0, x0 + cw, y0 + ch)).resize((bw, bh), Image.Resampling.BICUBIC), np.float32)
        base = 0.75 * crop + 0.25 * base
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 8))):
        x0, y0 = int(rng.integers(0, bw)), int(rng.integers(0, bh))
        x1, y1 = x0 + int(rng.integers(20, bw // 3)), y0 + int(rng.integers(20, bh // 3))
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=fill)
    big = np.asarray(img.resize((w, h), Image.Resampling.BICUBIC)).astype(np.int16)
    big += rng.integers(-6, 7, big.shape, dtype=np.int16)  # sensor-like grain: real JPEG entropy
    return Image.fromarray(np.clip(big, 0, 255).astype(np.uint8))


def make_jpegs(folder: Path, n: int, size=(4000, 3000), seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    sources = source_photos()
    paths = []
    for i in range(n):
        p = folder / f"synthetic_{i:04d}.jpg"
        make_photo(i, size, sources, seed).save(p, quality=90)
        paths.append(p)
    return paths
