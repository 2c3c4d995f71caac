"""Lookalike: one entry point. ``gui`` (default), ``index``, ``search``, ``status``, ``eval``, ``train``, ``methods``."""
from __future__ import annotations

import sys


def run_gui(args) -> int:
    # Qt is imported only when the window is asked for, so `index`/`search` start fast.
    from gui.app import run_app

    return run_app(args)


def cli() -> int:
    from engine.cli import main

    return main(gui_runner=run_gui)


def gui_main() -> int:
    """``lookalike-gui [OPTIONS] [PHOTO]``: the desktop menu's entry (its ``Exec=... %F``); a
    photo given, e.g. opened with Lookalike from a file manager, is the first query."""
    from engine.cli import main

    return main(["gui", *sys.argv[1:]], gui_runner=run_gui)


if __name__ == "__main__":
    sys.exit(cli())
