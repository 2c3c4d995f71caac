"""Bad-input corpus (issue 10): every odd file is indexed correctly or recorded as failed.

The corpus is generated here (no committed binaries): empty, truncated and fake JPEGs,
every Pillow mode we meet in real folders, animated files, EXIF orientations 1-8,
decompression-bomb headers, extreme sizes, unreadable files, symlink loops, odd names,
a folder named like a photo, and files deleted or rewritten while the indexer reads them.
For each one the test states what must happen; nothing may crash and the good photos of
the same folder must all be indexed.
"""
from __future__ import annotations

import io
import json
import os
import re
import resource
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

import engine.indexing.indexer as indexer_mod
from engine.api import Collection
from engine.store.catalog import content_hash
from engine.errors import ImageLoadError
from engine.imaging.images import MAX_PIXELS, load_image
from tests.conftest import make_photo

SMALL = {"image_side": 96}
# A reason a person can read: a sentence, not a traceback or a bare exception name.
UNREADABLE_REASON = re.compile(r"Traceback|^\w+Error$|^$")
# Orientation tag -> transpose that turns the upright photo into the stored pixels
# (the inverse of what a viewer, and ImageOps.exif_transpose, applies).
STORE_AS = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


# -- generators ---------------------------------------------------------------------------
def jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", **kw)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature + IHDR claiming ``width x height`` RGB, with a tiny IDAT.

    Nothing of the claimed size is ever allocated by the generator.
    """
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose SOF0 header is patched to claim ``width x height``."""
    data = bytearray(jpeg_bytes(make_photo(1, (64, 48))))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 7] = struct.pack(">H", height)
    data[sof + 7:sof + 9] = struct.pack(">H", width)
    return bytes(data)


def with_orientation(upright: Image.Image, tag: int) -> bytes:
    stored = upright if STORE_AS[tag] is None else upright.transpose(STORE_AS[tag])
    exif = Image.Exif()
    exif[0x0112] = tag
    return jpeg_bytes(stored, quality=95, exif=exif.tobytes())


