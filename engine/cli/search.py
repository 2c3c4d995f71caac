"""``lookalike search IMAGE...``: the most similar photos of a collection.

Several images are searched in one process (the model loads once): the text output gives each
query's results under a ``== IMAGE`` line, ``--json`` a list of ``{"query", "results"}``. A query
that fails is reported on stderr and the others still run (exit status 2 at the end).
"""
from __future__ import annotations

import argparse
import math
import sys

from engine.search.rerank import DEFAULT_RERANK, RERANKERS
from engine.cli import Command, add_catalog_argument, add_device_argument, positive_int, print_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", nargs="+", help="query image file(s)")
    add_catalog_argument(p)
    p.add_argument("--method", default=None, help="descriptor method (default: the collection's)")
    add_device_argument(p)
    p.add_argument("--top", type=positive_int, default=20, help="number of results")
    p.add_argument("--exclude-query", action="store_true", help="leave the query itself out of the results")
    p.add_argument("--box", type=float, nargs=4, metavar=("X1", "Y1", "X2", "Y2"), default=None,
                   help="query only this region of the image (pixels)")
    p.add_argument("--box-mode", choices=["image", "activations"], default="image",
                   help="crop the image (crop I) or the feature maps (crop X) to the box")
    p.add_argument("--rerank", default=None, choices=sorted(RERANKERS),
                   help=f"query-time re-ranking (default: {DEFAULT_RERANK}, what the app uses; "
                        f"an archive: none)")
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    from engine.api import Collection, is_archive, open_archive
    from engine.errors import LookalikeError

    box = checked_box(args.box)
    if args.catalog and is_archive(args.catalog):  # an archive (lookalike archive index): read-only
        col = open_archive(args.catalog, device=args.device)
    else:
        col = Collection.open(args.catalog, create=False, device=args.device, weights=args.weights)

    def search(image: str) -> list[dict]:
        results = col.search(image, method=args.method, top=args.top, exclude_query=args.exclude_query,
                             box=box, box_mode=args.box_mode, rerank=args.rerank)
        return [{"path": r.path, "score": round(r.score, 6)} for r in results]

    def show(found: list[dict]) -> None:
        for r in found:
            print(f"{r['score']:.4f}  {r['path']}")

    if len(args.image) == 1:  # one query: a plain list (errors end the command)
        found = search(args.image[0])
        if args.json:
            print_json(found)
        else:
            show(found)
        warn_unsearchable(col, args.method)
        return 0
    answers, failed = [], 0
    for image in args.image:
        try:
            found = search(image)
        except LookalikeError as exc:
            failed += 1
            print(f"lookalike: error: {image}: {exc}", file=sys.stderr)
            continue
        answers.append({"query": image, "results": found})
        if not args.json:
            print(f"== {image}")
            show(found)
    if args.json:
        print_json(answers)
    warn_unsearchable(col, args.method)
    return 2 if failed else 0


def checked_box(box: list[float] | None) -> tuple[float, float, float, float] | None:
    """``--box X1 Y1 X2 Y2`` as a tuple, or a clear error for NaN, infinite or empty boxes."""
    from engine.errors import LookalikeError

    if box is None:
        return None
    x1, y1, x2, y2 = box
    if not all(math.isfinite(v) for v in box) or x2 <= x1 or y2 <= y1 or min(box) < 0:
        raise LookalikeError(f"--box {' '.join(f'{v:g}' for v in box)}: give X1 Y1 X2 Y2 in pixels, finite, "
                             f"not negative, with X2 > X1 and Y2 > Y1.")
    return x1, y1, x2, y2


def warn_unsearchable(col, method: str | None) -> None:
    """Say on stderr how many photos the search could not look at (damaged shards)."""
    if getattr(col, "read_only", False):  # an archive's shards are verified when its index is built
        return
    skipped = col.unsearchable_count(method)
    if skipped:
        print(f"lookalike: warning: {skipped} photos could not be searched (their descriptors are damaged); "
              f"'lookalike index' or 'lookalike repair --catalog {col.directory}' describes them again.",
              file=sys.stderr)


COMMAND = Command("search", "find the photos most similar to an image", add_arguments, run)
