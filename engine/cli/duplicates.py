"""``lookalike duplicates``: exact, near-duplicate and similar groups of a collection."""
from __future__ import annotations

import argparse
import sys

from engine.cli import Command, add_catalog_argument, print_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    from engine.services.duplicates import DEFAULT_THRESHOLD, KEEP_RULES

    add_catalog_argument(p)
    p.add_argument("--method", default=None, help="descriptor method (default: the collection's)")
    p.add_argument("--threshold", type=float, default=None,
                   help=f"cosine similarity at or above which photos count as *similar* shots (browse only; "
                        f"default {DEFAULT_THRESHOLD}, or calibrated for methods whose similarities run lower). "
                        "Near-duplicates are confirmed by a geometric and pixel check, not by this threshold.")
    p.add_argument("--folder", default=None, help="only photos under this folder")
    p.add_argument("--no-exact", action="store_true", help="leave out the exact (content hash) tier")
    p.add_argument("--keep-order", default=None,
                   help=f"keep-best rules, comma-separated, first decides ({','.join(KEEP_RULES)}); "
                        "stored in the collection")
    p.add_argument("--prefer-folder", action="append", default=None, metavar="DIR",
                   help="a folder whose photos are preferred as the one to keep (repeatable; stored)")
    p.add_argument("--not-duplicates", nargs="+", metavar="PHOTO", default=None,
                   help="remember that these photos are not duplicates of each other, then list the groups")
    p.add_argument("--json", action="store_true",
                   help='{"exact": [...], "near": [...], "similar": [...], "counts": {...}}')


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from engine.api import Collection
    from engine.services.duplicate_threshold import duplicate_threshold
    from engine.services.duplicates import (KEEP_RULES, TIERS, DuplicateFinder, PhotoInfo, load_keep_rules, not_duplicates,
                              save_keep_rules, tier_counts)
    from engine.errors import LookalikeError
    from engine.services.formatting import format_duration

    if args.threshold is not None and not 0.0 < args.threshold <= 1.0:
        raise LookalikeError(f"--threshold must be in (0, 1], got {args.threshold}.")
    col = Collection.open(args.catalog, create=False)
    rules = load_keep_rules(col.catalog)
    if args.keep_order is not None:
        order = tuple(r.strip() for r in args.keep_order.split(",") if r.strip())
        bad = [r for r in order if r not in KEEP_RULES]
        if bad:
            raise LookalikeError(f"Unknown keep rule(s) {', '.join(bad)}; choose from {', '.join(KEEP_RULES)}.")
        rules = dataclasses.replace(rules, order=order)
    if args.prefer_folder is not None:
        rules = dataclasses.replace(rules, folders=tuple(args.prefer_folder))
    if args.keep_order is not None or args.prefer_folder is not None:
        save_keep_rules(col.catalog, rules)
    if args.not_duplicates:
        infos = []
        for p in args.not_duplicates:
            rec = col.catalog.image_by_path(p)
            if rec is None:
                raise LookalikeError(f"{p} is not a photo of this collection.")
            infos.append(PhotoInfo.from_record(rec))
        if len(infos) < 2:
            raise LookalikeError("--not-duplicates needs at least two photos.")
        not_duplicates(col.catalog, infos)
    choice = duplicate_threshold(col, args.method)
    note = choice.describe(col.method(args.method).name)
    cfg = choice.config(keep=rules, exact=not args.no_exact)
    if args.threshold is not None:
        cfg = dataclasses.replace(cfg, threshold=args.threshold, floor=min(cfg.floor, args.threshold),
                                  candidate=min(cfg.candidate, args.threshold))
    finder = DuplicateFinder.from_collection(col, args.method, args.folder, cfg)

    def progress(p) -> None:
        if p.phase == "hashing":
            if p.done == p.total or p.done % 1024 < 64:
                print(f"hashing photos (for rotated copies): {p.done}/{p.total}", file=sys.stderr)
        elif p.done == p.total or p.done % 512 < 64:
            print(f"verifying candidate pairs: {p.done}/{p.total} ({p.cached} known), ETA {format_duration(p.eta_s)}",
                  file=sys.stderr)

    finder.verify(progress=progress)
    groups = finder.groups()
    counts = tier_counts(groups)
    if args.json:
        out = {t: [g.to_json() for g in groups if g.tier == t] for t in TIERS}
        out["counts"] = counts
        print_json(out)
        return 0
    n = 0
    for tier in TIERS:
        for g in (g for g in groups if g.tier == tier):
            n += 1
            print(f"group {n} ({len(g.members)} photos, {tier}"
                  + (f", keep: {g.reason}" if g.removable else ", browse only: nothing proposed") + ")")
            if g.evidence:
                print(f"  {g.evidence}")
            for k, m in enumerate(g.members):
                mark = "keep" if (k == 0 and g.removable) else ("    " if not g.removable else "move")
                res = f"{m.width}x{m.height}" if m.width else "?"
                print(f"  {mark} {res:>11} {m.size:>10}  {m.path}")
    c = counts
    print(f"exact: {c['exact']['groups']} groups ({c['exact']['could_go']} photos could go); "
          f"near-duplicates: {c['near']['groups']} groups ({c['near']['could_go']} could go); "
          f"similar: {c['similar']['groups']} groups (browse only) ({note})")
    return 0


COMMAND = Command("duplicates", "list exact, near-duplicate and similar groups of photos", add_arguments, run)
