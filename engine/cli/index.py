"""``lookalike index FOLDER...``: add folders to a collection and index them."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.errors import LookalikeError
from engine.cli import Command, add_catalog_argument, add_device_argument, positive_int, print_json
from engine.cli.progress import ProgressBar


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folders", nargs="*", metavar="FOLDER", help="photo folders to add (already added ones are re-scanned)")
    add_catalog_argument(p)
    p.add_argument("--method", default=None, help="descriptor method (see 'lookalike methods')")
    add_device_argument(p)
    p.add_argument("--batch-size", type=positive_int, default=8, help="photos per catalog commit (default 8)")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")


def run(args: argparse.Namespace) -> int:
    from engine.api import Collection

    for f in args.folders:
        if not Path(f).is_dir():
            raise LookalikeError(f"Folder not found: {f}")
    col = Collection.open(args.catalog, device=args.device, weights=args.weights)
    report = col.index(method=args.method, folders=args.folders, progress=ProgressBar(), batch_size=args.batch_size)
    if args.json:
        print_json(report.to_json())
    else:
        print(f"{report.indexed} indexed, {report.unchanged} unchanged, {report.removed} removed, "
              f"{len(report.failed)} failed, {report.ignored} non-image files ignored in {report.seconds:.1f} s")
        for path, reason in report.failed:
            print(f"  failed: {path}: {reason}", file=sys.stderr)
    return 0


COMMAND = Command("index", "add photo folders to a collection and index them", add_arguments, run)
