"""engine.store.atomic: the one atomic writer every file write of the engine goes through."""
from __future__ import annotations

import os

import numpy as np
import pytest

from engine.store import atomic
from engine.store.atomic import atomic_write_bytes, atomic_write_text


def test_a_failing_writer_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "state.npy"
    atomic_write_bytes(target, lambda f: np.save(f, np.arange(3), allow_pickle=False))

    def half_then_fail(f):
        f.write(b"\x93NUMPY half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic_write_bytes(target, half_then_fail)
    np.testing.assert_array_equal(np.load(target), np.arange(3))
    assert sorted(p.name for p in target.parent.iterdir()) == ["state.npy"]


def test_text_is_written_as_utf8_with_newlines_kept(tmp_path):
    target = tmp_path / "notes.md"
    atomic_write_text(target, "café\r\nline two\n")
    assert target.read_bytes() == "café\r\nline two\n".encode("utf-8")
    atomic_write_text(target, "replaced")
    assert target.read_text(encoding="utf-8") == "replaced"


def test_the_temporary_file_is_hidden_next_to_the_target(tmp_path):
    seen = []
    atomic_write_bytes(tmp_path / "a.bin", lambda f: seen.append(os.path.basename(f.name)))
    assert seen[0].startswith(".a.bin.") and seen[0].endswith(".tmp")


@pytest.mark.parametrize("durable, syncs", [(True, 2), (False, 0)])
def test_only_durable_writes_are_fsynced(tmp_path, monkeypatch, durable, syncs):
    calls = []
    real = os.fsync
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (calls.append(fd), real(fd)))
    atomic_write_bytes(tmp_path / "x.bin", lambda f: f.write(b"x"), durable=durable)
    assert len(calls) == syncs and (tmp_path / "x.bin").read_bytes() == b"x"
