"""Every photo format people have decodes upright to 8-bit RGB, indexes, and is found by its
own content: JPEG, PNG (8 and 16 bit), TIFF (8 and 16 bit), WebP, animated GIF/WebP, HEIC,
AVIF, camera RAW (DNG with and without its preview, turned by the camera's orientation)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.api import Collection
from engine.errors import ImageLoadError
from engine.imaging.images import is_image_path, load_image
from tests.conftest import make_photo
from tests.format_files import write_animation, write_dng, write_heif, write_png16, write_tiff16

SMALL = {"image_side": 160}


def _quadrants(w: int = 96, h: int = 64) -> Image.Image:
    """Red on the left half, green added on the top half: its orientation is readable."""
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 2, 0] = 220
    a[: h // 2, :, 1] = 200
    a[..., 2] = 60
    return Image.fromarray(a)


def _corner_colours(img: Image.Image) -> list[tuple[bool, bool]]:
    """(red?, green?) at the four corners, top-left, top-right, bottom-left, bottom-right."""
    a = np.asarray(img).astype(int)
    h, w = a.shape[:2]
    corners = [a[3, 3], a[3, w - 4], a[h - 4, 3], a[h - 4, w - 4]]
    return [(c[0] > 128, c[1] > 128) for c in corners]


UPRIGHT = [(True, True), (False, True), (True, False), (False, False)]
TURNED_CLOCKWISE = [(True, False), (True, True), (False, False), (False, True)]


@pytest.mark.parametrize("preview", [True, False], ids=["embedded-preview", "demosaiced"])
def test_dng_decodes_upright_with_the_cameras_colours(tmp_path, preview):
    path = write_dng(tmp_path / "cam.dng", _quadrants(), preview=preview)
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (96, 64)
    assert _corner_colours(img) == UPRIGHT


@pytest.mark.parametrize("preview", [True, False], ids=["embedded-preview", "demosaiced"])
def test_dng_is_turned_by_the_orientation_the_camera_recorded(tmp_path, preview):
    path = write_dng(tmp_path / "portrait.dng", _quadrants(), preview=preview, orientation=6)
    img = load_image(path)
    assert img.size == (64, 96)
    assert _corner_colours(img) == TURNED_CLOCKWISE


def test_a_preview_smaller_than_needed_falls_back_to_the_sensor_data(tmp_path, monkeypatch):
    import engine.imaging.formats as formats

    path = write_dng(tmp_path / "cam.dng", _quadrants(), preview=True)
    used = []
    real = formats._embedded_preview
    monkeypatch.setattr(formats, "_embedded_preview", lambda raw, side: used.append(side) or real(raw, side))
    assert load_image(path, max_side=64).size == (64, 43)  # the 96-px preview is big enough
    assert load_image(path).size == (96, 64)
    # Asking for more than the sensor has is capped at the sensor's size, not refused.
    assert used == [64, 96]


def test_a_file_named_raw_that_is_not_one_fails_with_a_reason(tmp_path):
    bad = tmp_path / "broken.nef"
    bad.write_bytes(b"this is not a camera file" * 40)
    with pytest.raises(ImageLoadError, match="RAW|not supported"):
        load_image(bad)


@pytest.mark.parametrize("ext", [".heic", ".avif"])
def test_heif_family_decodes(tmp_path, ext):
    img = load_image(write_heif(tmp_path / f"phone{ext}", _quadrants()))
    assert img.mode == "RGB" and _corner_colours(img) == UPRIGHT


def test_heif_without_its_plugin_names_the_missing_package(tmp_path, monkeypatch):
    import engine.imaging.formats as formats

    monkeypatch.setattr(formats, "HEIF_SUPPORT_ERROR", "HEIC/HEIF/AVIF photos need the pillow-heif package")
    fake = tmp_path / "phone.heic"
    fake.write_bytes(b"\x00\x00\x00\x18ftypheic" + b"\x00" * 64)
    with pytest.raises(ImageLoadError, match="pillow-heif"):
        load_image(fake)


@pytest.mark.parametrize("writer", [write_png16, write_tiff16], ids=["png16", "tiff16"])
def test_16_bit_rgb_becomes_the_same_8_bit_picture(tmp_path, writer):
    src = make_photo(3, (80, 60))
    img = load_image(writer(tmp_path / ("deep.png" if writer is write_png16 else "deep.tif"), src))
    assert img.mode == "RGB"
    assert np.abs(np.asarray(img).astype(int) - np.asarray(src).astype(int)).max() <= 1


def test_a_16_bit_greyscale_photo_taller_than_one_strip_is_stretched_to_its_full_range(tmp_path):
    rng = np.random.default_rng(7)
    deep = rng.integers(1000, 60000, size=(3100, 1500), dtype=np.uint16)  # 2 strips (2,796 rows each at most)
    deep[5, 5], deep[3000, 10] = 1000, 60000
    Image.fromarray(deep).save(tmp_path / "grey16.png")
    img = load_image(tmp_path / "grey16.png")
    want = ((deep.astype(np.float64) - 1000) * (255.0 / 59000)).astype(np.uint8)  # the whole-array formula
    assert img.mode == "RGB" and img.size == (1500, 3100)
    np.testing.assert_array_equal(np.asarray(img)[..., 0], want)
    assert np.asarray(img)[5, 5, 0] == 0 and np.asarray(img)[3000, 10, 0] == 255


def test_decoding_leaves_the_process_wide_warning_filters_alone(tmp_path, monkeypatch):
    """Indexing threads read headers while others decode: a decode that turned Pillow's
    DecompressionBombWarning into an error for its own call (warnings.catch_warnings) did so for
    every thread, and a 225 MP header read beside it raised and stopped the index run."""
    import warnings

    import engine.imaging.images as images

    make_photo(4, (64, 48)).save(tmp_path / "p.jpg")
    seen = []
    real_open = images.Image.open
    monkeypatch.setattr(images.Image, "open", lambda *a, **k: (seen.append(list(warnings.filters)), real_open(*a, **k))[1])
    before = list(warnings.filters)
    load_image(tmp_path / "p.jpg")
    assert seen == [before] and list(warnings.filters) == before


def test_raw_and_heif_extensions_are_photos():
    for name in ("a.DNG", "b.cr3", "c.nef", "d.arw", "e.raf", "f.orf", "g.rw2", "h.cr2", "i.HEIC", "j.avif"):
        assert is_image_path(name), name


def _one_file_per_format(root: Path) -> dict[str, Image.Image]:
    """``file name -> the picture it shows``; every picture differs."""
    root.mkdir()
    shown: dict[str, Image.Image] = {}
    makers = {
        "a.jpg": lambda p, im: im.save(p, quality=92), "b.png": lambda p, im: im.save(p),
        "c.webp": lambda p, im: im.save(p, quality=90), "d.tif": lambda p, im: im.save(p),
        "e.bmp": lambda p, im: im.save(p), "f16.png": write_png16, "g16.tif": write_tiff16,
        "h.heic": write_heif, "i.avif": write_heif,
        "j.gif": lambda p, im: write_animation(p, im.quantize(256).convert("RGB"), make_photo(99, im.size)),
        "k_anim.webp": lambda p, im: write_animation(p, im, make_photo(98, im.size)),
        "l.dng": lambda p, im: write_dng(p, im, preview=True),
        "m_sensor.dng": lambda p, im: write_dng(p, im, preview=False),
    }
    for seed, (name, make) in enumerate(makers.items()):
        pic = make_photo(100 + seed, (240, 180))
        make(root / name, pic)
        shown[name] = pic
    (root / "z_broken.cr2").write_bytes(b"\x00garbage" * 100)
    return shown


def test_a_folder_with_every_format_indexes_and_each_is_found_by_its_content(tmp_path):
    shown = _one_file_per_format(tmp_path / "photos")
    col = Collection.open(tmp_path / "cat", device="cpu")
    try:
        report = col.index(method="rmac", folders=[str(tmp_path / "photos")], overrides=SMALL)
        failed = {Path(p).name: reason for p, reason in col.catalog.failures()}
        assert set(failed) == {"z_broken.cr2"}, failed
        assert report.indexed == len(shown)
        for name, pic in shown.items():
            query = tmp_path / f"query_{Path(name).stem}.png"
            pic.save(query)
            top = col.search(query, method="rmac", top=1, rerank="none")[0]
            assert Path(top.path).name == name
    finally:
        col.close()
