"""Outputs of an evaluation: the terminal table, ``--report DIR`` and the ``docs/RESULTS.md`` table.

``--report DIR`` writes ``DIR/<dataset>/report.md`` with, per method, a precision-recall plot
(``pr_<method>.png``: each query's curve thin, the mean interpolated curve thick) and one strip
of the worst queries (``worst_<method>.png``: query, then its top results framed green =
positive, red = wrong; junk and, for holidays/folders, the query itself are not shown as they
are not ranked). Plots use matplotlib's Agg backend (no display needed).

``--results-md FILE`` rewrites only the text between ``<!-- BEGIN GENERATED RESULTS -->`` and
``<!-- END GENERATED RESULTS -->``: a summary table (one row per dataset, method + re-ranking,
config, query crop and rotation, with the config in short and where its parameters were chosen)
and, for the landmark sets (protocol ``oxford``), one table of per-query APs per query crop. The
rows are kept in a sidecar, ``results_rows.json`` beside FILE, and the block is rendered from
it, so runs of different datasets/methods/configs accumulate (a row is replaced by a newer run
with its key; see :func:`merge_rows`).

``--measured FILE`` merges the default-config results into the method list's measured numbers
(:func:`update_measured`, :mod:`engine.descriptors.methods.measured`).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from engine.errors import LookalikeError
from engine.evaluation.dataset import Dataset
from engine.evaluation.metrics import precision_recall_curve
from engine.evaluation.runner import MethodResult
from engine.imaging.images import is_image_path

BEGIN = "<!-- BEGIN GENERATED RESULTS -->"
END = "<!-- END GENERATED RESULTS -->"
DATA_PREFIX = "<!-- results-data: "

METRIC_COLUMNS = (("ns", "N-S"), ("mAP", "mAP"), ("p@1", "P@1"), ("p@5", "P@5"), ("r@10", "R@10"))


def _fmt(v, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def format_table(outputs: Sequence[tuple[Dataset, Sequence[MethodResult]]]) -> str:
    """Plain-text table: one row per (dataset, method)."""
    head = ["dataset", "method", *[c for _k, c in METRIC_COLUMNS], "dim", "side", "ms/img", "crop"]
    rows = []
    for ds, results in outputs:
        for r in results:
            rows.append([ds.label, r.method, *[_fmt(r.metrics.get(k)) for k, _c in METRIC_COLUMNS], str(r.dim),
                         str(r.image_side), _fmt(r.ms_per_image, 0) + (" (cached)" if r.cached else ""),
                         r.query_crop if any(q.bbox for q in ds.queries) else "-"])
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths]), *(line(r) for r in rows)])


# -- docs/RESULTS.md -------------------------------------------------------------------------
NOT_TUNED = "not tuned"
# Per-query tables are for the landmark sets: few queries, each worth reading on its own.
PER_QUERY_PROTOCOLS = ("oxford",)
#: A derived query set (every positive as a query: 41 / 205 queries) is summarised by its mean
#: only; its per-query APs stay in the rows file.
MAX_PER_QUERY_COLUMNS = 12
CROP_TITLES = {"image": "query cropped to its box (`image`)", "none": "whole photo as query (`none`)",
               "activations": "feature maps cropped to the box (`activations`)"}


def split_method_label(label: str) -> tuple[str, str]:
    """``"rmac+aqe"`` -> ``("rmac", "aqe")``: :func:`~engine.evaluation.runner.evaluate` names a
    re-ranked result ``method+rerank`` (method names have no ``+``)."""
    method, _, rerank = label.partition("+")
    return method, rerank or "none"


def config_id(config: dict) -> str:
    """A short stable hash of a method's full config (part of a row's key)."""
    blob = json.dumps(config, sort_keys=True, default=list)
    return hashlib.sha1(blob.encode()).hexdigest()[:8]


def is_default_config(r: MethodResult) -> bool:
    """The result was computed with the method's registered default config."""
    from engine.descriptors.methods import METHODS

    spec = METHODS.get(split_method_label(r.method)[0])
    return spec is not None and _jsonable(r.config) == _jsonable(spec.config.to_dict())


def _jsonable(obj):
    return json.loads(json.dumps(obj, sort_keys=True, default=list))