def build_corpus(root: Path) -> dict[str, tuple[str, str | None]]:
    """Write the corpus under ``root``; returns ``relative path -> (expected, reason regex)``.

    ``expected`` is "ok" (indexed), "failed" (recorded with a reason matching the regex),
    "either" (a decoder may accept it; then it must be indexed, else failed with a reason)
    or "absent" (not an image file of the collection: neither indexed nor failed).
    """
    root.mkdir(parents=True, exist_ok=True)
    exp: dict[str, tuple[str, str | None]] = {}

    def put(name: str, data: bytes, expected: str, reason: str | None = None) -> None:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
        exp[name] = (expected, reason)

    def save(name: str, img: Image.Image, expected: str = "ok", **kw) -> None:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        img.save(root / name, **kw)
        exp[name] = (expected, None)

    for i in range(6):  # the good photos that must index whatever else is in the folder
        save(f"good/photo{i}.jpg", make_photo(100 + i), quality=90)

    photo = make_photo(7, (320, 240))
    full = jpeg_bytes(photo, quality=90)
    put("bad/empty.jpg", b"", "failed", r"empty \(0 bytes\)")
    put("bad/notes.jpg", b"This is a text file that only pretends to be a photo.\n" * 20,
        "failed", r"not a recognised image format")
    for cut in (2, 200, len(full) // 3, len(full) // 2):
        put(f"bad/truncated_{cut}.jpg", full[:cut], "failed", r"truncated|not a recognised|could not be decoded")
    # Only the end-of-image marker is missing: every scan line is there, so decoders differ.
    put("bad/truncated_no_eoi.jpg", full[:-2], "either", r"truncated|could not be decoded")
    put("bad/bomb_30000x30000.png", png_header_only(30000, 30000), "failed", r"decompression bomb|safety limit")
    put("bad/bomb_30000x30000.jpg", jpeg_claiming(30000, 30000), "failed", r"decompression bomb|safety limit")
    put("bad/bomb_15000x15000.png", png_header_only(15000, 15000), "failed", r"decompression bomb|safety limit")

    rgba = photo.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(photo.size))
    save("modes/alpha.png", rgba)
    save("modes/palette.png", photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=64))
    pal_t = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    save("modes/palette_transparent.png", pal_t, transparency=0)
    save("modes/grey.png", photo.convert("L"))
    save("modes/grey_alpha.png", photo.convert("LA"))
    save("modes/bilevel.png", photo.convert("1"))
    save("modes/cmyk.jpg", photo.convert("CMYK"), quality=90)
    grey16 = Image.fromarray((np.asarray(photo.convert("L"), np.uint16) * 257).astype(np.uint16))
    save("modes/grey16.png", grey16)
    save("modes/grey16.tif", grey16)
    save("modes/rgb.tif", photo, compression="tiff_lzw")
    frames = [Image.new("RGB", (120, 90), c) for c in ((220, 30, 30), (30, 30, 220), (30, 220, 30))]
    save("anim/animated.gif", frames[0], save_all=True, append_images=frames[1:], duration=100, loop=0)
    if features.check("webp"):
        save("anim/animated.webp", frames[0], save_all=True, append_images=frames[1:], duration=100, loop=0)

    upright = make_photo(42, (320, 200))
    for tag in range(1, 9):
        put(f"exif/orientation{tag}.jpg", with_orientation(upright, tag), "ok")

    save("sizes/one_pixel.png", Image.new("RGB", (1, 1), (10, 200, 30)))
    save("sizes/wide_20000x50.png", make_photo(9, (2000, 50)).resize((20000, 50)))

    save("names/with spaces in the name.jpg", make_photo(11), quality=90)
    save("names/été à Tōkyō 東京 📷.jpg", make_photo(12), quality=90)
    bad_utf8 = os.fsdecode(b"names/caf\xe9 \xff\xfe.jpg")  # not valid UTF-8: surrogate-escaped
    with open(os.path.join(os.fsencode(root), os.fsencode(bad_utf8)), "wb") as f:
        f.write(jpeg_bytes(make_photo(13), quality=90))
    exp[bad_utf8] = ("ok", None)
    bad_utf8_broken = os.fsdecode(b"bad/\xff broken.jpg")
    with open(os.path.join(os.fsencode(root), os.fsencode(bad_utf8_broken)), "wb") as f:
        f.write(b"not a photo")
    exp[bad_utf8_broken] = ("failed", r"not a recognised image format")
    save("names/UPPER.JPEG", make_photo(14), quality=90)

    (root / "folder.jpg").mkdir()  # a directory named like a photo is walked into, never "failed"
    save("folder.jpg/inside.jpg", make_photo(15), quality=90)
    os.symlink(root, root / "folder.jpg" / "loop_to_root")  # a directory symlink loop
    os.symlink("self_loop.jpg", root / "bad" / "self_loop.jpg")  # a file symlink pointing at itself
    exp["bad/self_loop.jpg"] = ("failed", r"cannot be read|symbolic links|not a regular file")
    os.symlink(root / "does_not_exist.jpg", root / "bad" / "dangling.jpg")
    exp["bad/dangling.jpg"] = ("failed", r"cannot be read|no longer exists|No such file")
    put("notes.txt", b"not a photo, not an image extension", "absent")
    return exp


def outcome(col: Collection, root: Path) -> tuple[dict[str, str], dict[str, int]]:
    """``relative path -> failure reason`` and ``relative path -> image id`` from the catalog."""
    failed = {os.path.relpath(p, root): r for p, r in col.catalog.failures()}
    indexed = {os.path.relpath(r.path, root): r.id for r in col.catalog.images()}
    return failed, indexed


@pytest.fixture(scope="module")
def indexed_corpus(tmp_path_factory):
    base = tmp_path_factory.mktemp("corpus")
    root = base / "photos"
    expected = build_corpus(root)
    col = Collection.open(base / "cat", device="cpu")
    report = col.index(method="mac", folders=[str(root)], overrides=SMALL)
    yield col, root, expected, report
    col.close()


# -- the corpus, indexed in one run ---------------------------------------------------------
def test_every_corpus_file_is_indexed_or_failed_with_a_readable_reason(indexed_corpus):
    col, root, expected, report = indexed_corpus
    failed, indexed = outcome(col, root)
    problems = []
    for name, (want, reason) in sorted(expected.items()):
        got = "ok" if name in indexed else "failed" if name in failed else "absent"
        if want == "either" and got in ("ok", "failed"):
            want = got
        if got != want:
            problems.append(f"{name}: expected {want}, got {got} {failed.get(name, '')}")
        elif got == "failed":
            if UNREADABLE_REASON.search(failed[name]) or (reason and not re.search(reason, failed[name])):
                problems.append(f"{name}: unexpected reason {failed[name]!r}")
    assert problems == []
    assert not (set(failed) & set(indexed)), "a file is both indexed and failed"
    assert report.ignored == 1  # notes.txt is counted, not silently dropped
    assert col.catalog.check() == []


