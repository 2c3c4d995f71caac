"""Near-duplicate verification (engine.services.near_duplicate) and the finder's tiers, decisions and resumption.

Photos are generated (tests/conftest.make_photo): an edited copy must verify, another photo of
similar texture and "another shot" of the same scene (a new viewpoint, a burst with something
moved) must not.
"""
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from engine.api import Collection
from engine.services.duplicates import (DuplicateConfig, DuplicateFinder, KeepRules, PhotoInfo, load_keep_rules,
                               mark_resolved, not_duplicates, save_keep_rules, suggested_moves)
from engine.services.near_duplicate import NearDuplicateVerifier, block_agreement
from tests.conftest import make_photo

SIZE = (640, 480)


def _photo(seed: int) -> Image.Image:
    """A generated photo with fine texture (more local features than make_photo's flat shapes)."""
    img = make_photo(seed, SIZE)
    rng = np.random.default_rng(seed + 1000)
    d = ImageDraw.Draw(img)
    for _ in range(120):  # small marks all over, as windows, leaves and signs are in a real photo
        x, y = rng.integers(0, SIZE[0] - 12), rng.integers(0, SIZE[1] - 12)
        d.rectangle((x, y, x + rng.integers(3, 12), y + rng.integers(3, 12)), fill=tuple(rng.integers(0, 255, 3).tolist()))
    return img


