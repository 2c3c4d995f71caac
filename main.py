"""Lookalike: one entry point. ``gui`` (default), ``index``, ``search``, ``status``, ``eval``, ``train``, ``methods``."""
from __future__ import annotations

import sys


def cli() -> int:
    from engine.cli import main

    return main()


if __name__ == "__main__":
    sys.exit(cli())
