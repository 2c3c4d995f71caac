"""``python -m bench.big_photos``: peak memory of indexing two 190 MP PNGs with 3 decode workers,
with the indexer's pixel budget (``engine/indexing/pixel_budget.py``) and without it.

Not part of ``python -m bench`` (it writes ~50 MB of PNGs and takes minutes). Each case runs in
its own process so that its peak RSS (``ru_maxrss``) is its own; prints one JSON line per case.
The photos are gradients (they compress well on disk but decode at full cost): 8-bit RGB and
16-bit greyscale, 15,900 x 11,950 px each, generated in a temporary folder.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SIZE = (15_900, 11_950)  # 190 MP, under the decoder's 200 MP limit

CASE = """
import json, resource, sys, time
from engine.api import Collection
from engine.indexing.indexer import Indexer
from engine.indexing.pixel_budget import PixelBudget
folder, catalog, bounded = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
col = Collection.open(catalog)
col.add_folder(folder)
method = col.method("rmac-ms")
indexer = Indexer(col.catalog, method, col.extractor_for(method), decode_workers=3)
if not bounded:  # what the budget replaced: every worker decodes at once
    indexer.pixel_budget = PixelBudget(10 ** 12)
t0 = time.monotonic()
report = indexer.run()
print(json.dumps({"indexed": report.indexed, "failed": len(report.failed), "seconds": round(time.monotonic() - t0, 1),
                  "peak_pixels_in_flight_mp": round(indexer.pixel_budget.peak / 1e6),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
"""


def write_photos(folder: Path, kind: str) -> None:
    w, h = SIZE
    folder.mkdir(parents=True)
    for k in range(2):
        ramp = (np.linspace(0, 45_000, w, dtype=np.float32)[None, :] + np.linspace(0, 20_000, h, dtype=np.float32)[:, None]
                + 1000 * k).astype(np.uint16)
        img = Image.fromarray((ramp >> 8).astype(np.uint8)).convert("RGB") if kind == "rgb8" else Image.fromarray(ramp)
        img.save(folder / f"big{k}.png", compress_level=1)
        del ramp, img


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("rgb8", "grey16"):
            photos = Path(tmp) / kind
            write_photos(photos, kind)
            for bounded in (True, False):
                env_home = Path(tmp) / f"home-{kind}-{bounded}"
                out = subprocess.run([sys.executable, "-c", CASE, str(photos), str(Path(tmp) / f"cat-{kind}-{bounded}"),
                                      "1" if bounded else "0"], cwd=REPO, capture_output=True, text=True, check=True,
                                     env={"LOOKALIKE_HOME": str(env_home), "PATH": "/usr/bin:/bin",
                                          "PYTHONPATH": str(REPO)})
                row = {"photos": f"2 x 190 MP {kind} PNG", "pixel_budget": bounded, **json.loads(out.stdout.splitlines()[-1])}
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
