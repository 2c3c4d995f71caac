"""``lookalike train-weights DATASET --method ms-rmac``: learn MS-RMAC's layer weights.

Each labelled query of DATASET (a folder with ``ground_truth.json``, or ``--layout folders``)
is one NormalHedge round (:func:`engine.descriptors.hedge.learn_layer_weights`); the weights ``alpha`` are
stored with the collection's catalog as state kind ``"hedge"`` and used by its searches from
then on (re-indexing is not needed: raw descriptors do not depend on ``alpha``).
"""
from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np

from engine.cli import Command, add_catalog_argument, add_device_argument, print_json
from engine.errors import LookalikeError


def learn_weights(collection, dataset_dir: str | os.PathLike, method: str = "ms-rmac", layout: str = "gt",
                  epochs: int = 1, batch_size: int = 8, save: bool = True) -> dict[str, Any]:
    """Describe DATASET's images with the collection's ``method``, learn alpha, store it.

    Returns ``{"alpha", "layers", "queries", "rounds", "uniform_map", "trained_map"}``; the two
    mAPs are measured on the training queries themselves (a training score, not a test score).
    """
    from engine.evaluation.dataset import load_dataset
    from engine.descriptors.hedge import learn_layer_weights
    from engine.imaging.images import load_image

    m = collection.method(method)
    if "hedge" not in m.stored_state_kinds or not hasattr(m, "layer_distances"):
        raise LookalikeError(f"Method '{m.name}' has no hedge-learned layer weights; use --method ms-rmac.")
    ds = load_dataset(dataset_dir, layout)
    extractor = collection.extractor_for(m)
    rows = []
    for s in range(0, len(ds.images), batch_size):
        imgs = [load_image(ds.path_of(n)) for n in ds.images[s:s + batch_size]]
        rows.append(m.describe(imgs, extractor))
    raw = np.concatenate(rows)
    row_of = {n: i for i, n in enumerate(ds.images)}
    dist = np.stack([m.layer_distances(raw[row_of[q.image]], raw) for q in ds.queries], axis=1)  # (L, Q, N)
    queries = [(row_of[q.image], {row_of[p] for p in q.positives}, {row_of[j] for j in q.junk}) for q in ds.queries]
    alpha, trace = learn_layer_weights(dist, queries, epochs=epochs)

    def mean_ap(weights: np.ndarray) -> float:
        from engine.descriptors.hedge import ranking_ap
        return float(np.mean([ranking_ap(np.tensordot(weights, dist[:, t], axes=1), q)
                              for t, q in enumerate(queries)]))

    L = dist.shape[0]
    result = {"method": m.name, "layers": list(m.layers()), "alpha": [float(a) for a in alpha],
              "queries": len(queries), "rounds": int(len(trace["weights"])),
              "uniform_map": mean_ap(np.full(L, 1.0 / L)), "trained_map": mean_ap(alpha)}
    if save:
        collection.catalog.save_state(m.name, "hedge", {"alpha": alpha.astype(np.float64)})
        m.set_stored_state("hedge", {"alpha": alpha})
        getattr(collection, "_search", {}).pop(m.name, None)  # its search vectors used the old alpha
    return result


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", metavar="DATASET", help="folder with ground_truth.json (or sub-folders with --layout folders)")
    p.add_argument("--method", default="ms-rmac", help="method whose layer weights to learn (ms-rmac)")
    p.add_argument("--layout", default="gt", choices=["gt", "folders"], help="how DATASET is labelled")
    p.add_argument("--epochs", type=int, default=1, help="passes over the queries (one hedge round per query)")
    add_catalog_argument(p)
    add_device_argument(p)
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    from engine.api import Collection

    col = Collection.open(args.catalog, create=True, device=args.device, weights=args.weights)
    try:
        res = learn_weights(col, args.dataset, args.method, args.layout, args.epochs)
    finally:
        col.close()
    if args.json:
        print_json(res)
    else:
        print(f"{res['method']}: learned layer weights on {res['queries']} queries ({res['rounds']} rounds)")
        for layer, a in zip(res["layers"], res["alpha"]):
            print(f"  {layer:>10}: {a:.3f}")
        print(f"training mAP: uniform {res['uniform_map']:.4f} -> trained {res['trained_map']:.4f}")
        print(f"stored with the collection in {col.directory}")
    return 0


COMMAND = Command("train-weights", "learn MS-RMAC layer weights (NormalHedge) on a labelled dataset", add_arguments, run)
