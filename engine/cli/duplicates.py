"""``lookalike duplicates``: groups of near-identical and identical photos of a collection."""
from __future__ import annotations

import argparse

from . import Command, add_catalog_argument, print_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..duplicates import DEFAULT_THRESHOLD

    add_catalog_argument(p)
    p.add_argument("--method", default=None, help="descriptor method (default: the collection's)")
    p.add_argument("--threshold", type=float, default=None,
                   help=f"cosine similarity at or above which photos are near-duplicates (default {DEFAULT_THRESHOLD}, "
                        "or calibrated on the collection's photos for methods whose similarities run lower)")
    p.add_argument("--folder", default=None, help="only photos under this folder")
    p.add_argument("--no-exact", action="store_true", help="leave out the exact (content hash) tier")
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    from ..api import Collection
    from ..duplicate_threshold import duplicate_threshold
    from ..duplicates import DEFAULT_FLOOR, DuplicateConfig, DuplicateFinder
    from ..errors import LookalikeError

    if args.threshold is not None and not 0.0 < args.threshold <= 1.0:
        raise LookalikeError(f"--threshold must be in (0, 1], got {args.threshold}.")
    col = Collection.open(args.catalog, create=False)
    threshold, note = args.threshold, ""
    if threshold is None:
        choice = duplicate_threshold(col, args.method)
        threshold, note = choice.threshold, choice.describe(col.method(args.method).name)
    cfg = DuplicateConfig(threshold=threshold, floor=min(DEFAULT_FLOOR, threshold), exact=not args.no_exact)
    groups = DuplicateFinder.from_collection(col, args.method, args.folder, cfg).groups()
    if args.json:
        print_json([g.to_json() for g in groups])
        return 0
    for n, g in enumerate(groups, 1):
        kind = "exact" if g.exact else f"near >= {g.similarity:.3f}"
        print(f"group {n} ({len(g.members)} photos, {kind})")
        for k, m in enumerate(g.members):
            mark = "keep" if k == 0 else "    "
            res = f"{m.width}x{m.height}" if m.width else "?"
            print(f"  {mark} {res:>11} {m.size:>10}  {m.path}")
    print(f"{len(groups)} groups, {sum(len(g.members) - 1 for g in groups)} photos that could go"
          + (f" ({note})" if note else ""))
    return 0


COMMAND = Command("duplicates", "list groups of duplicate and near-duplicate photos", add_arguments, run)
