"""Precision/recall of the duplicate finder on a synthetic duplicate set built from real photos.

Sources: photos of ``oxford_dev`` and ``ukbench56`` (one view per ukbench object). Each source
gets copies: re-encoded at JPEG quality 90/50/20, resized to 50 % and 25 %, cropped 5/12/20 %,
stored rotated with an EXIF orientation tag (displays upright), brightness +30 % / -30 %, and
one byte-identical copy. Unrelated photos: other ``oxford_dev`` photos (many show the same
buildings from other viewpoints: hard negatives) and the other three views of each ukbench
object (same object, other viewpoint: not duplicates).

The set is indexed with the default method, every pair inside a finder group is a predicted
pair, every pair of copies of one source is a true pair. Writes
``docs/duplicates_eval.md`` (table) and ``docs/duplicates_eval.png`` (curve).

    .venv/bin/python bench/duplicates_eval.py [--work /tmp/lookalike_dup_eval] [--method rmac]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.api import Collection  # noqa: E402
from engine.duplicate_threshold import off_centre_crop  # noqa: E402
from engine.duplicates import DuplicateConfig, DuplicateFinder, pairs_of  # noqa: E402
from engine.methods import DEFAULT_METHOD  # noqa: E402

DATASETS = ROOT.parent / "shared" / "datasets"

# Source photos that are themselves burst shots of one scene (checked by eye: same person, same
# room, seconds apart). A duplicate finder *should* group them, so the ground truth merges them;
# the table also reports the strict score that counts them as false pairs.
KNOWN_BURSTS = {"magdalen_001152": "magdalen_001142"}


def _variants(img: Image.Image) -> dict[str, tuple[Image.Image, dict]]:
    w, h = img.size
    out = {
        "q90": (img, {"quality": 90}),
        "q50": (img, {"quality": 50}),
        "q20": (img, {"quality": 20}),
        "resize50": (img.resize((w // 2, h // 2), Image.LANCZOS), {"quality": 90}),
        "resize25": (img.resize((w // 4, h // 4), Image.LANCZOS), {"quality": 90}),
        "crop5": (off_centre_crop(img, 0.05), {"quality": 90}),
        "crop12": (off_centre_crop(img, 0.12), {"quality": 90}),
        "crop20": (off_centre_crop(img, 0.20), {"quality": 90}),
        "bright+30": (ImageEnhance.Brightness(img).enhance(1.3), {"quality": 90}),
        "bright-30": (ImageEnhance.Brightness(img).enhance(0.7), {"quality": 90}),
    }
    # Stored rotated 90 degrees clockwise with orientation 6 ("rotate 90 CW to display"):
    # the pixels differ, the photo shown (and described, EXIF applied) is the same.
    exif = Image.Exif()
    exif[0x0112] = 6
    out["exif-rot"] = (img.transpose(Image.ROTATE_90), {"quality": 90, "exif": exif})
    return out


def build_set(work: Path, n_oxford: int, n_ukbench: int, n_unrelated: int) -> dict[str, str | None]:
    """Write the synthetic set under ``work/photos``; returns ``path -> source id`` (None: unrelated)."""
    photos = work / "photos"
    truth_file = work / "truth.json"
    if truth_file.exists():
        return json.loads(truth_file.read_text())
    if photos.exists():
        shutil.rmtree(photos)
    truth: dict[str, str | None] = {}
    ox = sorted((DATASETS / "oxford_dev" / "images").glob("*.jpg"))
    uk = sorted((DATASETS / "ukbench56" / "images").glob("*.jpg"))
    if not ox or not uk:
        raise SystemExit(f"datasets not found under {DATASETS}")
    rng = np.random.default_rng(0)
    order = rng.permutation(len(ox))
    ox_sources = [ox[i] for i in order[:n_oxford]]
    ox_unrelated = [ox[i] for i in order[n_oxford:n_oxford + n_unrelated]]
    uk_groups = sorted({int(p.stem[-5:]) // 4 for p in uk})[:n_ukbench]
    uk_sources = [p for p in uk if int(p.stem[-5:]) // 4 in uk_groups and int(p.stem[-5:]) % 4 == 0]
    uk_other = [p for p in uk if int(p.stem[-5:]) // 4 in uk_groups and int(p.stem[-5:]) % 4 != 0]
    for src in ox_sources + uk_sources:
        sid = src.stem
        img = Image.open(src).convert("RGB")
        d = photos / "originals"
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, d / src.name)
        truth[str((d / src.name).resolve())] = sid
        e = photos / "exact_copies"
        e.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, e / src.name)
        truth[str((e / src.name).resolve())] = sid
        for vname, (vimg, kw) in _variants(img).items():
            vd = photos / "copies" / vname
            vd.mkdir(parents=True, exist_ok=True)
            dst = vd / f"{sid}.jpg"
            vimg.save(dst, **kw)
            truth[str(dst.resolve())] = sid
    u = photos / "unrelated"
    u.mkdir(parents=True, exist_ok=True)
    for src in ox_unrelated + uk_other:
        shutil.copy2(src, u / src.name)
        truth[str((u / src.name).resolve())] = None
    truth_file.write_text(json.dumps(truth, indent=1))
    return truth


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="/tmp/lookalike_dup_eval")
    ap.add_argument("--method", default=DEFAULT_METHOD)
    ap.add_argument("--oxford", type=int, default=20, help="oxford_dev source photos")
    ap.add_argument("--ukbench", type=int, default=10, help="ukbench objects used as sources")
    ap.add_argument("--unrelated", type=int, default=150, help="unrelated oxford_dev photos")
    ap.add_argument("--out", default=str(ROOT / "docs"))
    args = ap.parse_args()
    work = Path(args.work)
    truth = build_set(work, args.oxford, args.ukbench, args.unrelated)
    col = Collection.open(work / f"catalog-{args.method}")
    col.add_folder(work / "photos")
    t0 = time.time()
    rep = col.index(method=args.method)
    print(f"indexed {rep.indexed} (unchanged {rep.unchanged}, failed {len(rep.failed)}) in {time.time() - t0:.1f}s")

    t0 = time.time()
    finder = DuplicateFinder.from_collection(col, args.method, config=DuplicateConfig(floor=0.3))
    t_graph = time.time() - t0
    paths = [p.path for p in finder.infos]
    strict_label = [truth.get(p) for p in paths]
    label = [KNOWN_BURSTS.get(lab, lab) for lab in strict_label]
    true_pairs = pairs_of([[k for k, lab in enumerate(label) if lab == s] for s in set(filter(None, label))])
    strict_pairs = pairs_of([[k for k, lab in enumerate(strict_label) if lab == s]
                             for s in set(filter(None, strict_label))])
    variant_of = [Path(p).parent.name if "copies" in p else Path(p).parent.name for p in paths]

    rows = []
    for t in np.round(np.arange(0.50, 0.991, 0.01), 2):
        groups = finder.graph.components(float(t))
        groups += [g for g in finder._exact]  # the exact tier is always reported
        pred = pairs_of(groups)
        tp = len(pred & true_pairs)
        prec = tp / len(pred) if pred else 1.0
        rec = tp / len(true_pairs)
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        stp = len(pred & strict_pairs)
        rows.append({"threshold": float(t), "precision": prec, "recall": rec, "f1": f1, "pred_pairs": len(pred),
                     "strict_precision": stp / len(pred) if pred else 1.0, "strict_recall": stp / len(strict_pairs),
                     "groups": len(finder.groups(float(t)))})
    # Default = the threshold of the highest F1 (ties: the higher threshold, fewer false pairs).
    best = max(rows, key=lambda r: (round(r["f1"], 3), r["threshold"]))
    chosen = best

    # Per-variant recall at the chosen threshold: is the copy in the same group as its original?
    t = chosen["threshold"]
    grp_of: dict[int, int] = {}
    for gi, g in enumerate(finder.graph.components(t) + finder._exact):
        for k in g:
            grp_of.setdefault(k, gi)
    orig_row = {strict_label[k]: k for k, p in enumerate(paths) if "/originals/" in p}
    per_variant: dict[str, list[int]] = {}
    for k, p in enumerate(paths):
        if strict_label[k] is None or "/originals/" in p:
            continue
        o = orig_row[strict_label[k]]
        same = grp_of.get(k, -1) == grp_of.get(o, -2)
        per_variant.setdefault(variant_of[k], []).append(int(same))

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    n_src = len(set(filter(None, strict_label)))
    lines = [
        "# Duplicate finder: precision/recall of pairs (synthetic set from real photos)",
        "",
        f"Generated by `bench/duplicates_eval.py` on {time.strftime('%Y-%m-%d')}: method `{args.method}`, "
        f"{len(paths)} photos = {n_src} sources ({args.oxford} oxford_dev, {args.ukbench} ukbench56) x "
        f"(original + 11 edited copies + 1 byte copy) + {len(paths) - 13 * n_src} unrelated photos "
        f"(other oxford_dev photos, often the same buildings, and the 3 other views of each ukbench object). "
        f"{len(true_pairs)} true pairs. kNN graph (k={finder.config.k}) built in {t_graph:.2f}s.",
        "",
        f"**Chosen default threshold: {chosen['threshold']:.2f}** (highest F1 of the sweep 0.50-0.99): "
        f"precision {chosen['precision']:.3f}, recall {chosen['recall']:.3f}, F1 {chosen['f1']:.3f}. "
        f"Two sources turned out to be burst shots of one scene ({', '.join(f'{a} ~ {b}' for a, b in KNOWN_BURSTS.items())}); "
        f"they count as duplicates here; the strict columns count them as false pairs. "
        f"Many remaining false pairs are other viewpoints of the same ukbench object (0.87-0.96 from the original).",
        "",
        "| threshold | precision | recall | F1 | strict precision | strict recall | predicted pairs | groups |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if round(r["threshold"] * 100) % 5 == 0 or r is chosen or r is best:
            lines.append(f"| {r['threshold']:.2f} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | "
                         f"{r['strict_precision']:.3f} | {r['strict_recall']:.3f} | {r['pred_pairs']} | {r['groups']} |")
    lines += ["", f"Recall per kind of copy at {t:.2f} (copy grouped with its original):", "",
              "| copy | recall |", "|---|---|"]
    for v, hits in sorted(per_variant.items()):
        lines.append(f"| {v} | {np.mean(hits):.2f} ({sum(hits)}/{len(hits)}) |")
    (out / "duplicates_eval.md").write_text("\n".join(lines) + "\n")
    (out / "duplicates_eval.json").write_text(json.dumps({"method": args.method, "rows": rows, "chosen": chosen,
                                                          "per_variant": {k: float(np.mean(v)) for k, v in per_variant.items()}},
                                                         indent=1))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        ts = [r["threshold"] for r in rows]
        ax.plot(ts, [r["precision"] for r in rows], label="precision")
        ax.plot(ts, [r["recall"] for r in rows], label="recall")
        ax.plot(ts, [r["f1"] for r in rows], label="F1")
        ax.axvline(chosen["threshold"], color="k", ls="--", lw=0.8, label=f"default {chosen['threshold']:.2f}")
        ax.set_xlabel("similarity threshold")
        ax.set_title(f"Duplicate pairs, method {args.method}")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "duplicates_eval.png", dpi=100)
    except ImportError:
        pass
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
