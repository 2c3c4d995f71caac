"""Shared fixtures: generated photo-like images, the real datasets when present, markers."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def shared_dataset(name: str) -> Path:
    """Path of ``../shared/datasets/<name>``; skips the test with a reason when absent."""
    path = SHARED_DATASETS / name
    if not (path / "ground_truth.json").is_file():
        pytest.skip(f"real dataset {name} not available ({path} is absent: only in the developers' workspace)")
    return path


def pytest_collection_modifyitems(config, items):
    slow_ok = os.environ.get("LOOKALIKE_SLOW") == "1"
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except Exception:  # pragma: no cover
        has_gpu = False
    for item in items:
        if "slow" in item.keywords and not slow_ok:
            item.add_marker(pytest.mark.skip(reason="slow test: set LOOKALIKE_SLOW=1 to run"))
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))


def make_photo(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A photo-like image: smooth gradients, a few coloured shapes and noise (not flat colour)."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        a, b, ph = rng.uniform(0.005, 0.03, 3)
        img[..., c] = 128 + 80 * np.sin(a * xx + b * yy + ph * 10)
    for _ in range(6):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(10, min(w, h) / 3)
        color = rng.uniform(0, 255, 3)
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
        img[mask] = 0.3 * img[mask] + 0.7 * color
    for _ in range(4):
        x0, y0 = rng.integers(0, w - 20), rng.integers(0, h - 20)
        img[y0:y0 + rng.integers(10, h // 2), x0:x0 + rng.integers(10, w // 2)] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 6, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def write_scene_folder(root: Path) -> Path:
    """Six generated scenes ``scene{i}.jpg``, each with a slightly cropped, recompressed copy
    ``trip/scene{i}_copy.jpg`` (12 JPEGs in nested folders); returns ``root``."""
    (root / "trip").mkdir(parents=True)
    for i in range(6):
        img = make_photo(i)
        img.save(root / f"scene{i}.jpg", quality=92)
        w, h = img.size
        img.crop((8, 6, w - 8, h - 6)).resize((w, h)).save(root / "trip" / f"scene{i}_copy.jpg", quality=80)
    return root


@pytest.fixture
def photo_folder(tmp_path: Path) -> Path:
    """Six generated scenes, each with a slightly altered copy (12 JPEGs) in nested folders."""
    return write_scene_folder(tmp_path / "photos")


def write_copies_folder(root: Path, vary_other_sizes: bool = False) -> Path:
    """4 scenes ``scene{i}.jpg``, each with a 75 % copy, a quality-80 copy and a byte copy in
    ``copies/``, and 4 unrelated ``other{i}.jpg`` (widths 320, 360, ... when
    ``vary_other_sizes``); returns ``root``."""
    (root / "copies").mkdir(parents=True)
    for i in range(4):
        img = make_photo(100 + i, (320, 240))
        img.save(root / f"scene{i}.jpg", quality=92)
        img.resize((240, 180)).save(root / "copies" / f"scene{i}_small.jpg", quality=90)
        img.save(root / "copies" / f"scene{i}_q80.jpg", quality=80)
        shutil.copy2(root / f"scene{i}.jpg", root / "copies" / f"scene{i}_same.jpg")
    for i in range(4):
        make_photo(200 + i, (320 + (40 * i if vary_other_sizes else 0), 240)).save(root / f"other{i}.jpg", quality=90)
    return root
