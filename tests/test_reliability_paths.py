"""Issue 20, items 8 and 9: paths read from data stay inside their root; the duplicates keep
suggestion is never a symbolic link to another member. (The catalog's own rows:
tests/test_catalog_integrity.py.)"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from engine.errors import LookalikeError, UnsafePathError
from engine.evaluation import load_ground_truth
from engine.services.duplicates import DuplicateGroup, PhotoInfo, move_to_folder, suggested_moves
from engine.store.confine import confined
from tests.conftest import make_photo


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/etc/passwd", "", "C:\\x", "a\\..\\..\\x"])
def test_confined_refuses_names_that_leave_the_root(tmp_path, name):
    with pytest.raises(UnsafePathError):
        confined(tmp_path, name)


def test_confined_refuses_a_symlink_out_and_accepts_plain_names(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", tmp_path / "root" / "link")
    with pytest.raises(UnsafePathError, match="symbolic link"):
        confined(tmp_path / "root", "link/file.npy")
    assert confined(tmp_path / "root", "a/b.npy") == (tmp_path / "root" / "a" / "b.npy").resolve()


def _dataset(root: Path, images_dir: str = "images", names: list[str] | None = None) -> Path:
    (root / "images").mkdir(parents=True)
    for i in range(2):
        make_photo(i, (64, 48)).save(root / "images" / f"{i}.jpg")
    names = names or ["0.jpg", "1.jpg"]
    (root / "ground_truth.json").write_text(json.dumps({
        "protocol": "holidays", "images_dir": images_dir, "images": names,
        "queries": [{"image": names[0], "positives": [names[1]]}]}))
    return root


@pytest.mark.parametrize("images_dir", ["../../../etc", "/etc", "../other"])
def test_a_dataset_images_dir_outside_the_dataset_is_refused(tmp_path, images_dir):
    with pytest.raises(LookalikeError, match="images folder.*(not a plain relative path|leads outside)"):
        load_ground_truth(_dataset(tmp_path / "ds", images_dir))


@pytest.mark.parametrize("bad", ["../../escape.jpg", "/etc/hostname", "sub/../../x.jpg"])
def test_dataset_image_names_outside_the_images_folder_are_refused(tmp_path, bad):
    with pytest.raises(LookalikeError, match=r"images\[1\]"):
        load_ground_truth(_dataset(tmp_path / "ds", names=["0.jpg", bad]))


def test_a_dataset_whose_images_folder_is_a_symlink_out_is_refused(tmp_path):
    ds = _dataset(tmp_path / "ds")
    shutil.move(ds / "images", tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", ds / "images")
    with pytest.raises(LookalikeError, match="leads outside"):
        load_ground_truth(ds)


def _info(path: Path, image_id: int) -> PhotoInfo:
    st = path.stat()
    return PhotoInfo(str(path), image_id, st.st_size, 64, 48, None, st.st_mtime, "samehash")


def test_the_keep_suggestion_is_never_a_symlink_to_another_member(tmp_path):
    real = tmp_path / "z_real.jpg"
    make_photo(1, (64, 48)).save(real)
    copy = tmp_path / "m_copy.jpg"
    shutil.copy2(real, copy)
    link = tmp_path / "a_link.jpg"  # sorts first: "identical files: the first by path"
    os.symlink(real, link)
    group = DuplicateGroup([_info(link, 1), _info(copy, 2), _info(real, 3)], "exact", 1.0)
    assert group.keep.path == str(copy)  # the first real file by path, not the link
    moves = suggested_moves([group])
    assert moves == [(group, [str(link), str(real)])]
    group = DuplicateGroup([_info(link, 1), _info(real, 3)], "exact", 1.0)
    assert group.keep.path == str(real)
    assert suggested_moves([group]) == []  # the link is the kept file itself: nothing to move
    move_to_folder([p for _g, ps in moves for p in ps], tmp_path / "dups")
    assert copy.is_file() and not os.path.islink(copy)


def test_only_links_to_one_file_move_nothing_that_is_the_kept_file(tmp_path):
    real = tmp_path / "outside" / "photo.jpg"
    real.parent.mkdir()
    make_photo(2, (64, 48)).save(real)
    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    os.symlink(real, a)
    os.symlink(real, b)
    group = DuplicateGroup([_info(a, 1), _info(b, 2)], "exact", 1.0)
    assert suggested_moves([group]) == []  # both are the same file: nothing to move


def test_a_cross_device_move_into_a_full_disk_leaves_no_partial_copy(tmp_path, monkeypatch):
    import errno

    import engine.services.duplicates as dup_mod

    src = tmp_path / "photo.jpg"
    make_photo(3, (320, 240)).save(src)
    original = src.read_bytes()

    def no_link(_a, _b):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    def full(fin, fout, _n):
        fout.write(fin.read(100))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(dup_mod.os, "link", no_link)
    monkeypatch.setattr(dup_mod.shutil, "copyfileobj", full)
    with pytest.raises(OSError, match="No space left"):
        move_to_folder([src], tmp_path / "dups")
    assert src.read_bytes() == original and list((tmp_path / "dups").iterdir()) == []


def test_a_move_that_fails_half_way_reports_what_did_move_and_why_the_rest_did_not(tmp_path, monkeypatch):
    import errno

    import engine.services.duplicates as dup

    src = tmp_path / "src"
    src.mkdir()
    files = []
    for k in range(3):
        make_photo(k, (40, 30)).save(src / f"p{k}.jpg")
        files.append(str(src / f"p{k}.jpg"))
    real = dup._move_no_overwrite

    def full_after_first(a, b):
        if Path(a).name == "p1.jpg":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(a, b)

    monkeypatch.setattr(dup, "_move_no_overwrite", full_after_first)
    errors: list[tuple[str, str]] = []
    moved = move_to_folder(files, tmp_path / "dest", errors)
    assert [Path(s).name for s, _d in moved] == ["p0.jpg", "p2.jpg"]
    assert errors == [(files[1], "No space left on device")] and Path(files[1]).is_file()
    with pytest.raises(OSError):  # without an errors list the caller still hears of it
        move_to_folder([files[1]], tmp_path / "dest")
