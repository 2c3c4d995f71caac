"""Command-line interface. Each module here defines ``COMMAND`` (a :class:`Command`).

``main.py`` builds an argparse parser from every command found in this package; adding a
command is adding a module. User mistakes raise :class:`LookalikeError` and are printed as
one line (exit 2); no traceback.
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import pkgutil
import sys
from dataclasses import dataclass
from typing import Callable

from engine.errors import LookalikeError


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def add_catalog_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--catalog", metavar="DIR", default=None,
                   help="collection catalog folder (default: $LOOKALIKE_HOME or the user data folder)")


def add_device_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"], help="where the CNN runs")
    p.add_argument("--weights", metavar="FILE", default=None, help="backbone weights file (.pth) to use instead of the default")


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1 (``--batch-size``, ``--top``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


def commands() -> dict[str, Command]:
    found: dict[str, Command] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        cmd = getattr(importlib.import_module(f"{__name__}.{info.name}"), "COMMAND", None)
        if cmd is not None:
            found[cmd.name] = cmd
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lookalike", description="Find photos by what they show.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    sub = parser.add_subparsers(dest="command")
    for cmd in commands().values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        cmd.add_arguments(p)
        p.set_defaults(_run=cmd.run)
    return parser


def main(argv: list[str] | None = None, gui_runner: Callable[[argparse.Namespace], int] | None = None) -> int:
    """Run one command. ``gui_runner`` opens the window for the ``gui`` command; main.py passes
    it so that nothing under engine/ imports the GUI."""
    argv = list(sys.argv[1:] if argv is None else argv)
    for stream in (sys.stdout, sys.stderr):
        # File names that are not valid UTF-8 (surrogate-escaped by Python) are printed as
        # \udcXX escapes instead of crashing a strict UTF-8 terminal; in --json output they
        # are valid JSON escapes that json.loads + os.fsencode turn back into the bytes.
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    known = {a for a in commands()}
    # ``gui`` is the default command.
    if not any(a in known for a in argv if not a.startswith("-")) and not any(a in ("-h", "--help") for a in argv):
        argv = ["gui", *argv]
    args = parser.parse_args(argv)
    args.gui_runner = gui_runner
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args._run(args) or 0)
    except LookalikeError as exc:
        print(f"lookalike: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lookalike: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