def test_failures_in_the_report_match_the_catalog(indexed_corpus):
    col, root, _expected, report = indexed_corpus
    assert sorted(p for p, _r in report.failed) == sorted(p for p, _r in col.catalog.failures())
    assert report.indexed == col.catalog.image_count()


def test_a_folder_named_like_a_photo_is_walked_into_and_not_failed(indexed_corpus):
    col, root, _expected, _report = indexed_corpus
    failed, indexed = outcome(col, root)
    assert "folder.jpg" not in failed and "folder.jpg/inside.jpg" in indexed
    # The symlink loop back to the root does not index the root's photos a second time.
    assert not any("loop_to_root" in p for p in indexed)


def test_paths_with_invalid_utf8_round_trip_to_the_real_file(indexed_corpus):
    col, root, _expected, _report = indexed_corpus
    odd = [r.path for r in col.catalog.images() if b"\xe9" in os.fsencode(r.path)]
    assert len(odd) == 1 and os.path.isfile(odd[0])
    # The stored descriptor is the one of that file (search by its own path finds itself).
    res = col.search(odd[0], top=1, rerank="none")  # descriptor scores
    assert res[0].path == odd[0] and res[0].score == pytest.approx(1.0, abs=1e-4)


def test_exif_orientations_give_the_descriptor_of_the_upright_photo(indexed_corpus):
    col, root, _expected, _report = indexed_corpus
    _ids, paths, desc = col.catalog.load_descriptors("mac")
    by_name = {os.path.relpath(p, root): d for p, d in zip(paths, desc)}
    ref = by_name["exif/orientation1.jpg"]
    m = col.method("mac")
    ext = col.extractor_for(m)
    upright = make_photo(42, (320, 200))
    # Without the EXIF rotation the descriptors would be clearly different: the check can fail.
    naive = m.describe([upright.transpose(STORE_AS[tag]) for tag in range(2, 9)], ext)
    for tag in range(2, 9):
        d = by_name[f"exif/orientation{tag}.jpg"]
        assert float(d @ ref) > 0.99, f"orientation {tag}: {float(d @ ref):.3f}"
        assert float(naive[tag - 2] @ ref) < float(d @ ref) - 0.05, f"orientation {tag} is not discriminative"
    rec = {os.path.relpath(r.path, root): r for r in col.catalog.images()}
    for tag in range(1, 9):
        assert (rec[f"exif/orientation{tag}.jpg"].width, rec[f"exif/orientation{tag}.jpg"].height) == (320, 200)


def test_a_second_run_recomputes_nothing_and_retries_no_unchanged_failure(indexed_corpus):
    col, root, _expected, report = indexed_corpus
    again = col.index(method="mac", overrides=SMALL)
    assert again.indexed == 0 and again.unchanged == report.indexed
    assert len(again.failed) == len(report.failed)


# -- load_image on individual odd files ----------------------------------------------------
def test_modes_become_8bit_rgb_with_alpha_on_white(tmp_path):
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    rgba.save(tmp_path / "clear.png")
    assert load_image(tmp_path / "clear.png").getpixel((3, 3)) == (255, 255, 255)
    g16 = Image.fromarray(np.linspace(0, 65535, 64, dtype=np.uint16).reshape(8, 8))
    g16.save(tmp_path / "g16.png")
    out = load_image(tmp_path / "g16.png")
    assert out.mode == "RGB" and out.getpixel((0, 0))[0] == 0 and out.getpixel((7, 7))[0] == 255
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "red.jpg")
    r, g, b = load_image(tmp_path / "red.jpg").getpixel((4, 4))
    assert r > 200 and g < 60 and b < 60


@pytest.mark.parametrize("ext", ["gif", "webp"])
def test_animated_files_use_their_first_frame(tmp_path, ext):
    if ext == "webp" and not features.check("webp"):
        pytest.skip("this Pillow has no WebP support")
    frames = [Image.new("RGB", (40, 30), c) for c in ((220, 30, 30), (30, 30, 220))]
    frames[0].save(tmp_path / f"a.{ext}", save_all=True, append_images=frames[1:], duration=100, loop=0)
    with Image.open(tmp_path / f"a.{ext}") as probe:
        assert getattr(probe, "n_frames", 1) == 2
    r, g, b = load_image(tmp_path / f"a.{ext}").getpixel((20, 15))
    assert r > 150 and b < 100


