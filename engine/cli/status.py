"""``lookalike status``: folders, counts, failed files and methods of a collection."""
from __future__ import annotations

import argparse
import time

from engine.cli import Command, add_catalog_argument, print_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_catalog_argument(p)
    p.add_argument("--check", action="store_true", help="also run an integrity check of the catalog")
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    from engine.api import Collection

    col = Collection.open(args.catalog, create=False)
    st = col.status()
    problems = col.catalog.check() if args.check else None
    if problems is not None:
        st["check"] = {"ok": not problems, "problems": problems}
    if args.json:
        print_json(st)
    else:
        print(f"catalog: {st['catalog']}")
        for f in st["folders"]:
            print(f"folder:  {f}")
        print(f"images:  {st['images']}")
        last = st["last_indexed"]
        print(f"indexed: {time.strftime('%Y-%m-%d %H:%M', time.localtime(last)) if last else 'never'}")
        for m in st["methods"]:
            mark = "*" if m["name"] == st["active_method"] else " "
            print(f"method: {mark}{m['name']}: {m['descriptors']} descriptors")
        print(f"failed:  {len(st['failed'])}")
        for f in st["failed"]:
            print(f"  {f['path']}: {f['reason']}")
        if problems is not None:
            print("check:   ok" if not problems else "check:   PROBLEMS\n  " + "\n  ".join(problems))
    return 1 if problems else 0


COMMAND = Command("status", "show a collection's folders, photos, methods and failed files", add_arguments, run)
