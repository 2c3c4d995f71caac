"""``lookalike repair [--catalog DIR] [FOLDER...]``: bring a damaged collection back.

A readable catalog is snapshotted (``backups/``), its damaged shards and states are
forgotten, and every method is indexed again: exactly the photos whose descriptors were
lost are described again. A damaged SQLite file is moved aside into ``damaged-<time>/``
(never deleted), what SQLite can still read is copied into a fresh catalog
(:mod:`engine.store.salvage`), and the folders are indexed again. ``FOLDER``s are added
first: the only way back when nothing of the folder list could be salvaged.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.cli import Command, add_catalog_argument, add_device_argument
from engine.errors import LookalikeError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folders", nargs="*", metavar="FOLDER",
                   help="photo folders to add before indexing again (needed when none could be salvaged)")
    add_catalog_argument(p)
    p.add_argument("--method", default=None,
                   help="method to index with when the catalog has none left (default: the collection's)")
    add_device_argument(p)


def run(args: argparse.Namespace) -> int:
    from engine.api import Collection
    from engine.cli.progress import ProgressBar

    directory = _salvage_if_damaged(args)
    col = Collection.open(directory, create=False, device=args.device, weights=args.weights)
    for line in col.catalog.forget_damaged():
        print(f"repair: {line}")
    for folder in args.folders:
        col.add_folder(folder)
    if not col.catalog.folders():
        raise LookalikeError(f"The catalog {directory} has no photo folders left to index; give them: lookalike "
                             f"repair --catalog {directory} FOLDER...")
    chosen = col.catalog.get_meta("method")
    for name in [n for n, _count, _gen in col.catalog.methods()] or [args.method or col.active_method]:
        report = col.index(method=name, progress=ProgressBar())
        print(f"repair: {name}: {report.indexed} photos described again, {report.unchanged} unchanged, "
              f"{report.removed} removed, {len(report.failed)} failed")
        for path, reason in report.failed:
            print(f"  failed: {path}: {reason}", file=sys.stderr)
    if chosen is not None:  # indexing each method made it the active one: restore the user's
        col.catalog.set_meta("method", chosen)
    problems = col.catalog.check()
    print("check:   ok" if not problems else "check:   PROBLEMS\n  " + "\n  ".join(problems))
    return 1 if problems else 0


def _salvage_if_damaged(args: argparse.Namespace) -> Path:
    """Snapshot a readable catalog, or salvage a damaged one; returns the catalog folder."""
    from engine.errors import CatalogDamagedError
    from engine.store.catalog import DB_NAME, CatalogStore
    from engine.store.paths import default_catalog_dir
    from engine.store.salvage import salvage_catalog

    directory = (Path(args.catalog).expanduser() if args.catalog else default_catalog_dir()).resolve()
    for f in args.folders:
        if not Path(f).is_dir():
            raise LookalikeError(f"Folder not found: {f}")
    if not (directory / DB_NAME).exists():
        raise LookalikeError(f"No catalog at {directory} to repair.")
    try:
        catalog = CatalogStore(directory, create=False)
        try:
            damaged = [r[0] for r in catalog.query("PRAGMA integrity_check") if r[0] != "ok"]
            if not damaged:
                print(f"repair: catalog readable; snapshot in {catalog.backup('before-repair')}")
                return directory
        finally:
            catalog.close()
    except CatalogDamagedError as exc:
        damaged = [str(exc)]
    print(f"repair: the SQLite file is damaged ({damaged[0][:200]}); salvaging what it still holds")
    for line in salvage_catalog(directory).words():
        print(f"repair: {line}")
    return directory


COMMAND = Command("repair", "repair a damaged collection: salvage the catalog, describe lost photos again",
                  add_arguments, run)