@pytest.mark.parametrize("maker", [png_header_only, jpeg_claiming], ids=["png", "jpeg"])
def test_decompression_bomb_header_is_refused_without_allocating(tmp_path, maker):
    path = tmp_path / f"bomb.{'png' if maker is png_header_only else 'jpg'}"
    path.write_bytes(maker(30000, 30000))
    assert 30000 * 30000 > MAX_PIXELS
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    with pytest.raises(ImageLoadError, match="decompression bomb|safety limit") as err:
        load_image(path, max_side=128)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 256, f"peak memory grew by {grown_mib:.0f} MiB"  # decoding would need 2.5 GiB
    assert str(path) in str(err.value)


def test_extreme_aspect_and_one_pixel_images_are_described(tmp_path):
    col = Collection.open(tmp_path / "cat", device="cpu")
    m = col.method("mac", SMALL)
    ext = col.extractor_for(m)
    Image.new("RGB", (1, 1), (200, 10, 10)).save(tmp_path / "one.png")
    Image.new("RGB", (20000, 50), (10, 200, 10)).save(tmp_path / "wide.png")
    for name in ("one.png", "wide.png"):
        d = m.describe([load_image(tmp_path / name, m.decode_side())], ext)
        assert d.shape[0] == 1 and np.isfinite(d).all()


# -- unreadable files ----------------------------------------------------------------------
def test_file_unreadable_by_permissions_is_failed_with_reason(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("running as root: root reads files whatever their permissions "
                    "(the injected PermissionError test covers the code path)")
    root = tmp_path / "p"
    root.mkdir()
    make_photo(1).save(root / "ok.jpg")
    make_photo(2).save(root / "secret.jpg")
    os.chmod(root / "secret.jpg", 0)
    try:
        col = Collection.open(tmp_path / "cat", device="cpu")
        r = col.index(method="mac", folders=[str(root)], overrides=SMALL)
    finally:
        os.chmod(root / "secret.jpg", 0o644)
    assert r.indexed == 1
    assert [(os.path.basename(p), reason) for p, reason in r.failed] == [("secret.jpg", "permission denied when reading the file")]


def test_injected_permission_error_is_failed_with_reason(tmp_path, monkeypatch):
    root = tmp_path / "p"
    root.mkdir()
    make_photo(1).save(root / "ok.jpg")
    make_photo(2).save(root / "secret.jpg")
    real_open = Image.open

    def deny(fp, *a, **kw):
        if os.fspath(fp).endswith("secret.jpg"):
            raise PermissionError(13, "Permission denied", os.fspath(fp))
        return real_open(fp, *a, **kw)

    monkeypatch.setattr(Image, "open", deny)
    col = Collection.open(tmp_path / "cat", device="cpu")
    r = col.index(method="mac", folders=[str(root)], overrides=SMALL)
    assert r.indexed == 1
    assert [(os.path.basename(p), reason) for p, reason in r.failed] == [("secret.jpg", "permission denied when reading the file")]


# -- files that change while the indexer reads them -----------------------------------------
def _hooked_load_image(monkeypatch, action):
    """Make the indexer's ``load_image`` run ``action(path)`` once per file, before decoding."""
    real = indexer_mod.load_image
    done: set[str] = set()

    def hooked(path, *a, **kw):
        key = os.fspath(path)
        if key not in done:
            done.add(key)
            action(key)
        return real(path, *a, **kw)

    monkeypatch.setattr(indexer_mod, "load_image", hooked)


def test_file_deleted_while_indexing_is_failed_and_the_rest_indexes(tmp_path, monkeypatch):
    root = tmp_path / "p"
    root.mkdir()
    for i in range(5):
        make_photo(i).save(root / f"{i}.jpg")
    _hooked_load_image(monkeypatch, lambda p: os.unlink(p) if p.endswith("2.jpg") else None)
    col = Collection.open(tmp_path / "cat", device="cpu")
    r = col.index(method="mac", folders=[str(root)], overrides=SMALL)
    assert r.indexed == 4
    assert [os.path.basename(p) for p, _reason in r.failed] == ["2.jpg"]
    assert re.fullmatch(r"the file (no longer exists|was deleted while indexing)", r.failed[0][1])
    monkeypatch.undo()
    r2 = col.index(method="mac", overrides=SMALL)  # the failure of a vanished file is forgotten
    assert (r2.indexed, r2.unchanged, r2.failed) == (0, 4, []) and col.catalog.failures() == []


def test_file_rewritten_while_indexing_stores_the_descriptor_of_its_new_content(tmp_path, monkeypatch):
    root = tmp_path / "p"
    root.mkdir()
    for i in range(4):
        make_photo(i).save(root / f"{i}.jpg")
    target = root / "1.jpg"
    replacement = make_photo(99, (300, 200))

    def rewrite(path):  # a photo editor saves new pixels while the indexer reads the file
        replacement.save(path, quality=85)
        st = os.stat(path)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10**9))

    real_hash = indexer_mod.content_hash
    calls = {"n": 0}

    def hash_then_rewrite(path, *a, **kw):
        digest = real_hash(path, *a, **kw)
        if os.fspath(path) == str(target) and calls["n"] == 0:
            calls["n"] += 1
            rewrite(os.fspath(path))
        return digest

    monkeypatch.setattr(indexer_mod, "content_hash", hash_then_rewrite)
    col = Collection.open(tmp_path / "cat", device="cpu")
    r = col.index(method="mac", folders=[str(root)], overrides=SMALL)
    monkeypatch.undo()
    assert calls["n"] == 1
    assert r.indexed == 4 and r.failed == []
    rec = col.catalog.image_by_path(target)
    st = os.stat(target)
    assert (rec.size, rec.mtime_ns, rec.hash) == (st.st_size, st.st_mtime_ns, content_hash(target))
    shutil.copy(target, tmp_path / "fresh.jpg")
    _ids, paths, desc = col.catalog.load_descriptors("mac")
    stored = desc[paths.index(str(target))]
    m = col.method("mac")
    fresh = m.describe([load_image(tmp_path / "fresh.jpg", m.decode_side())], col.extractor_for(m))[0]
    np.testing.assert_allclose(stored, fresh, atol=1e-5)
    r2 = col.index(method="mac", overrides=SMALL)
    assert (r2.indexed, r2.unchanged) == (0, 4)


