"""Checksums of the catalog's array files and their verified reading.

Every descriptor shard (``.npy``) and learned state (``.npz``) is serialised in memory, its
size and BLAKE2b digest recorded in the catalog in the same transaction that references it,
and read back whole and verified before use. BLAKE2b (``hashlib``) rather than xxhash: no
new dependency, and at ~1 GB/s on one core it costs about what reading the file costs (a
50k-photo, 512-d method is ~100 MB: ~0.1 s), which every load pays anyway.

A file that fails (missing, short, scribbled, wrong shape, NaN or inf) raises
:class:`DamagedFile` with a reason a person can read; callers decide what it means (skip
the shard's photos and re-describe them, or refuse a learned state).
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

DIGEST_PREFIX = "blake2b-128:"


class DamagedFile(Exception):
    """An array file of the catalog that does not match what was recorded; ``reason`` says how."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def digest(data: bytes) -> str:
    return DIGEST_PREFIX + hashlib.blake2b(data, digest_size=16).hexdigest()


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def _read_checked(path: Path, size: int | None, checksum: str | None) -> bytes:
    """The file's bytes, after checking its recorded size and digest (None: not recorded,
    as for files written by a schema-1 catalog)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DamagedFile(path, "the file is missing") from None
    except OSError as exc:
        raise DamagedFile(path, f"the file cannot be read ({exc.strerror or exc})") from None
    if size is not None and len(data) != size:
        raise DamagedFile(path, f"the file has {len(data)} bytes, {size} were written")
    if checksum is not None and digest(data) != checksum:
        raise DamagedFile(path, "the file's checksum does not match (its bytes were changed)")
    return data


def read_shard(path: Path, rows: int, dim: int, size: int | None, checksum: str | None) -> np.ndarray:
    """A descriptor shard, verified: recorded size and checksum, shape ``(rows, dim)``,
    float32, every value finite (catches damage to schema-1 shards, which have no checksum)."""
    data = _read_checked(path, size, checksum)
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # a scribbled header fails in numpy's parser in many ways
        raise DamagedFile(path, f"not a readable array ({exc})") from None
    if arr.shape != (rows, dim) or arr.dtype != np.float32:
        raise DamagedFile(path, f"shape {arr.shape} {arr.dtype}, expected {(rows, dim)} float32")
    if not np.isfinite(arr).all():
        raise DamagedFile(path, f"{int((~np.isfinite(arr)).any(axis=1).sum())} rows hold NaN or infinite values")
    return arr


def read_state(path: Path, size: int | None, checksum: str | None) -> dict[str, np.ndarray]:
    """A learned state (``.npz`` of arrays), verified by its recorded size and checksum."""
    data = _read_checked(path, size, checksum)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as exc:  # a scribbled zip fails in zipfile or numpy in many ways
        raise DamagedFile(path, f"not a readable state file ({exc})") from None
