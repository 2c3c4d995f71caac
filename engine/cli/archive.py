"""``lookalike archive index|build-index|status``: archives described on a Ray cluster.

    lookalike archive index SOURCE... --out ARCHIVE_DIR [--ray-address ADDR] [--method NAME]
    lookalike archive build-index ARCHIVE_DIR [--kind ivfpq] [--nlist N] [--nprobe N]
    lookalike archive status ARCHIVE_DIR [--failures]
    lookalike search IMAGE --catalog ARCHIVE_DIR

``archive index`` lists the sources, splits them into shards and describes the unfinished
shards on Ray (a local instance without ``--ray-address``), then builds the search index
(``--no-build-index`` leaves that to ``archive build-index``). Rerun the same command after an
interruption (finished shards are skipped) or when the sources have new photos: a rerun lists
the sources again and plans the photos no shard has yet as new shards (``--no-relist``: only
continue the recorded plan); the index is rebuilt when a shard was added or described, and
left as it is otherwise. See :mod:`engine.archive` and docs/SCALE.md.
"""
from __future__ import annotations

import argparse
import sys

from engine.cli import Command, positive_int, print_json
from engine.errors import LookalikeError


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="archive_command", metavar="{index,build-index,status}")
    sub.required = True
    ix = sub.add_parser("index", help="describe photo folders on Ray into an archive",
                        description="List SOURCE folders into shards and describe them on Ray workers.")
    ix.add_argument("sources", nargs="*", metavar="SOURCE",
                    help="photo folders (a rerun may leave them out: the recorded plan continues)")
    ix.add_argument("--out", required=True, metavar="ARCHIVE_DIR", help="the archive folder (created if needed)")
    ix.add_argument("--ray-address", metavar="ADDR", default=None,
                    help="a running Ray cluster (e.g. ray://head:10001 or auto); default: start one on this machine")
    ix.add_argument("--method", default=None, help="descriptor method (default: the default method, or the recorded one)")
    ix.add_argument("--set", action="append", default=None, metavar="KEY=VALUE", dest="overrides",
                    help="method setting, VALUE in JSON (e.g. image_side=1024). Repeatable")
    ix.add_argument("--weights", metavar="FILE", default=None,
                    help="backbone weights file (.pth); every worker must read it at this path")
    ix.add_argument("--shard-size", type=positive_int, default=None, help="photos per shard (default 2000)")
    ix.add_argument("--workers", type=positive_int, default=None,
                    help="Ray workers (default: as many as the CPUs / GPUs allow)")
    ix.add_argument("--cpus-per-worker", type=positive_int, default=1, help="CPUs per worker (default 1)")
    ix.add_argument("--gpus-per-worker", type=float, default=0, help="GPUs per worker (default 0: CPU workers)")
    ix.add_argument("--no-relist", action="store_true",
                    help="on an existing archive, continue the recorded plan without listing the sources again "
                         "(new photos are not picked up; for resuming an archive whose listing takes long)")
    ix.add_argument("--no-build-index", action="store_true", help="do not build the search index at the end")
    _add_index_options(ix)
    ix.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    ix.set_defaults(_archive=run_index)
    bi = sub.add_parser("build-index", help="build an archive's search index from its shards")
    bi.add_argument("archive", metavar="ARCHIVE_DIR")
    _add_index_options(bi)
    bi.add_argument("--json", action="store_true")
    bi.set_defaults(_archive=run_build_index)
    st = sub.add_parser("status", help="how far an archive is: shards, photos, failures, index")
    st.add_argument("archive", metavar="ARCHIVE_DIR")
    st.add_argument("--failures", action="store_true", help="also list every file that failed, with its reason")
    st.add_argument("--json", action="store_true")
    st.set_defaults(_archive=run_status)


def _add_index_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kind", choices=["auto", "exact", "ivfpq"], default="auto",
                   help="auto: exact up to 100k photos, IVF-PQ above (engine/search/ann.py)")
    p.add_argument("--nlist", type=positive_int, default=None, help="IVF lists (default 4 sqrt(N), at most 8192)")
    p.add_argument("--nprobe", type=positive_int, default=None, help="lists probed per query (default nlist / 16)")


def _ann(args: argparse.Namespace):
    from engine.search.ann import AnnConfig

    return AnnConfig(kind=args.kind, nlist=args.nlist, nprobe=args.nprobe)


def _say(text: str) -> None:
    print(f"lookalike: {text}", file=sys.stderr, flush=True)