def test_cli_prints_undecodable_names_without_crashing_a_strict_utf8_terminal(indexed_corpus, monkeypatch):
    from engine.cli import main as cli_main

    col, root, _expected, _report = indexed_corpus
    outputs = {}
    for fmt in ("text", "json"):
        out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
        err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
        monkeypatch.setattr("sys.stdout", out)
        monkeypatch.setattr("sys.stderr", err)
        rc = cli_main(["status", "--catalog", str(col.directory)] + (["--json"] if fmt == "json" else []))
        out.flush()
        outputs[fmt] = (rc, out.buffer.getvalue().decode("utf-8"))
        monkeypatch.undo()
    assert outputs["text"][0] == 0 and "\\udcff broken.jpg" in outputs["text"][1]
    assert outputs["json"][0] == 0
    failed_paths = [f["path"] for f in json.loads(outputs["json"][1])["failed"]]
    odd = [p for p in failed_paths if b"\xff broken" in os.fsencode(p)]
    # The JSON escape gives back the exact bytes of the name: the path opens the real file.
    assert len(odd) == 1 and os.path.isfile(odd[0])


def test_a_folder_that_cannot_be_listed_is_failed_and_the_rest_indexes(tmp_path, monkeypatch):
    root = tmp_path / "p"
    (root / "locked").mkdir(parents=True)
    make_photo(1).save(root / "ok.jpg")
    make_photo(2).save(root / "locked" / "hidden.jpg")
    real_scandir = os.scandir

    def scandir(path="."):
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)  # root can list any folder: inject the error
    col = Collection.open(tmp_path / "cat", device="cpu")
    r = col.index(method="mac", folders=[str(root)], overrides=SMALL)
    assert r.indexed == 1
    assert r.failed == [(str(root / "locked"), "folder cannot be listed: Permission denied")]
    monkeypatch.undo()
    r = col.index(method="mac", overrides=SMALL)  # readable again: its photo is indexed
    assert (r.indexed, r.unchanged, r.failed) == (1, 1, [])
