"""``lookalike train``: train a learned method's head (ACTNET, DARAC) for a collection.

    main.py train DATASET_DIR --collection DIR --method actnet-weibull --epochs 10
    main.py train --collection DIR --method actnet-weibull --epochs 5 --self-supervised

With a DATASET_DIR (``ground_truth.json`` or folder-per-group) the head is trained on its
labelled groups; with ``--self-supervised`` on the collection's own photos (positives made by
strong augmentation). The backbone stays frozen (only the head is trained: practical on a
CPU). A quarter of the groups is held out; the weights are stored in the collection only if
the held-out mAP improves (``--force`` stores them anyway), then the method is re-indexed.
"""
from __future__ import annotations

import argparse
import sys
import threading
import time

from engine.errors import LookalikeError
from engine.cli import Command, add_device_argument, print_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", nargs="?", metavar="DATASET_DIR", help="labelled photos: ground_truth.json or one sub-folder per group")
    p.add_argument("--collection", "--catalog", dest="catalog", metavar="DIR", default=None,
                   help="collection catalog that receives the trained weights (default: the default collection)")
    p.add_argument("--method", required=True, help="trainable method: actnet-direct/sinh/exp/weibull, darac")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--self-supervised", action="store_true", help="train on the collection's own photos (no labels)")
    p.add_argument("--loss", choices=["triplet", "nra"], default=None, help="default: triplet for actnet, nra for darac")
    p.add_argument("--lr", type=float, default=None,
                   help="SGD learning rate (default 0.05 for head-only training; the paper's 1e-3 is for end-to-end)")
    p.add_argument("--groups-per-batch", type=int, default=8)
    p.add_argument("--views", type=int, default=2, help="augmented views per photo (self-supervised)")
    p.add_argument("--max-images", type=int, default=300, help="photos used for self-supervised training")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="store the weights even if the held-out mAP did not improve")
    p.add_argument("--no-reindex", action="store_true", help="do not recompute the method's descriptors")
    add_device_argument(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")


class _Printer:
    def __init__(self):
        self.last = 0.0

    def __call__(self, phase: str, done: int, total: int, msg: str) -> None:
        now = time.monotonic()
        if done < total and now - self.last < 2.0:
            return
        self.last = now
        sys.stderr.write(f"{phase}: {done}/{total} {msg}\n")


def run(args: argparse.Namespace) -> int:
    from engine.api import Collection
    from engine.training.pipeline import HEAD_LR, default_loss, train_for_collection
    from engine.training.trainer import TrainConfig

    if args.dataset is None and not args.self_supervised:
        raise LookalikeError("Give a labelled DATASET_DIR, or --self-supervised to train on the collection's photos.")
    if args.dataset is not None and args.self_supervised:
        raise LookalikeError("Choose either a DATASET_DIR or --self-supervised, not both.")
    if args.epochs < 1:
        raise LookalikeError("--epochs must be at least 1.")
    col = Collection.open(args.catalog, device=args.device, weights=args.weights)
    method = col.method(args.method)
    cfg = TrainConfig(epochs=args.epochs, lr=args.lr if args.lr is not None else HEAD_LR,
                      loss=args.loss or default_loss(method),
                      groups_per_batch=args.groups_per_batch, seed=args.seed)
    cancel = threading.Event()
    try:
        report = train_for_collection(col, args.method, args.dataset, config=cfg, views=args.views,
                                      max_images=args.max_images, force=args.force, reindex=not args.no_reindex,
                                      progress=_Printer(), cancel=cancel)
    except KeyboardInterrupt:
        cancel.set()
        raise
    if args.json:
        print_json(report.to_json())
    else:
        print(f"{report.method} ({report.mode}, {report.images} images, frozen backbone): "
              f"{report.epochs_done} epochs, loss {report.epoch_losses[0] if report.epoch_losses else float('nan'):.4f} -> "
              f"{report.epoch_losses[-1] if report.epoch_losses else float('nan'):.4f}; held-out mAP "
              f"{report.val_before:.4f} -> {report.val_after:.4f}; "
              + ("stored" + (f", {report.reindexed} re-indexed" if report.reindexed else "") if report.kept else report.note)
              + f" ({report.seconds:.0f} s)")
    return 0


COMMAND = Command("train", "train a learned method (ACTNET, DARAC) on labelled groups or self-supervised on the collection",
                  add_arguments, run)
