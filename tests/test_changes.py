"""engine.indexing.changes.classify_file: the one rule for new / changed / touched / unchanged."""
from __future__ import annotations

import os

import pytest

from engine.indexing.changes import FileChange, classify_file, vanished
from engine.indexing.indexer import FoundFile
from engine.store.catalog import content_hash


@pytest.fixture
def photo(tmp_path):
    p = tmp_path / "a.jpg"
    p.write_bytes(b"pixels" * 100)
    st = os.stat(p)
    return FoundFile(str(p), st.st_size, st.st_mtime_ns), content_hash(p)


def test_a_file_without_a_row_is_new_unless_it_failed_unchanged(photo):
    f, _h = photo
    assert classify_file(f, None, None) is FileChange.NEW
    assert classify_file(f, None, (f.size, f.mtime_ns)) is FileChange.FAILED_BEFORE
    assert classify_file(f, None, (f.size, f.mtime_ns - 1)) is FileChange.NEW


def test_a_row_without_a_descriptor_of_the_method_is_new(photo):
    f, h = photo
    assert classify_file(f, (1, f.size, f.mtime_ns, h), None, described=False) is FileChange.NEW


@pytest.mark.parametrize("row, verify, expected", [
    (lambda f, h: (1, f.size, f.mtime_ns, h), False, FileChange.UNCHANGED),
    (lambda f, h: (1, f.size, f.mtime_ns, "other"), False, FileChange.UNCHANGED),  # not asked to hash
    (lambda f, h: (1, f.size, f.mtime_ns, "other"), True, FileChange.CHANGED),
    (lambda f, h: (1, f.size, f.mtime_ns, h), True, FileChange.UNCHANGED),
    (lambda f, h: (1, f.size + 1, f.mtime_ns, h), False, FileChange.CHANGED),
    (lambda f, h: (1, f.size, f.mtime_ns - 5, h), False, FileChange.TOUCHED),
    (lambda f, h: (1, f.size, f.mtime_ns - 5, "other"), False, FileChange.CHANGED),
])
def test_rows_are_compared_by_size_mtime_then_content(photo, row, verify, expected):
    f, h = photo
    assert classify_file(f, row(f, h), None, verify=verify) is expected


def test_a_file_that_cannot_be_hashed_counts_as_changed(photo):
    f, h = photo
    os.unlink(f.path)
    assert classify_file(f, (1, f.size, f.mtime_ns - 5, h), None) is FileChange.CHANGED
    assert classify_file(f, (1, f.size, f.mtime_ns, h), None, verify=True) is FileChange.CHANGED


def test_photos_are_gone_unless_seen_or_under_a_folder_that_could_not_be_listed(tmp_path):
    root = str(tmp_path)
    known = [os.path.join(root, "a.jpg"), os.path.join(root, "sub", "b.jpg"), os.path.join(root, "subway", "c.jpg")]
    errors = [(os.path.join(root, "sub"), "folder cannot be listed: Permission denied"),
              (os.path.join(root, "x.jpg"), "cannot be read: Permission denied")]  # a file error keeps nothing
    assert vanished(known, set(), errors) == [known[0], known[2]]  # "subway" is not under "sub"
    assert vanished(known, {known[0]}, []) == known[1:]
