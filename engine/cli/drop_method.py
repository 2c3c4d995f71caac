"""``lookalike drop-method NAME``: forget one method's descriptors and learned state.

What to do when a method must be indexed again with other settings or other weights: the
photos, folders and other methods of the collection stay.
"""
from __future__ import annotations

import argparse

from engine.cli import Command, add_catalog_argument


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="the method to drop (see 'lookalike status')")
    add_catalog_argument(p)


def run(args: argparse.Namespace) -> int:
    from engine.api import Collection
    from engine.errors import LookalikeError

    col = Collection.open(args.catalog, create=False)
    counts = {name: count for name, count, _gen in col.catalog.methods()}
    if args.name not in counts:
        raise LookalikeError(f"This collection has no method '{args.name}'"
                             + (f"; it has {', '.join(sorted(counts))}." if counts else "."))
    with col.catalog.index_lock():  # not while another process indexes it
        col.catalog.drop_method(args.name)
    print(f"dropped {args.name} ({counts[args.name]} descriptors); 'lookalike index --method {args.name}' "
          f"describes the photos again")
    return 0


COMMAND = Command("drop-method", "forget a method's descriptors (to index it again with other settings)",
                  add_arguments, run)
