"""``lookalike gui``: open the desktop application (the default command)."""
from __future__ import annotations

import argparse

from engine.cli import Command, add_catalog_argument
from engine.errors import LookalikeError


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_catalog_argument(p)
    p.add_argument("photo", nargs="?", default=None,
                   help="a photo to search with once the window is open (what a file manager passes)")
    p.add_argument("--query", metavar="IMAGE", default=None, help="run this query once the window is open")
    p.add_argument("--screenshot", metavar="FILE.png", default=None,
                   help="save a screenshot of the window once results are shown, then exit")
    p.add_argument("--overlay", choices=["none", "regions", "clusters", "cam"], default=None,
                   help="overlay on the query and in why-matched (default: the last one used)")
    p.add_argument("--why", type=int, metavar="N", default=None, help="open why-matched for result N (1-based)")
    p.add_argument("--browse", metavar="FOLDER", default=None, help="show the browse view of this folder")
    p.add_argument("--duplicates", action="store_true", help="show the duplicates view")


def run(args: argparse.Namespace) -> int:
    # The engine never imports Qt or gui/: main.py, which sits above both, hands the window's
    # entry in as ``gui_runner`` (see engine.cli.main).
    if args.photo and not args.query:
        args.query = args.photo
    runner = getattr(args, "gui_runner", None)
    if runner is None:
        raise LookalikeError("the desktop application starts from main.py (`python main.py gui`, "
                             "or the `lookalike` command); this entry has no GUI attached")
    return runner(args)


COMMAND = Command("gui", "open the desktop application (default)", add_arguments, run)