def run_index(args: argparse.Namespace) -> int:
    from engine.archive.layout import ArchiveLayout
    from engine.archive.merge import build_archive_index, index_is_current, read_index_manifest
    from engine.archive.runner import index_archive
    from engine.cli.eval import parse_overrides
    from engine.cli.progress import ProgressBar
    from engine.descriptors.methods import DEFAULT_METHOD, create_method

    layout = ArchiveLayout(args.out)
    method = args.method or (layout.read_info().method if layout.is_archive() else DEFAULT_METHOD)
    create_method(method)  # an unknown name: the registry's error, before --set is checked against it
    overrides = parse_overrides(args.overrides, [method]) if args.overrides else None
    report = index_archive(args.out, args.sources, method=args.method, overrides=overrides, weights=args.weights,
                           shard_size=args.shard_size, ray_address=args.ray_address, workers=args.workers,
                           cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker,
                           progress=ProgressBar(), emit=_say, relist=not args.no_relist)
    out = report.to_json()
    if not args.no_build_index:
        asked_index = (args.kind, args.nlist, args.nprobe) != ("auto", None, None)
        if report.described or asked_index or not index_is_current(layout, report.shards):
            out["index"] = _index_summary(build_archive_index(args.out, _ann(args), emit=_say))
        else:
            out["index"] = {**_index_summary(read_index_manifest(layout)), "rebuilt": False}
            _say("the search index already holds every shard; not rebuilt ('lookalike archive build-index' rebuilds it)")
    if args.json:
        print_json(out)
    else:
        if report.relisting:
            r = report.relisting
            print(f"listed again: {r['new']} new photos planned in {r['new_shards']} new shards; {r['gone']} planned "
                  f"files not found, {r['changed']} changed since described (kept as described), "
                  f"{r['unreadable']} unreadable")
        print(f"{report.described} shards described ({report.photos} photos, {report.failed} failed) and "
              f"{report.skipped} already finished, of {report.shards}, on {report.ray} with {report.workers} "
              f"workers in {report.seconds:.1f} s ({report.images_per_s:.1f} images/s)")
        if "index" in out:
            print(_index_line(out["index"]))
    return 0


def _index_summary(manifest) -> dict:
    return {"kind": manifest.kind, "photos": manifest.photos, "failed": manifest.failed, "dim": manifest.dim,
            "nlist": manifest.ann.get("nlist"), "sidecars": manifest.sidecars,
            "bytes_per_photo": manifest.bytes_per_photo, "seconds": manifest.seconds}


def _index_line(s: dict) -> str:
    b = s["bytes_per_photo"]
    built = "index (already current, not rebuilt)" if s.get("rebuilt") is False else "index"
    return (f"{built}: {s['kind']} over {s['photos']} photos ({s['failed']} failed files) in {s['seconds']['total']:.1f} s; "
            f"per million photos {b['ram']:.0f} MB of RAM, {b['refine']:.0f} MB of refine vectors "
            f"and {b['raw']:.0f} MB of descriptors on disk")


def run_build_index(args: argparse.Namespace) -> int:
    from engine.archive.merge import build_archive_index

    summary = _index_summary(build_archive_index(args.archive, _ann(args), emit=_say))
    if args.json:
        print_json(summary)
    else:
        print(_index_line(summary))
    return 0


def run_status(args: argparse.Namespace) -> int:
    from engine.archive.collection import ArchiveCollection
    from engine.archive.status import archive_status

    st = archive_status(args.archive)
    if args.failures:
        st["failures"] = [{"path": p, "reason": r} for p, r in ArchiveCollection.open(args.archive).failures()]
    if args.json:
        print_json(st)
        return 0
    print(f"{st['archive']}: {st['method']} {st['config']}")
    print(f"  {st['planned_photos']} photos planned in {st['shards']} shards of up to {st['shard_size']} "
          f"({st['ignored']} non-image files ignored, {st['listing_failed']} unreadable when listed)")
    if st["last_listing"]:
        ll = st["last_listing"]
        print(f"  last listed again: {ll['new']} new photos, {ll['gone']} planned files not found, "
              f"{ll['changed']} changed since described ({st['archive']}/listing.json lists them)")
    print(f"  {st['finished_shards']} shards finished, {len(st['claimed_shards'])} claimed by a worker "
          f"(in progress, or interrupted)")
    for c in st["claimed_shards"]:
        print(f"    shard {c['shard']:05d} on {c['host']} (pid {c['pid']})")
    print("  " + (_index_line({**st["index"], "nlist": None}) if st["index"] else "no search index yet"))
    if st["index"] and not st["index"]["current"]:
        print(f"  the index does not hold every finished shard: 'lookalike archive build-index {st['archive']}' "
              f"rebuilds it")
    for f in st.get("failures", []):
        print(f"  failed: {f['path']}: {f['reason']}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    if not hasattr(args, "_archive"):
        raise LookalikeError("archive: say index, build-index or status.")
    return args._archive(args)


COMMAND = Command("archive", "describe huge photo archives on a Ray cluster and search them", add_arguments, run)
