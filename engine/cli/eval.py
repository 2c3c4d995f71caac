"""``lookalike eval DATASET_DIR ... --method NAME ...``: accuracy of methods on labelled photos.

A dataset is a folder with ``images/`` and ``ground_truth.json`` (``--layout gt``, see
``../shared/datasets/README.md``) or a folder whose sub-folders are groups of matching photos
(``--layout folders``). ``--all`` evaluates every registered method (or the ``--method``s given)
on every dataset of ``--datasets-root`` (default: the developers' ``../shared/datasets``).
Indexing is cached (see :mod:`engine.evaluation.runner`), so a second run only re-scores.
``--set KEY=VALUE`` runs the methods with other settings (another config, another cache and
another row of ``--results-md``); ``--chosen-on TEXT`` says where the run's parameters were
chosen, next to its numbers; ``--measured FILE`` records the default-config results for
``methods`` and the app (see :mod:`engine.evaluation.report`).

JSON (``--json``): one dataset gives ``{"dataset", "protocol", "images", "queries", "results":
[{"method", "mAP", "ns", "p@1", "p@5", "r@10", ..., "per_query": [...]}]}``; several datasets
give ``{"datasets": [<that object>, ...]}``. ``ns`` is null except for the ukbench protocol.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from engine.errors import LookalikeError
from engine.search.rerank import DEFAULT_RERANK, RERANKERS
from engine.cli import Command, add_device_argument, print_json

DEFAULT_DATASETS_ROOT = Path(__file__).resolve().parents[3] / "shared" / "datasets"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("datasets", nargs="*", metavar="DATASET_DIR", help="dataset folder(s)")
    p.add_argument("--method", action="append", default=None, metavar="NAME",
                   help="method to evaluate (repeatable; default: rmac, or every method with --all)")
    p.add_argument("--all", action="store_true",
                   help="every registered method (unless --method is given) on every dataset of --datasets-root")
    p.add_argument("--datasets-root", metavar="DIR", default=None,
                   help=f"where --all looks for datasets (default: {DEFAULT_DATASETS_ROOT})")
    p.add_argument("--layout", choices=["gt", "folders"], default="gt",
                   help="gt: images/ + ground_truth.json; folders: each sub-folder is a group of matching photos")
    p.add_argument("--query-crop", choices=["image", "none", "activations"], action="append", default=None,
                   help="queries with a box: crop the image, ignore the box, or crop the feature maps (methods "
                        "that support it; the others crop the image). Repeatable; default: both image and none "
                        "(the index is shared, so the second costs only the queries)")
    p.add_argument("--queries", choices=["given", "every-positive"], default="given",
                   help="given: the ground truth's queries. every-positive: every positive of a given query "
                        "as a whole-photo query for the others (24 on oxford_dev, 122 on paris_dev): a "
                        "larger, less noisy set to choose parameters on; its junk is the given query's plus "
                        "the photo itself")
    p.add_argument("--query-stride", type=int, default=1, metavar="N",
                   help="with --queries every-positive: keep every N-th of those queries (for slow re-rankings)")
    p.add_argument("--holidays-rotation", choices=["exif", "stored"], default="exif",
                   help="Holidays protocol only. exif (default): images upright as the app sees them "
                        "(EXIF orientation applied by the loader). stored: pixels as stored, EXIF "
                        "orientation ignored. No manual rotation list is shipped; on holidays_samples "
                        "both give the same pixels.")
    add_device_argument(p)
    p.add_argument("--rerank", choices=sorted(RERANKERS), action="append", default=None,
                   help=f"query-time re-ranking (repeatable; default: {DEFAULT_RERANK}, what a new collection uses)")
    p.add_argument("--json", action="store_true", help="print JSON (with per-query results)")
    p.add_argument("--report", metavar="DIR", default=None,
                   help="write a Markdown report with precision-recall plots and worst-query strips")
    p.add_argument("--results-md", metavar="FILE", default=None,
                   help="update the generated results table in FILE (e.g. docs/RESULTS.md), "
                        "keeping the text outside its markers")
    p.add_argument("--chosen-on", metavar="TEXT", default=None,
                   help="where the parameters of this run were chosen, shown next to its numbers in "
                        "--results-md (e.g. paris_dev, leave-one-query-out; default: not tuned)")
    p.add_argument("--set", action="append", default=None, metavar="KEY=VALUE", dest="overrides",
                   help="method setting for this run, VALUE in JSON (e.g. image_side=1024, "
                        "'scales=[1,0.7071,0.5]'; a bare word is a string). Repeatable")
    p.add_argument("--measured", metavar="FILE", default=None,
                   help="merge the mAPs and speed of default-config results into FILE "
                        "(engine/descriptors/methods/measured.json: what `methods` and the app show)")
    p.add_argument("--cache", metavar="DIR", default=None, help="evaluation cache folder (default: the user cache)")


_BARE_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


def parse_overrides(items: list[str] | None, methods: list[str]) -> dict:
    """``--set KEY=VALUE`` items -> method config overrides, checked against every method to
    run (unknown setting, or a value of another type than the setting's default, is an error)."""
    from engine.descriptors.methods import METHODS

    overrides: dict = {}
    for item in items or ():
        key, eq, text = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise LookalikeError(f"--set {item!r}: write KEY=VALUE, e.g. --set image_side=1024.")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            if not _BARE_WORD.fullmatch(text.strip()):
                raise LookalikeError(f"--set {key}: {text!r} is not a JSON value "
                                     "(numbers, true/false/null, [lists], \"strings\").") from None
            value = text.strip()
        overrides[key] = value
    for name in methods if overrides else ():
        default = METHODS[name].config.to_dict()
        unknown = sorted(set(overrides) - set(default))
        if unknown:
            raise LookalikeError(f"--set {', '.join(unknown)}: no such setting for {name}; "
                                 f"its settings: {', '.join(sorted(default))}.")
        for key, value in overrides.items():
            if not _same_kind(default[key], value):
                raise LookalikeError(f"--set {key}={json.dumps(value)}: {name}'s {key} is "
                                     f"{type(default[key]).__name__} (default {json.dumps(default[key])}).")
    return overrides


def _same_kind(default, value) -> bool:
    if default is None or value is None:
        return True  # optional settings: the method checks what it gets
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and (isinstance(default, float) or isinstance(value, int))
    if isinstance(default, (tuple, list)):
        return isinstance(value, list)
    return isinstance(value, type(default))


def _progress(args):
    if args.json and not sys.stderr.isatty():
        return None
    from engine.cli.progress import ProgressBar

    return ProgressBar(sys.stderr)


def run(args: argparse.Namespace) -> int:
    from engine.evaluation import evaluate, every_positive_queries, find_datasets, load_dataset
    from engine.evaluation.report import (NOT_TUNED, format_table, load_pyplot, update_measured, update_results_markdown,
                                          write_report)
    from engine.descriptors.methods import DEFAULT_METHOD, METHODS

    folders = [Path(d) for d in args.datasets]
    if args.all:
        root = Path(args.datasets_root) if args.datasets_root else DEFAULT_DATASETS_ROOT
        folders += [p for p in find_datasets(root) if p not in folders]
    elif args.datasets_root:
        raise LookalikeError("--datasets-root is used with --all.")
    if not folders:
        raise LookalikeError("Give a dataset folder (or --all).")
    methods = args.method or (sorted(METHODS) if args.all else [DEFAULT_METHOD])
    for name in methods:
        if name not in METHODS:
            raise LookalikeError(f"Unknown method '{name}'. Available: {', '.join(sorted(METHODS))}.")
    overrides = parse_overrides(args.overrides, methods)
    if args.measured and args.weights:
        raise LookalikeError("--measured records the methods as the app runs them; not with --weights.")
    if args.report:
        load_pyplot()  # the optional plotting library missing: say so now, not after hours of indexing
    datasets = [load_dataset(f, args.layout) for f in folders]  # validate all before the long work
    if args.queries == "every-positive":
        if args.measured:
            raise LookalikeError("--measured records the given queries' numbers; not with --queries every-positive.")
        datasets = [every_positive_queries(ds, args.query_stride) for ds in datasets]
    elif args.query_stride != 1:
        raise LookalikeError("--query-stride is used with --queries every-positive.")
    outputs = []
    for ds in datasets:
        results = []
        has_boxes = any(q.bbox is not None for q in ds.queries)
        crops = list(dict.fromkeys(args.query_crop or ["image", "none"])) if has_boxes else ["image"]
        for name in methods:
            for crop, rerank in ((c, r) for c in crops for r in dict.fromkeys(args.rerank or [DEFAULT_RERANK])):
                if not args.json:
                    print(f"evaluating {name} on {ds.label} ({len(ds.images)} images, {len(ds.queries)} queries"
                          + (f", query crop {crop}" if has_boxes else "") + ")...", file=sys.stderr)
                results.append(evaluate(ds, name, device=args.device, query_crop=crop,
                                        rotation=args.holidays_rotation, weights=args.weights,
                                        cache_root=args.cache, progress=_progress(args), rerank=rerank,
                                        overrides=overrides or None))
        outputs.append((ds, results))
        if args.results_md:  # after each dataset, so a long --all run keeps what it finished
            update_results_markdown(Path(args.results_md), [(ds, results)], args.chosen_on or NOT_TUNED)
        if args.measured:  # only default-config results are written (see update_measured)
            update_measured(Path(args.measured), [(ds, results)])
        if args.report:
            path = write_report(Path(args.report), ds, results)
            if not args.json:
                print(f"report: {path}", file=sys.stderr)
    if args.results_md:
        if not args.json:
            print(f"updated {args.results_md}", file=sys.stderr)
    if args.json:
        objs = [{"dataset": ds.label, "protocol": ds.protocol, "layout": ds.layout, "images": len(ds.images),
                 "queries": len(ds.queries), "results": [r.to_json() for r in results]} for ds, results in outputs]
        print_json(objs[0] if len(objs) == 1 else {"datasets": objs})
    else:
        print(format_table(outputs))
    return 0


COMMAND = Command("eval", "measure retrieval accuracy of methods on labelled photos", add_arguments, run)
