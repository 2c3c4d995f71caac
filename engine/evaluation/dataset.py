"""Evaluation datasets: ``ground_truth.json`` folders and a user's own labelled folders.

One format for every protocol (see ``../shared/datasets/README.md``)::

    {"protocol": "ukbench" | "holidays" | "oxford", "images_dir": "images",
     "images": [...the database...],
     "queries": [{"image": ..., "positives": [...], "junk": [...], "bbox": [x1, y1, x2, y2]?}]}

Everything else in the file is information and is ignored. :func:`load_ground_truth`
validates the file and raises :class:`LookalikeError` naming the bad entry.

``--layout folders`` (:func:`load_folders`): every sub-folder of the root is one group of
matching photos; every photo of a group with at least two photos is a query whose positives
are the other photos of its folder (protocol ``folders``: scored like ``holidays``, the query
left out of its own ranking). Photos directly in the root, or in a group of one, are
distractors (database only).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

from engine.errors import LookalikeError, UnsafePathError
from engine.imaging.images import is_image_path
from engine.store.confine import confined

PROTOCOLS = ("ukbench", "holidays", "oxford", "folders")
GT_PROTOCOLS = ("ukbench", "holidays", "oxford")


@dataclass(frozen=True)
class Query:
    """One query: ``image`` and its ``positives``/``junk`` are names from the database."""

    image: str
    positives: tuple[str, ...]
    junk: tuple[str, ...] = ()
    bbox: tuple[float, float, float, float] | None = None
    id: str = ""

    @property
    def label(self) -> str:
        return self.id or self.image


@dataclass(frozen=True)
class Dataset:
    """A database of images (names relative to ``images_root``) and its queries."""

    name: str
    protocol: str
    root: Path
    images_root: Path
    images: tuple[str, ...]
    queries: tuple[Query, ...]
    layout: str = "gt"
    #: "" for the queries the ground truth gives; else the derived set's name (e.g. "every
    #: positive", see :func:`every_positive_queries`). The photos and their index stay the same.
    query_set: str = ""

    @property
    def label(self) -> str:
        """The name results are reported under: ``paris_dev``, ``paris_dev (every positive)``."""
        return f"{self.name} ({self.query_set})" if self.query_set else self.name

    def path_of(self, image: str) -> Path:
        return self.images_root / image

    @property
    def excludes_query(self) -> bool:
        """Protocols where the query is left out of its own ranking (holidays, folders)."""
        return self.protocol in ("holidays", "folders")


def _fail(where: Path, msg: str) -> LookalikeError:
    return LookalikeError(f"{where}: {msg}")


def load_ground_truth(root: str | os.PathLike, check_files: bool = True) -> Dataset:
    """Read and validate ``<root>/ground_truth.json``."""
    root = Path(root).expanduser()
    gt = root / "ground_truth.json"
    if not root.is_dir():
        raise LookalikeError(f"Dataset folder not found: {root}")
    if not gt.is_file():
        raise LookalikeError(f"{root} has no ground_truth.json; use --layout folders to treat each sub-folder as a group.")
    try:
        data = json.loads(gt.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise _fail(gt, f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except UnicodeDecodeError:
        raise _fail(gt, "not UTF-8 text") from None
    if not isinstance(data, dict):
        raise _fail(gt, "the top level must be a JSON object")
    for key in ("protocol", "images", "queries"):
        if key not in data:
            raise _fail(gt, f"missing required key '{key}'")
    protocol = data["protocol"]
    if protocol not in GT_PROTOCOLS:
        raise _fail(gt, f"'protocol' is {protocol!r}; expected one of {', '.join(GT_PROTOCOLS)}")
    images_dir = data.get("images_dir", "images")
    if not isinstance(images_dir, str) or not images_dir:
        raise _fail(gt, "'images_dir' must be a non-empty string")
    images = data["images"]
    if not isinstance(images, list) or not images:
        raise _fail(gt, "'images' must be a non-empty list of file names")
    seen: set[str] = set()
    for i, name in enumerate(images):
        if not isinstance(name, str) or not name:
            raise _fail(gt, f"images[{i}] must be a non-empty file name string, not {name!r}")
        if name in seen:
            raise _fail(gt, f"images[{i}] '{name}' is listed twice")
        seen.add(name)
    # The file is data from elsewhere: its folder and names stay inside the dataset (no
    # '..', no absolute path, no symlink out), or eval would read and write outside it.
    try:
        images_root = confined(root, images_dir, "images folder")
        for i, name in enumerate(images):
            confined(images_root, name, f"images[{i}]")
    except UnsafePathError as exc:
        raise _fail(gt, str(exc)) from None
    if check_files:
        if not images_root.is_dir():
            raise _fail(gt, f"images folder '{images_dir}' not found in {root}")
        missing = [n for n in images if not (images_root / n).is_file()]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise _fail(gt, f"image '{missing[0]}' listed in 'images' is not in {images_root}{more}")
    raw_queries = data["queries"]
    if not isinstance(raw_queries, list) or not raw_queries:
        raise _fail(gt, "'queries' must be a non-empty list")
    queries = [_parse_query(gt, i, q, seen) for i, q in enumerate(raw_queries)]
    name = data.get("name") if isinstance(data.get("name"), str) else root.name
    return Dataset(name, protocol, root.resolve(), images_root, tuple(images), tuple(queries), "gt")


def _parse_query(gt: Path, i: int, q, names: set[str]) -> Query:
    where = f"queries[{i}]"
    if not isinstance(q, dict):
        raise _fail(gt, f"{where} must be an object with 'image' and 'positives'")
    image = q.get("image")
    if isinstance(image, str):
        where += f" ('{q.get('id') or image}')"
    if not isinstance(image, str) or not image:
        raise _fail(gt, f"{where}: 'image' must be a file name string")
    if image not in names:
        raise _fail(gt, f"{where}: query image '{image}' is not in 'images'")
    lists = {}
    for key in ("positives", "junk"):
        value = q.get(key, [] if key == "junk" else None)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _fail(gt, f"{where}: '{key}' must be a list of file names")
        for v in value:
            if v not in names:
                raise _fail(gt, f"{where}: {key[:-1] if key == 'positives' else key} '{v}' is not in 'images'")
        lists[key] = tuple(dict.fromkeys(value))
    if not lists["positives"]:
        raise _fail(gt, f"{where}: 'positives' is empty (a query needs at least one relevant image)")
    both = set(lists["positives"]) & set(lists["junk"])
    if both:
        raise _fail(gt, f"{where}: '{sorted(both)[0]}' is both a positive and junk")
    bbox = q.get("bbox")
    if bbox is not None:
        if (not isinstance(bbox, list) or len(bbox) != 4
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)):
            raise _fail(gt, f"{where}: 'bbox' must be [x1, y1, x2, y2] numbers, not {bbox!r}")
        x1, y1, x2, y2 = (float(v) for v in bbox)
        if not (x2 > x1 and y2 > y1 and x1 >= 0 and y1 >= 0):
            raise _fail(gt, f"{where}: 'bbox' {bbox} is empty or negative (need 0 <= x1 < x2, 0 <= y1 < y2)")
        bbox = (x1, y1, x2, y2)
    qid = q.get("id") if isinstance(q.get("id"), str) else ""
    return Query(image, lists["positives"], lists["junk"], bbox, qid)


def every_positive_queries(dataset: Dataset, stride: int = 1) -> Dataset:
    """A larger query set from the same ground truth: every positive of a given query becomes a
    whole-photo query ("every positive as a query").

    With 4 or 6 given queries one query moves a mean by 0.25 / 0.17; choosing a parameter on a
    few hundred queries is far less noisy. For a positive ``p`` of query ``q``: positives are
    ``q``'s other positives; junk is ``q``'s junk plus ``p`` itself (its own photo, as the strict
    protocol treats a query's photo). ``q``'s own photo stays junk (it is not a listed positive),
    which can only make the measure stricter. No box (the whole photo is the query). A photo that
    is a positive of several given queries (two queries of one landmark) is taken once, with the
    first such query's lists. ``stride`` keeps every ``stride``-th of these queries (in order),
    for re-rankings that cost seconds per query.
    """
    if stride < 1:
        raise LookalikeError(f"stride must be at least 1, not {stride}")
    seen: set[str] = set()
    derived: list[Query] = []
    for q in dataset.queries:
        for p in q.positives:
            if p in seen or len(q.positives) < 2:
                continue  # a single positive leaves nothing to find
            seen.add(p)
            others = tuple(x for x in q.positives if x != p)
            derived.append(Query(p, others, tuple(dict.fromkeys((*q.junk, p))), None, f"{q.label}:{p}"))
    if not derived:
        raise LookalikeError(f"{dataset.name}: no query has two positives, so no positive can be a query.")
    name = "every positive" if stride == 1 else f"every {_ordinal(stride)} positive"
    return replace(dataset, queries=tuple(derived[::stride]), query_set=name)


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def load_folders(root: str | os.PathLike) -> Dataset:
    """A user's folders: each sub-folder (searched recursively) is one group of matching photos."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise LookalikeError(f"Folder not found: {root}")
    root = root.resolve()
    images: list[str] = []
    groups: list[list[str]] = []
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and is_image_path(entry.name):
            images.append(entry.name)  # a distractor
        elif entry.is_dir():
            members = sorted(
                p.relative_to(root).as_posix() for p in entry.rglob("*")
                if p.is_file() and is_image_path(p.name)
                and not any(part.startswith(".") for part in p.relative_to(root).parts))
            images.extend(members)
            groups.append(members)
    queries = []
    for members in groups:
        if len(members) < 2:
            continue
        for m in members:
            queries.append(Query(m, tuple(x for x in members if x != m)))
    if not queries:
        raise LookalikeError(
            f"{root}: no sub-folder with at least two photos; with --layout folders each sub-folder "
            f"is one group of matching photos.")
    return Dataset(root.name, "folders", root, root, tuple(images), tuple(queries), "folders")


def load_dataset(root: str | os.PathLike, layout: str = "gt") -> Dataset:
    if layout == "gt":
        return load_ground_truth(root)
    if layout == "folders":
        return load_folders(root)
    raise LookalikeError(f"Unknown layout '{layout}'; use 'gt' or 'folders'.")


def find_datasets(datasets_root: str | os.PathLike) -> list[Path]:
    """Sub-folders of ``datasets_root`` holding a ``ground_truth.json``, sorted by name."""
    base = Path(datasets_root).expanduser()
    if not base.is_dir():
        raise LookalikeError(f"Datasets folder not found: {base}")
    found = sorted(p for p in base.iterdir() if (p / "ground_truth.json").is_file())
    if not found:
        raise LookalikeError(f"No dataset (a folder with ground_truth.json) in {base}")
    return found
