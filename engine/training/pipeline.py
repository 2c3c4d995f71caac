"""Glue between methods, data and the trainer: encode images once, train the head, store it.

A trainable method exposes ``head`` (an ``nn.Module`` mapping a list of per-image inputs to
l2'd descriptors), ``training_encode(images, extractor)`` (those per-image inputs, computed
with the frozen backbone) and ``head_arrays()`` / ``load_head_arrays()``. Trained weights go
to the collection's catalog as state kind ``"trained"``: the head's parameters plus a JSON
``meta`` (method, backbone, config, training settings, data hash, losses), stored as a uint8
array because states are plain ``.npz`` files (no pickle).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import json
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from engine.errors import LookalikeError
from engine.descriptors.methods.base import is_trainable  # noqa: F401  (re-exported: the GUI and CLI ask here)
from engine.evaluation.metrics import compute_ap, rank_by_score
from engine.imaging.images import load_image
from engine.training.data import strong_augment
from engine.training.trainer import TrainConfig, Trainer, TrainProgress, TrainResult

TRAINED_KIND = "trained"
# Learning rate for head-only training. The ACTNET paper's SGD lr 1e-3 (TrainConfig's default)
# is for end-to-end training over many thousands of steps; a CPU-sized head-only run (tens of
# steps on ~12 parameters) barely moves them at 1e-3 (measured: oxford_dev subset mAP changed
# by <= 0.016 after 10 epochs), so `train` defaults to 0.05, all other SGD settings as the paper.
HEAD_LR = 0.05


def encode_meta(meta: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), dtype=np.uint8).copy()


def decode_meta(state: dict[str, np.ndarray]) -> dict[str, Any]:
    if "meta" not in state:
        return {}
    return json.loads(bytes(np.asarray(state["meta"], dtype=np.uint8)).decode("utf-8"))


def encode_paths(method, extractor, paths: Sequence[str | Path], batch: int = 8,
                 progress: Callable[[int, int], None] | None = None) -> list:
    """Per-image head inputs of ``paths`` (decoded upright, at the method's decode side)."""
    items: list = []
    side = method.decode_side()
    for s in range(0, len(paths), batch):
        imgs = [load_image(p, max_side=side) for p in paths[s:s + batch]]
        items += method.training_encode(imgs, extractor)
        if progress:
            progress(min(s + batch, len(paths)), len(paths))
    return items


def self_supervised_items(method, extractor, paths: Sequence[str | Path], views: int = 2, seed: int = 0,
                          progress: Callable[[int, int], None] | None = None) -> tuple[list, np.ndarray]:
    """Inputs for self-supervised training: each photo plus ``views`` strong augmentations of it
    form one group (label = photo index); other photos are the negatives."""
    rng = np.random.default_rng(seed)
    items, labels = [], []
    side = method.decode_side()
    for i, p in enumerate(paths):
        img = load_image(p, max_side=side)
        batch = [img] + [strong_augment(img, rng) for _ in range(views)]
        items += method.training_encode(batch, extractor)
        labels += [i] * len(batch)
        if progress:
            progress(i + 1, len(paths))
    return items, np.asarray(labels, dtype=np.int64)


def train_head(method, items: Sequence, labels: np.ndarray, config: TrainConfig,
               checkpoint: str | Path | None = None, progress: Callable[[TrainProgress], None] | None = None,
               cancel: threading.Event | None = None, resume: bool = True) -> TrainResult:
    """Train ``method.head`` in place on cached ``items`` (the backbone stays frozen)."""
    if not is_trainable(method):
        raise LookalikeError(f"Method '{method.name}' has nothing to train.")
    torch.manual_seed(config.seed)
    result = Trainer(method.head, items, labels, config, checkpoint).run(progress, cancel, resume)
    method.head.eval()
    return result


def trained_state(method, config: TrainConfig, data_hash: str, result: TrainResult,
                  extra: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    """The catalog state of a trained head: its parameters and a ``meta`` JSON."""
    meta = {"method": method.name, "backbone": method.config.backbone, "method_config": method.config.to_dict(),
            "train_config": dataclasses.asdict(config), "data_hash": data_hash,
            "epoch_losses": result.epoch_losses, "epochs_done": result.epochs_done, "trained_at": time.time(),
            "frozen_backbone": True, **(extra or {})}
    return {**method.head_arrays(), "meta": encode_meta(meta)}


# -- evaluation of a head on labelled items ----------------------------------------------
def retrieval_map(vectors: np.ndarray, labels: np.ndarray) -> float:
    """Mean average precision when every item queries all the others (itself excluded), by
    the ranking and AP ``eval`` reports (:mod:`engine.evaluation.metrics`: ties in item order,
    Oxford's AP), so "keep the trained weights if the held-out mAP improves" is judged by the
    number the evaluation would show. Items without another of their label are skipped."""
    sims = vectors @ vectors.T
    aps = []
    for i in range(len(labels)):
        order = [j for j in rank_by_score(sims[i]) if j != i]
        relevant = labels[order] == labels[i]
        if relevant.any():
            aps.append(compute_ap(np.flatnonzero(relevant), int(relevant.sum())))
    return float(np.mean(aps)) if aps else 0.0


@torch.no_grad()
def head_search_vectors(method, items: Sequence) -> np.ndarray:
    """Search vectors of cached items as the method would index them (raw -> fit on them -> search)."""
    raw = method.head.raw(items) if hasattr(method.head, "raw") else method.head(items)
    raw = raw.numpy().astype(np.float32)
    return method.search_vectors(raw, method.fit(raw))


def evaluate_head(method, items: Sequence, labels: np.ndarray) -> float:
    return retrieval_map(head_search_vectors(method, items), np.asarray(labels))


# -- training for a collection (CLI `train`, GUI "Adapt to my photos") ------------------
@dataclass
class CollectionTrainingReport:
    method: str
    mode: str                  # "labelled" | "self-supervised"
    images: int                # photos used (train + held out; augmented views not counted)
    epochs_done: int
    epoch_losses: list
    val_before: float          # held-out mAP with the current weights
    val_after: float           # held-out mAP with the trained weights
    kept: bool                 # trained weights stored (False: they did not help)
    cancelled: bool
    seconds: float
    reindexed: int = 0
    note: str = ""

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def default_loss(method) -> str:
    return "nra" if type(method).__name__.startswith("Darac") else "triplet"


@dataclass
class _TrainingData:
    """Encoded training and held-out items of one run, and what identifies its photos."""

    mode: str  # "labelled" | "self-supervised"
    items_train: list
    labels_train: np.ndarray
    items_val: list
    labels_val: np.ndarray
    photo_paths: list[str]
    photo_hashes: list[str]

    @property
    def n_photos(self) -> int:
        """Photos used (augmented views not counted)."""
        if self.mode == "labelled":
            return len(self.labels_train) + len(self.labels_val)
        return len(self.photo_paths)


def _labelled_data(method, extractor, dataset_dir, val_fraction: float, seed: int, say) -> _TrainingData:
    from engine.store.catalog import content_hash
    from engine.training.data import load_labelled, split_groups

    data = load_labelled(dataset_dir)
    train_d, val_d = split_groups(data, 1.0 - val_fraction, seed)
    items_tr = encode_paths(method, extractor, train_d.paths, progress=lambda d, t: say("encoding", d, t, "training photos"))
    items_va = encode_paths(method, extractor, val_d.paths, progress=lambda d, t: say("encoding", d, t, "held-out photos"))
    return _TrainingData("labelled", items_tr, train_d.labels, items_va, val_d.labels,
                         [str(p) for p in data.paths], [content_hash(p) for p in data.paths])


def _self_supervised_data(col, method, extractor, views: int, max_images: int, val_fraction: float,
                          seed: int, say) -> _TrainingData:
    recs = col.catalog.images()
    if len(recs) < 8:
        raise LookalikeError("Self-supervised training needs at least 8 indexed photos in the collection.")
    step = max(1, len(recs) // max_images)
    recs = recs[::step][:max_images]
    n_val = max(4, int(round(len(recs) * val_fraction)))
    perm = np.random.default_rng(seed).permutation(len(recs))
    val_recs, tr_recs = [recs[i] for i in perm[:n_val]], [recs[i] for i in perm[n_val:]]
    items_tr, labels_tr = self_supervised_items(method, extractor, [r.path for r in tr_recs], views, seed,
                                                progress=lambda d, t: say("encoding", d, t, "photos + augmentations"))
    items_va, labels_va = self_supervised_items(method, extractor, [r.path for r in val_recs], views, seed + 1,
                                                progress=lambda d, t: say("encoding", d, t, "held-out photos"))
    return _TrainingData("self-supervised", items_tr, labels_tr, items_va, labels_va,
                         [r.path for r in recs], [r.hash for r in recs])


def _store_trained_head(col, method, state: dict[str, np.ndarray], reindex: bool, say) -> int:
    """Store the trained head; recompute the method's descriptors (they depend on the head)
    when it was indexed and ``reindex``. Returns the number of photos re-described."""
    was_indexed = method.name in {n for n, _c, _g in col.catalog.methods()}
    stored_config = col.catalog.method_config(method.name)
    if reindex and was_indexed:
        col.catalog.drop_method(method.name)
    col.catalog.save_state(method.name, TRAINED_KIND, state)
    col._methods.pop(method.name, None)
    if not (reindex and was_indexed):
        return 0
    r = col.index(method.name, overrides=stored_config,
                  progress=lambda p: say("indexing", getattr(p, "done", 0), getattr(p, "total", 0), ""))
    return r.indexed


def train_for_collection(col, method_name: str, dataset_dir: str | Path | None = None, *, epochs: int = 5,
                         config: TrainConfig | None = None, views: int = 2, max_images: int = 300,
                         val_fraction: float = 0.25, force: bool = False, reindex: bool = True,
                         progress: Callable[[str, int, int, str], None] | None = None,
                         cancel: threading.Event | None = None) -> CollectionTrainingReport:
    """Train ``method_name``'s head for collection ``col`` and store it there when it helps.

    ``dataset_dir`` given: labelled groups from it (``ground_truth.json`` or folder-per-group).
    Otherwise self-supervised on the collection's own photos (at most ``max_images``, chosen
    evenly): each photo and ``views`` strong augmentations of it are a group. A fraction
    ``val_fraction`` of the groups is held out; the trained weights are stored (state
    ``"trained"``) only if the held-out mAP improves (or ``force``), and the method's
    descriptors are then recomputed (``reindex``) since they depend on the head.
    """
    from engine.training.data import data_hash

    t0 = time.monotonic()
    say = progress or (lambda phase, done, total, msg: None)
    method = col.method(method_name)
    if not is_trainable(method):
        raise LookalikeError(f"Method '{method_name}' has nothing to train; trainable: actnet-*, darac.")
    extractor = col.extractor_for(method)
    cfg = config or TrainConfig(epochs=epochs, lr=HEAD_LR, loss=default_loss(method))
    if dataset_dir is not None:
        data = _labelled_data(method, extractor, dataset_dir, val_fraction, cfg.seed, say)
    else:
        data = _self_supervised_data(col, method, extractor, views, max_images, val_fraction, cfg.seed, say)
    before_arrays = method.head_arrays()
    val_before = evaluate_head(method, data.items_val, data.labels_val)
    ckpt = col.directory / "training" / f"{method.name}.ckpt"
    result = train_head(method, data.items_train, data.labels_train, cfg, ckpt,
                        progress=lambda p: say("training", (p.epoch - 1) * p.steps + p.step, p.epochs * p.steps,
                                               f"epoch {p.epoch}/{p.epochs} loss {p.loss:.4f} ETA {p.eta_s:.0f} s"),
                        cancel=cancel)
    val_after = evaluate_head(method, data.items_val, data.labels_val)
    kept = (not result.cancelled) and (force or val_after > val_before)
    report = CollectionTrainingReport(method.name, data.mode, data.n_photos, result.epochs_done,
                                      result.epoch_losses, val_before, val_after, kept, result.cancelled, 0.0)
    if kept:
        state = trained_state(method, cfg, data_hash(data.photo_paths, data.photo_hashes), result,
                              {"mode": data.mode, "val_before": val_before, "val_after": val_after})
        report.reindexed = _store_trained_head(col, method, state, reindex, say)
    else:
        method.load_head_arrays(before_arrays)
        report.note = ("cancelled: nothing stored" if result.cancelled else
                       "training did not improve the held-out mAP: the previous weights are kept")
    try:
        ckpt.unlink()
    except OSError:
        pass
    report.seconds = time.monotonic() - t0
    return report