def _num(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def describe_config(method: str, config: dict, rerank: str) -> str:
    """The config in short: input side, scales / input sides, every other setting that differs
    from the method's registered default, and the re-ranking."""
    from engine.descriptors.methods import METHODS

    spec = METHODS.get(method)
    default = _jsonable(spec.config.to_dict()) if spec else {}
    config = _jsonable(config)
    parts = [f"{config['image_side']} px"] if "image_side" in config else []
    shown = {"image_side"}
    for key, word in (("scales", "scales"), ("resolutions", "sides"), ("sides", "sides")):
        if isinstance(config.get(key), list):
            parts.append(f"{word} " + "/".join(_num(v) for v in config[key]))
            shown.add(key)
    parts += [f"{k}={_num(v)}" for k, v in sorted(config.items()) if k not in shown and default.get(k, v) != v]
    parts.append("no re-ranking" if rerank == "none" else f"re-ranking {rerank}")
    return ", ".join(parts)


def _row(ds: Dataset, r: MethodResult, chosen_on: str = NOT_TUNED) -> dict:
    method, rerank = split_method_label(r.method)
    return {"dataset": ds.label, "protocol": ds.protocol, "method": r.method, "rerank": rerank,
            "config": describe_config(method, r.config, rerank), "config_id": config_id(r.config),
            "default_config": is_default_config(r), "chosen_on": chosen_on, "backbone": r.backbone,
            "image_side": r.image_side, "dim": r.dim, "images": r.n_images, "queries": r.n_queries,
            "query_crop": r.query_crop if any(q.bbox for q in ds.queries) else "-", "rotation": r.rotation,
            **{k: (None if r.metrics.get(k) is None else round(r.metrics[k], 4)) for k, _c in METRIC_COLUMNS},
            "per_query": {s.query: round(s.ap, 4) for s in r.per_query},
            "ms_per_image": None if r.ms_per_image is None else round(r.ms_per_image, 1),
            "cpu_ms_per_image": None if r.cpu_ms_per_image is None else round(r.cpu_ms_per_image, 1),
            "device": r.device, "date": _dt.date.today().isoformat()}


def _row_key(row: dict) -> tuple:
    # The config is in the key so that two configs of one method (e.g. 512 and 1024 px) are two
    # rows; the "chosen on" note is not: a re-run of the same config replaces its row.
    return (row["dataset"], row["method"], row.get("config_id"), row.get("query_crop", "-"),
            row.get("rotation", "exif"))


def merge_rows(old: list[dict], new: list[dict]) -> list[dict]:
    """Old rows, with those a new row has the key of replaced. Rows written before configs were
    recorded (no ``config_id``) are replaced by any new run of their dataset, method, crop and
    rotation: what config they had is unknown, so they cannot stand beside a known one."""
    fresh = {_row_key(r)[:2] + _row_key(r)[3:] for r in new}
    merged = {_row_key(r): r for r in old
              if not (r.get("config_id") is None and _row_key(r)[:2] + _row_key(r)[3:] in fresh)}
    merged.update({_row_key(r): r for r in new})
    return list(merged.values())


def _config_cell(row: dict) -> str:
    if not row.get("config"):
        return f"{row['image_side']} px (config not recorded)"
    return row["config"] + ("" if row.get("default_config") else " (not the method's default)")


def short_query_name(label: str) -> str:
    """A query's column title: its ground-truth id (``christ_church_1``), or its image's file
    name without folder and extension when it has no id."""
    name = label.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, _ext = name.rpartition(".")
    return stem if dot and stem and is_image_path(name) else name


def _per_query_tables(rows: list[dict]) -> list[str]:
    lines: list[str] = []
    crops_order = list(CROP_TITLES)
    for dataset in sorted({r["dataset"] for r in rows if r.get("protocol") in PER_QUERY_PROTOCOLS}):
        ds_rows = [r for r in rows if r["dataset"] == dataset and r.get("per_query")
                   and len(r["per_query"]) <= MAX_PER_QUERY_COLUMNS]
        crops = sorted({r.get("query_crop", "-") for r in ds_rows},
                       key=lambda c: (crops_order.index(c) if c in crops_order else len(crops_order), c))
        for crop in crops:
            group = sorted((r for r in ds_rows if r.get("query_crop", "-") == crop),
                           key=lambda r: (r["method"], r.get("config", ""), r.get("chosen_on", "")))
            queries = sorted({q for r in group for q in r["per_query"]}, key=short_query_name)
            lines += ["", f"#### {dataset}: AP per query, {CROP_TITLES.get(crop, f'query crop `{crop}`')}", "",
                      "| method | config | chosen on | " + " | ".join(short_query_name(q) for q in queries)
                      + " | mean |", "|---|---|---|" + "---|" * (len(queries) + 1)]
            for r in group:
                aps = [_fmt(r["per_query"].get(q)) for q in queries]
                lines.append(f"| {r['method']} | {_config_cell(r)} | {r.get('chosen_on') or '–'} | "
                             + " | ".join(aps) + f" | {_fmt(r.get('mAP'))} |")
    return lines


def render_generated(rows: list[dict], rows_file: str | None = None) -> str:
    """The block between the markers: the summary table (one row per dataset, method, config,
    query crop and rotation), then per landmark set and query crop the AP of every query."""
    rows = sorted(rows, key=lambda r: (r["dataset"], r.get("query_crop", "-"), r["method"], r.get("config", "")))
    source = f", from `{rows_file}` beside this file" if rows_file else ""
    lines = [BEGIN,
             f"<!-- Generated by `main.py eval --results-md`{source}; edits between these markers are overwritten. -->",
             "",
             "| dataset | protocol | method | config | chosen on | backbone | dim | query crop | N-S | mAP | P@1 "
             "| P@5 | R@10 | ms/img indexed (wall) | CPU ms/img | device | date |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['dataset']}{' (EXIF orientation ignored)' if r.get('rotation') == 'stored' else ''} "
            f"| {r['protocol']} | {r['method']} | {_config_cell(r)} | {r.get('chosen_on') or '–'} | {r['backbone']} "
            f"| {r['dim']} | {r.get('query_crop', '-')} | {_fmt(r.get('ns'), 2)} | {_fmt(r.get('mAP'))} "
            f"| {_fmt(r.get('p@1'), 2)} | {_fmt(r.get('p@5'), 2)} | {_fmt(r.get('r@10'), 2)} "
            f"| {_fmt(r.get('ms_per_image'), 0)} | {_fmt(r.get('cpu_ms_per_image'), 0)} | {r['device']} | {r['date']} |")
    lines += _per_query_tables(rows)
    if rows_file is None:  # no sidecar: the rows travel in the Markdown itself
        lines += ["", DATA_PREFIX + json.dumps(rows, sort_keys=True) + " -->"]
    lines.append(END)
    return "\n".join(lines)


def rows_file_for(path: Path) -> Path:
    """Where the rows of ``path``'s generated block are kept: ``docs/RESULTS.md`` ->
    ``docs/results_rows.json`` (the block is rendered from it, so a hand edit of the Markdown
    cannot lose or corrupt them)."""
    return path.with_name(f"{path.stem.lower()}_rows.json")


def _legacy_rows(block: str) -> list[dict]:
    """Rows kept as JSON in an HTML comment inside the block (before the sidecar file)."""
    m = re.search(re.escape(DATA_PREFIX) + r"(.*?) -->", block, re.S)
    if not m:
        return []
    try:
        return json.loads(m.group(1))
    except json.JSONDecodeError:
        return []


def load_rows(path: Path) -> list[dict]:
    """The rows behind ``path``'s generated block: its sidecar file, else (files written before
    the sidecar existed) the JSON comment in the block; [] when there are none."""
    side = rows_file_for(path)
    if side.exists():
        return json.loads(side.read_text(encoding="utf-8"))["rows"]
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    if BEGIN in text and END in text:
        return _legacy_rows(text[text.index(BEGIN):text.index(END)])
    return []


def write_results_markdown(path: Path, rows: list[dict]) -> None:
    """Write ``rows`` to the sidecar and re-render the block of ``path`` (created with a short
    intro if absent), keeping the text outside the markers."""
    from engine.store.atomic import atomic_write_text

    if path.exists():
        text = path.read_text(encoding="utf-8")
    else:
        text = "# Results\n\nGenerated by `main.py eval`; see `engine/evaluation/`.\n\n" + BEGIN + "\n" + END + "\n"
    if BEGIN not in text or END not in text or text.index(BEGIN) > text.index(END):
        text = text.rstrip("\n") + "\n\n" + BEGIN + "\n" + END + "\n"
    start, end = text.index(BEGIN), text.index(END) + len(END)
    side = rows_file_for(path)
    rows = sorted(rows, key=lambda r: tuple(str(k) for k in _row_key(r)))
    note = json.dumps(f"rows of the generated block of {path.name}; written by main.py eval --results-md")
    # One row a line: a new run shows in a diff as the lines of the rows it changed.
    atomic_write_text(side, '{"note": ' + note + ', "rows": [\n'
                      + ",\n".join(json.dumps(r, sort_keys=True) for r in rows) + "\n]}\n")
    atomic_write_text(path, text[:start] + render_generated(rows, side.name) + text[end:])


@contextmanager
def _merge_lock(path: Path) -> Iterator[None]:
    """Hold a lock for ``path`` (waiting for it) while the file is read, merged and written:
    evaluations of different methods often run side by side, and without the lock the later
    writer would drop the rows or numbers the other one added in between."""
    import tempfile

    # In the temp folder, not beside the file: no lock files in the repository's docs/.
    digest = hashlib.sha1(os.fspath(Path(path).resolve()).encode()).hexdigest()[:16]
    fd = os.open(Path(tempfile.gettempdir()) / f"lookalike-merge-{digest}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no lock (a developer's tool)
            fcntl = None
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def update_results_markdown(path: Path, outputs: Sequence[tuple[Dataset, Sequence[MethodResult]]],
                            chosen_on: str = NOT_TUNED) -> None:
    """Merge the results into ``path``'s rows (see :func:`merge_rows`) and re-render its block.
    ``chosen_on``: where any parameter of these runs was chosen (``eval --chosen-on``)."""
    new = [_row(ds, r, chosen_on) for ds, results in outputs for r in results]
    with _merge_lock(path):
        write_results_markdown(path, merge_rows(load_rows(path), new))


# -- engine/descriptors/methods/measured.json ------------------------------------------------------------
def measured_key(dataset: str, query_crop: str, rerank: str) -> str:
    """``"oxford_dev:image"``, ``"paris_dev:none+aqe"``, ``"ukbench56"`` (no boxes, no crop)."""
    return dataset + ("" if query_crop == "-" else f":{query_crop}") + ("" if rerank == "none" else f"+{rerank}")


def update_measured(path: Path, outputs: Sequence[tuple[Dataset, Sequence[MethodResult]]]) -> list[str]:
    """Merge the mAPs and indexing speed of the results computed with their method's default
    config into ``path`` (see :mod:`engine.descriptors.methods.measured`); returns the methods written.

    A result with another config (``eval --set``) is left out: it is not the method as the app
    runs it. ``images_per_s`` (1000 / wall ms per image indexed) comes from the run over the most
    images so far (the steadiest average), named in ``images_per_s_on``."""
    from engine.descriptors.methods.measured import load_measured, write_measured

    path = Path(path)
    written: list[str] = []
    with _merge_lock(path):
        load_measured.cache_clear()  # another process may have written the file since it was read
        methods = json.loads(json.dumps(load_measured(path)))  # a copy: the loader's cache is shared
        for ds, results in outputs:
            for r in results:
                if not is_default_config(r):
                    continue
                method, rerank = split_method_label(r.method)
                entry = methods.setdefault(method, {})
                crop = r.query_crop if any(q.bbox for q in ds.queries) else "-"
                entry[measured_key(ds.name, crop, rerank)] = round(float(r.metrics["mAP"]), 4)
                if r.ms_per_image and r.n_images >= entry.get("images_per_s_images", 0):
                    entry["images_per_s"] = round(1000.0 / r.ms_per_image, 2)
                    entry["images_per_s_on"] = f"{ds.name} ({r.device})"
                    entry["images_per_s_images"] = r.n_images
                written.append(method)
        if written:
            write_measured(methods, "written by `main.py eval --measured` (make results): strict mAP per "
                           "'dataset[:query crop][+re-ranking]' with each method's default config; "
                           "images_per_s = 1000 / wall ms per image indexed", path)
    return sorted(set(written))


# -- --report DIR ----------------------------------------------------------------------------
def mean_pr_curve(results: MethodResult, levels: int = 101) -> tuple[np.ndarray, np.ndarray]:
    """Mean over queries of the interpolated precision (max precision at recall >= level)."""
    grid = np.linspace(0, 1, levels)
    curves = []
    for s in results.per_query:
        prec, rec = precision_recall_curve(s.relevant, s.n_positives)
        interp = np.zeros_like(grid)
        for i, level in enumerate(grid):
            ok = rec >= level - 1e-12
            interp[i] = prec[ok].max() if ok.any() else 0.0
        curves.append(interp)
    return grid, np.mean(curves, axis=0)


def load_pyplot():
    """matplotlib's pyplot on the file-only Agg backend. matplotlib is the optional ``report``
    extra: without it a :class:`LookalikeError` says how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise LookalikeError("eval --report draws its plots with matplotlib, which is not installed; "
                             "install the report extra: pip install 'lookalike[report]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _pr_plot(r: MethodResult, out: Path) -> None:
    plt = load_pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4), dpi=100)
    for s in r.per_query:
        prec, rec = precision_recall_curve(s.relevant, s.n_positives)
        ax.plot(np.r_[0, rec], np.r_[1, prec], color="0.75", lw=0.6)
    grid, mean = mean_pr_curve(r)
    ax.plot(grid, mean, color="C0", lw=2, label=f"{r.method} (mean interpolated; mAP {r.metrics['mAP']:.3f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=f"{r.dataset}: {r.method}")
    ax.legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def _worst_strip(r: MethodResult, ds: Dataset, out: Path, n_queries: int = 5, n_results: int = 5, thumb: int = 128) -> None:
    from PIL import Image, ImageDraw, ImageOps

    from engine.imaging.images import load_image

    worst = sorted(r.per_query, key=lambda s: (s.ap, s.query))[:n_queries]
    by_label = {q.label: q for q in ds.queries}
    pad = 6
    W = (n_results + 1) * (thumb + pad) + pad
    H = len(worst) * (thumb + pad + 14) + pad
    sheet = Image.new("RGB", (W, H), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)

    def tile(name: str, color, box=None) -> Image.Image:
        path = r.paths.get(name) or ds.path_of(name)
        if box is not None:  # the box is in the upright image's own pixels
            img = load_image(path)
            ImageDraw.Draw(img).rectangle([int(v) for v in box], outline=(255, 200, 0),
                                          width=max(3, max(img.size) // 100))
        else:
            img = load_image(path, thumb * 2)
        img = ImageOps.pad(img, (thumb - 6, thumb - 6), color=(240, 240, 240))
        return ImageOps.expand(img, border=3, fill=color)

    for row, s in enumerate(worst):
        y = pad + row * (thumb + pad + 14)
        q = by_label[s.query]
        draw.text((pad, y), f"{s.query}  AP {s.ap:.3f}", fill=(0, 0, 0))
        sheet.paste(tile(q.image, (60, 60, 200), q.bbox), (pad, y + 12))
        for k, name in enumerate(s.top[:n_results]):
            color = (30, 160, 60) if s.relevant[k] else (210, 40, 40)
            sheet.paste(tile(name, color), (pad + (k + 1) * (thumb + pad), y + 12))
    sheet.save(out)


def write_report(directory: Path, ds: Dataset, results: Sequence[MethodResult]) -> Path:
    """Write ``directory/<dataset>/report.md`` and its PNGs; returns the Markdown path."""
    out = directory / "".join(c if c.isalnum() or c in "-_" else "_" for c in ds.name)
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# Evaluation of {ds.name}", "",
             f"Protocol `{ds.protocol}` ({ds.layout} layout), {len(ds.images)} images, {len(ds.queries)} queries.",
             "Ties are ranked in database order; junk is removed before scoring"
             + ("; the query is left out of its own ranking." if ds.excludes_query else "."), "",
             "| method | query crop | N-S | mAP | P@1 | P@5 | R@10 | dim | side | ms/img |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        crop = r.query_crop if any(q.bbox for q in ds.queries) else "-"
        lines.append(f"| {r.method} | {crop} | " + " | ".join(_fmt(r.metrics.get(k)) for k, _c in METRIC_COLUMNS)
                     + f" | {r.dim} | {r.image_side} | {_fmt(r.ms_per_image, 0)} |")
    for r in results:
        tag = r.method + (f"_crop-{r.query_crop.split()[0]}" if any(q.bbox for q in ds.queries) else "")
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in tag)
        _pr_plot(r, out / f"pr_{safe}.png")
        _worst_strip(r, ds, out / f"worst_{safe}.png")
        lines += ["", f"## {tag}", "", f"![precision-recall of {r.method}](pr_{safe}.png)", "",
                  "Worst queries (blue: query, with its box in yellow; green: positive; red: wrong):", "",
                  f"![worst queries of {r.method}](worst_{safe}.png)", "",
                  "| query | AP | P@1 | top results |", "|---|---|---|---|"]
        for s in sorted(r.per_query, key=lambda s: (s.ap, s.query))[:10]:
            lines.append(f"| {s.query} | {s.ap:.3f} | {s.p_at_1:.0f} | {', '.join(s.top[:5])} |")
    md = out / "report.md"
    md.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return md
