"""``lookalike search IMAGE``: the most similar photos of a collection."""
from __future__ import annotations

import argparse

from ..rerank import RERANKERS
from . import Command, add_catalog_argument, add_device_argument, print_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="query image file")
    add_catalog_argument(p)
    p.add_argument("--method", default=None, help="descriptor method (default: the collection's)")
    add_device_argument(p)
    p.add_argument("--top", type=int, default=20, help="number of results")
    p.add_argument("--exclude-query", action="store_true", help="leave the query itself out of the results")
    p.add_argument("--box", type=float, nargs=4, metavar=("X1", "Y1", "X2", "Y2"), default=None,
                   help="query only this region of the image (pixels)")
    p.add_argument("--box-mode", choices=["image", "activations"], default="image",
                   help="crop the image (crop I) or the feature maps (crop X) to the box")
    p.add_argument("--rerank", default="none", choices=sorted(RERANKERS), help="query-time re-ranking")
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    from ..api import Collection

    col = Collection.open(args.catalog, create=False, device=args.device, weights=args.weights)
    results = col.search(args.image, method=args.method, top=args.top, exclude_query=args.exclude_query,
                         box=tuple(args.box) if args.box else None, box_mode=args.box_mode, rerank=args.rerank)
    if args.json:
        print_json([{"path": r.path, "score": round(r.score, 6)} for r in results])
    else:
        for r in results:
            print(f"{r.score:.4f}  {r.path}")
    return 0


COMMAND = Command("search", "find the photos most similar to an image", add_arguments, run)
