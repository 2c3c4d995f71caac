"""``lookalike methods``: the registered descriptor methods."""
from __future__ import annotations

import argparse

from engine.cli import Command, print_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    from engine.api import list_methods

    from engine.nn.features import planned_runtime

    methods = list_methods()
    runtime = planned_runtime()
    if args.json:
        print_json([{**m, "runtime": runtime} for m in methods])
    else:
        print(f"the network runs on: {runtime}")
        width = max(len(m["name"]) for m in methods)
        for m in methods:
            mark = " (default)" if m.get("default") else ""
            print(f"{m['name']:<{width}}  [{m['cost']}]{mark}  {m['description']}")
            print(f"{'':<{width}}  measured: {measured_summary(m)}")
    return 0


def measured_summary(entry: dict) -> str:
    """The measured numbers of a ``list_methods`` entry in one line (strict mAP per dataset,
    query crop and re-ranking; images/s), or says that it was not measured."""
    measured = entry.get("measured") or {}
    maps = [f"{k} {v:.3f}" for k, v in sorted(measured.items()) if isinstance(v, float) and not k.startswith("images")]
    speed = measured.get("images_per_s")
    parts = maps + ([f"{speed:g} img/s indexed ({measured.get('images_per_s_on', '?')})"] if speed else [])
    return ", ".join(parts) if parts else "not measured yet (make results)"


COMMAND = Command("methods", "list the descriptor methods", add_arguments, run)