def _edits(img: Image.Image) -> dict[str, Image.Image]:
    w, h = img.size
    stamped = img.copy()
    ImageDraw.Draw(stamped).rectangle((w - 200, h - 50, w - 10, h - 10), fill=(255, 255, 255))
    return {
        "resized": img.resize((w // 2, h // 2), Image.Resampling.LANCZOS),
        "quarter": img.resize((w // 4, h // 4), Image.Resampling.LANCZOS),
        "cropped": img.crop((40, 30, w - 60, h - 40)),
        "warped": img.rotate(4, resample=Image.Resampling.BICUBIC).crop((50, 40, w - 50, h - 40)),
        "brighter": ImageEnhance.Contrast(ImageEnhance.Brightness(img).enhance(1.3)).enhance(1.2),
        "grey": ImageOps.grayscale(img).convert("RGB"),
        "rotated": img.transpose(Image.Transpose.ROTATE_90),
        "stamped": stamped,
    }


def _save(img: Image.Image, path: Path, **kw) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **({"quality": 85} if path.suffix == ".jpg" else {}), **kw)
    return str(path)


def _other_shots(img: Image.Image) -> dict[str, Image.Image]:
    """The same scene photographed again: from another viewpoint, and a burst where a large
    part changed (someone walked through)."""
    w, h = img.size
    # Perspective: the camera moved to the side (the far edge shrinks by 30 %).
    coeffs = _perspective_coeffs([(0, 0), (w, 0), (w, h), (0, h)],
                                 [(0, 0), (w, h * 0.15), (w, h * 0.85), (0, h)])
    viewpoint = img.transform((w, h), Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BICUBIC)
    burst = img.copy()
    burst.paste(make_photo(999, (w // 2, h // 2 + 60)), (w // 4, h // 5))
    return {"viewpoint": viewpoint, "burst": burst}


def _perspective_coeffs(dst, src):
    a = []
    for (x, y), (u, v) in zip(dst, src):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    return np.linalg.solve(np.array(a, float), np.array(src, float).ravel()).tolist()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("verify")
    orig = _photo(1)
    paths = {"original": _save(orig, root / "original.jpg")}
    for k, im in _edits(orig).items():
        paths[k] = _save(im, root / f"{k}.jpg")
    paths["png"] = _save(orig, root / "converted.png")
    for k, im in _other_shots(orig).items():
        paths[k] = _save(im, root / f"{k}.jpg")
    paths["different"] = _save(_photo(2), root / "different.jpg")  # same generator: similar texture
    return paths


EDITED = ["resized", "quarter", "cropped", "warped", "brighter", "grey", "rotated", "stamped", "png"]


@pytest.mark.parametrize("kind", EDITED)
def test_an_edited_copy_verifies(photos, kind):
    check = NearDuplicateVerifier().check(photos["original"], photos[kind])
    assert check.ok, check
    # Either order: the check does not depend on which photo is the original.
    assert NearDuplicateVerifier().check(photos[kind], photos["original"]).ok


@pytest.mark.parametrize("kind", ["different", "viewpoint", "burst"])
def test_another_photo_or_another_shot_does_not_verify(photos, kind):
    check = NearDuplicateVerifier().check(photos["original"], photos[kind])
    assert not check.ok and check.failed in ("geometry", "frame", "spread", "pixels"), check
    assert "not the same photo" in check.describe()


def test_an_unreadable_file_is_reported_not_raised(photos, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    check = NearDuplicateVerifier().check(photos["original"], str(broken))
    assert not check.ok and check.failed == "unreadable"


def test_block_agreement_ignores_flat_blocks_and_counts_changed_ones():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (40, 40)).astype(np.uint8)
    valid = np.ones_like(a, bool)
    assert block_agreement(a, a, valid, 10, 6.0, 0.6) == 1.0
    b = a.copy()
    b[:10, :10] = 128  # one block of 16 painted flat: it disagrees
    assert block_agreement(a, b, valid, 10, 6.0, 0.6) == pytest.approx(15 / 16)
    flat = np.full_like(a, 90)
    assert block_agreement(flat, flat, valid, 10, 6.0, 0.6) == 0.0  # nothing to compare


def _info(k, w=100, h=100, size=10, taken=None, mtime=1000.0, path=None):
    return PhotoInfo(path or f"/p/{k}.jpg", k, size, w, h, taken, mtime, f"h{k}")


def test_keep_best_order_resolution_then_file_then_format_then_folder_then_oldest(tmp_path):
    rules = KeepRules(folders=("/best",))
    big = _info(1, 400, 300, size=100)
    bigger_file = _info(2, 400, 300, size=200)
    assert rules.sort([big, bigger_file])[0] is bigger_file
    huge = _info(3, 800, 600, size=50)
    order = rules.sort([big, bigger_file, huge])
    assert order[0] is huge and "largest resolution (800 × 600)" in rules.reason(huge, order[1])
    heic = _info(4, 400, 300, size=100, path="/p/4.heic")
    assert rules.sort([big, heic])[0] is heic and "preferred format (HEIC)" in rules.reason(heic, big)
    # Across formats a larger file is not a better one (a PNG made from a JPEG): the next rule decides.
    png_copy = _info(7, 400, 300, size=900, path="/p/7.png", mtime=2000.0)
    group = rules.sort([png_copy, big])
    assert group[0] is big and rules.reason(big, png_copy, mixed_formats=True).startswith("oldest")
    in_best = _info(5, 400, 300, size=100, path="/best/5.jpg")
    assert rules.sort([big, in_best])[0] is in_best and "preferred folder" in rules.reason(in_best, big)
    old = _info(6, 400, 300, size=100, taken=5.0)
    assert rules.sort([big, old])[0] is old and rules.reason(old, big).startswith("oldest")
    # Adjustable: oldest first now beats resolution.
    oldest_first = KeepRules(order=("oldest", "resolution"))
    assert oldest_first.sort([huge, old])[0] is old
    with pytest.raises(ValueError):
        KeepRules(order=("prettiest",))


def _collection(tmp_path, photos, names):
    folder = tmp_path / "photos"
    folder.mkdir()
    for n in names:
        src = Path(photos[n])
        (folder / (n + src.suffix)).write_bytes(src.read_bytes())
    col = Collection.open(tmp_path / "cat")
    col.index(method="rmac", folders=[str(folder)], overrides={"image_side": 256})
    return col, folder


# Generated photos are more alike than real ones under R-MAC: verify every neighbour.
LOOSE = DuplicateConfig(candidate=0.3, floor=0.3, threshold=0.6)


def test_tiers_decisions_and_keep_rules_persist_across_a_reopen(tmp_path, photos):
    col, folder = _collection(tmp_path, photos, ["original", "resized", "cropped", "viewpoint", "burst", "different"])
    groups = DuplicateFinder.from_collection(col, config=LOOSE).groups()
    near = [g for g in groups if g.tier == "near"]
    assert len(near) == 1 and {Path(p).stem for p in near[0].paths} == {"original", "resized", "cropped"}
    assert Path(near[0].keep.path).stem == "original" and "largest resolution" in near[0].reason
    similar = [g for g in groups if g.tier == "similar"]
    # The other shots are only ever "similar": browse only, never in a removal suggestion.
    assert all(not g.removable for g in similar)
    moves = [p for _g, ps in suggested_moves(groups) for p in ps]
    assert {Path(p).stem for p in moves} == {"resized", "cropped"}
    not_duplicates(col.catalog, [m for m in near[0].members if Path(m.path).stem in ("original", "cropped")])
    save_keep_rules(col.catalog, KeepRules(order=("oldest", "resolution", "file_size", "format", "folder")))
    col.close()

    col = Collection.open(tmp_path / "cat")
    assert load_keep_rules(col.catalog).order[0] == "oldest"
    finder = DuplicateFinder.from_collection(col, config=LOOSE)
    near = [g for g in finder.groups() if g.tier == "near"]
    assert len(near) == 1 and {Path(p).stem for p in near[0].paths} == {"original", "resized"}
    assert all("cropped" not in p for g in finder.groups() if g.removable for p in g.paths)
    # Resolved (kept all) is remembered too.
    mark_resolved(col.catalog, near[0].members)
    col.close()
    col = Collection.open(tmp_path / "cat")
    removable = [{Path(p).stem for p in g.paths} for g in DuplicateFinder.from_collection(col, config=LOOSE).groups()
                 if g.removable]
    assert not any({"original", "resized"} <= g or {"original", "cropped"} <= g for g in removable)
    assert removable == [{"cropped", "resized"}]  # two copies of one photo: still duplicates of each other
    col.close()


class CountingVerifier(NearDuplicateVerifier):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def check(self, a, b):
        self.calls += 1
        return super().check(a, b)


def test_verification_is_stored_and_a_stopped_run_resumes(tmp_path, photos):
    col, _folder = _collection(tmp_path, photos, ["original", "resized", "grey", "different", "burst"])
    first = CountingVerifier()
    finder = DuplicateFinder.from_collection(col, config=LOOSE, verifier=first)
    finder.find_rotation_pairs()
    pairs = finder.candidate_pairs()
    assert 0 < len(pairs) <= LOOSE.verify_k * len(finder.infos)  # per-photo candidates, no all-pairs step
    stop = threading.Event()
    seen = []

    def progress(p):
        seen.append(p)
        if p.phase == "checking" and p.done > 0:
            stop.set()  # stop after the first batch

    rep = finder.verify(progress=progress, cancel=stop, commit_every=2)
    assert rep.cancelled and 0 < rep.checked < len(pairs) and seen[-1].total == len(pairs)
    second = CountingVerifier()
    again = DuplicateFinder.from_collection(col, config=LOOSE, verifier=second)
    rep2 = again.verify()
    assert rep2.cached == rep.checked and second.calls == len(pairs) - rep.checked
    third = CountingVerifier()
    DuplicateFinder.from_collection(col, config=LOOSE, verifier=third).verify()
    assert third.calls == 0  # everything known
    col.close()


def test_rotated_copies_are_found_through_their_rotated_phash_and_the_hashes_are_stored(tmp_path, photos,
                                                                                      monkeypatch):
    import engine.imaging.phash as ph

    col, _folder = _collection(tmp_path, photos, ["original", "rotated", "different"])
    # Descriptor candidates off (a 90-degree turn is another CNN vector): only the pHash path.
    cfg = DuplicateConfig(candidate=0.999, threshold=0.999, floor=0.5)
    finder = DuplicateFinder.from_collection(col, config=cfg)
    near = [g for g in finder.groups() if g.tier == "near"]
    assert [sorted(Path(p).stem for p in g.paths) for g in near] == [["original", "rotated"]]
    assert DuplicateFinder.from_collection(col, config=DuplicateConfig(
        candidate=0.999, threshold=0.999, floor=0.5, rotations=False)).groups() == []
    assert len(finder.rotation_pairs) >= 1
    calls = []
    real = ph.phash_rotations
    monkeypatch.setattr(ph, "phash_rotations", lambda p: calls.append(p) or real(p))
    again = DuplicateFinder.from_collection(col, config=cfg)
    again.verify()
    assert calls == [] and again.rotation_pairs == finder.rotation_pairs  # read from the catalog
    col.close()
