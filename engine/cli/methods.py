"""``lookalike methods``: the registered descriptor methods."""
from __future__ import annotations

import argparse

from . import Command, print_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    from ..api import list_methods

    methods = list_methods()
    if args.json:
        print_json(methods)
    else:
        width = max(len(m["name"]) for m in methods)
        for m in methods:
            print(f"{m['name']:<{width}}  [{m['cost']}]  {m['description']}")
    return 0


COMMAND = Command("methods", "list the descriptor methods", add_arguments, run)
