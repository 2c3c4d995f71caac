"""A small, reproducible trainer for descriptor heads on cached backbone features.

The backbone is frozen: only the head's parameters (activation parameters, stream weights,
aggregation network) are trained, on per-image inputs computed once by the method (feature
maps or region values; see :mod:`engine.training.pipeline`). That keeps a CPU run practical.

* Batches: each step takes ``groups_per_batch`` groups (with >= 2 members) and up to
  ``per_group`` members of each; the group order of epoch ``e`` comes from a generator seeded
  with ``(seed, e)``, so a resumed run sees exactly the batches an uninterrupted one would.
* Optimiser: SGD (ACTNET: lr 1e-3, weight decay 5e-4, momentum 0.9), loss ``triplet``
  (margin 0.1, hardest negative) or ``nra``.
* Checkpoints: after every epoch, ``{model, optimizer, epoch, losses}`` written atomically
  (:func:`engine.store.atomic.atomic_write_bytes`) and read with ``torch.load(weights_only=True)``.
* Progress: ``progress(TrainProgress)`` after every step, with an ETA; ``cancel`` (a
  ``threading.Event``) stops at the next step boundary (the last finished epoch is kept).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from engine.store.atomic import atomic_write_bytes
from engine.training.losses import nra_loss, triplet_hardest_negative


@dataclass(frozen=True)
class TrainConfig:
    """Training settings (defaults: ACTNET's SGD settings)."""

    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 5e-4
    momentum: float = 0.9
    margin: float = 0.1
    loss: str = "triplet"  # "triplet" | "nra"
    groups_per_batch: int = 8
    per_group: int = 4
    seed: int = 0


@dataclass
class TrainProgress:
    epoch: int          # 1-based epoch being run
    epochs: int
    step: int           # 1-based step in the epoch
    steps: int
    loss: float         # this step's loss
    elapsed_s: float
    eta_s: float        # estimated seconds left (whole run)


@dataclass
class TrainResult:
    epoch_losses: list[float] = field(default_factory=list)  # mean loss of every finished epoch
    epochs_done: int = 0
    cancelled: bool = False
    resumed_from: int = 0
    seconds: float = 0.0


def batch_loss(config: TrainConfig, desc: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if config.loss == "triplet":
        return triplet_hardest_negative(desc, labels, config.margin)
    if config.loss == "nra":
        return nra_loss(desc, labels)
    raise ValueError(f"unknown loss {config.loss!r} (triplet | nra)")


def epoch_batches(labels: np.ndarray, config: TrainConfig, epoch: int) -> list[list[int]]:
    """Index batches of epoch ``epoch`` (0-based), deterministic in ``(seed, epoch)``."""
    rng = np.random.default_rng([config.seed, epoch])
    groups: dict[int, list[int]] = {}
    for i, g in enumerate(np.asarray(labels).tolist()):
        groups.setdefault(int(g), []).append(i)
    gids = [g for g in sorted(groups) if len(groups[g]) >= 2]
    gids = [gids[i] for i in rng.permutation(len(gids))]
    batches = []
    for s in range(0, len(gids), config.groups_per_batch):
        chunk = gids[s:s + config.groups_per_batch]
        if len(chunk) < 2 and batches:  # a lone group has no negatives: join the previous batch
            batches[-1] += [i for g in chunk for i in groups[g][:config.per_group]]
            continue
        idx = []
        for g in chunk:
            members = groups[g]
            pick = rng.permutation(len(members))[:config.per_group]
            idx += [members[j] for j in sorted(pick)]
        batches.append(idx)
    return batches


class Trainer:
    """Train ``head`` (``head(list_of_items) -> (B, D)`` l2'd descriptors) on ``items``/``labels``."""

    def __init__(self, head: nn.Module, items: Sequence, labels: np.ndarray, config: TrainConfig,
                 checkpoint: str | Path | None = None):
        self.head = head
        self.items = list(items)
        self.labels = np.asarray(labels)
        self.config = config
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.optimizer = torch.optim.SGD([p for p in head.parameters() if p.requires_grad], lr=config.lr,
                                         momentum=config.momentum, weight_decay=config.weight_decay)

    # -- checkpoints --------------------------------------------------------------------
    def save_checkpoint(self, epoch: int, losses: list[float]) -> None:
        if self.checkpoint is None:
            return
        obj = {"model": self.head.state_dict(), "optimizer": self.optimizer.state_dict(),
               "epoch": epoch, "losses": torch.tensor(losses, dtype=torch.float64)}
        atomic_write_bytes(self.checkpoint, lambda f: torch.save(obj, f))

    def load_checkpoint(self) -> tuple[int, list[float]]:
        """Restore the checkpoint if there is one: ``(epochs done, their losses)``."""
        if self.checkpoint is None or not self.checkpoint.is_file():
            return 0, []
        obj = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
        self.head.load_state_dict(obj["model"])
        self.optimizer.load_state_dict(obj["optimizer"])
        return int(obj["epoch"]), [float(v) for v in obj["losses"].tolist()]

    # -- evaluation ---------------------------------------------------------------------
    @torch.no_grad()
    def mean_loss(self) -> float:
        """Loss over the whole set's epoch-0 batches without updating (for before/after checks)."""
        self.head.eval()
        vals = [float(batch_loss(self.config, self.head([self.items[i] for i in b]),
                                 torch.as_tensor(self.labels[b]))) for b in epoch_batches(self.labels, self.config, 0)]
        return float(np.mean(vals)) if vals else 0.0

    # -- training -----------------------------------------------------------------------
    def run(self, progress: Callable[[TrainProgress], None] | None = None,
            cancel: threading.Event | None = None, resume: bool = True) -> TrainResult:
        torch.manual_seed(self.config.seed)
        start, losses = self.load_checkpoint() if resume else (0, [])
        result = TrainResult(list(losses), start, False, start)
        t0 = time.monotonic()
        total_steps = sum(len(epoch_batches(self.labels, self.config, e)) for e in range(start, self.config.epochs))
        done_steps = 0
        for epoch in range(start, self.config.epochs):
            self.head.train()
            batches = epoch_batches(self.labels, self.config, epoch)
            step_losses = []
            for s, b in enumerate(batches):
                if cancel is not None and cancel.is_set():
                    result.cancelled = True
                    result.seconds = time.monotonic() - t0
                    return result
                desc = self.head([self.items[i] for i in b])
                loss = batch_loss(self.config, desc, torch.as_tensor(self.labels[b]))
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                step_losses.append(float(loss.detach()))
                done_steps += 1
                if progress is not None:
                    el = time.monotonic() - t0
                    progress(TrainProgress(epoch + 1, self.config.epochs, s + 1, len(batches), step_losses[-1], el,
                                           el / done_steps * (total_steps - done_steps)))
            result.epoch_losses.append(float(np.mean(step_losses)) if step_losses else 0.0)
            result.epochs_done = epoch + 1
            self.save_checkpoint(epoch + 1, result.epoch_losses)
        self.head.eval()
        result.seconds = time.monotonic() - t0
        return result
