"""Device selection: ``auto`` = CUDA, then MPS, then CPU.

Failing accelerators never crash indexing: :func:`run_with_fallback` halves the batch on
out-of-memory and finally retries on the CPU with a logged warning.
"""
from __future__ import annotations

import logging
from typing import Callable, Sequence, TypeVar

import torch

from engine.errors import LookalikeError

log = logging.getLogger(__name__)
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
T = TypeVar("T")


def select_device(name: str = "auto") -> torch.device:
    name = (name or "auto").lower()
    if name not in DEVICE_CHOICES:
        raise LookalikeError(f"Unknown device '{name}'; choose one of {', '.join(DEVICE_CHOICES)}.")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise LookalikeError("CUDA was requested but no CUDA GPU is available; use --device cpu or auto.")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise LookalikeError("MPS was requested but is not available on this machine; use --device cpu or auto.")
    return torch.device(name)


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def run_batched_with_fallback(
    items: Sequence,
    fn: Callable[[Sequence, torch.device], list[T]],
    device: torch.device,
    on_cpu_fallback: Callable[[], None] | None = None,
) -> list[T]:
    """Run ``fn(chunk, device)`` over ``items``; on accelerator OOM halve the chunk, then use CPU.

    Returns the concatenated per-item results in input order.
    """
    try:
        return fn(items, device)
    except (RuntimeError, torch.OutOfMemoryError) as exc:
        if device.type == "cpu":
            raise
        if is_oom(exc) and len(items) > 1:
            if device.type == "cuda":
                torch.cuda.empty_cache()
            half = len(items) // 2
            log.warning("Out of GPU memory on a batch of %d; retrying as two batches.", len(items))
            return (run_batched_with_fallback(items[:half], fn, device, on_cpu_fallback)
                    + run_batched_with_fallback(items[half:], fn, device, on_cpu_fallback))
        log.warning("GPU failed (%s); computing this batch on the CPU.", str(exc).splitlines()[0])
        if on_cpu_fallback is not None:
            on_cpu_fallback()
        return fn(items, torch.device("cpu"))
