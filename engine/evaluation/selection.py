"""Choosing among measured configurations without scoring the choice on the queries it saw.

With 4 + 6 given queries, the best-looking configuration is partly the luckiest one. Leave-one-
query-out (LOQO) makes the choice honest to report: for each query, the configuration is chosen
on *all the other* queries (of both sets, crop and whole photo), and that query's AP under the
choice is what is reported for it. When every fold picks the same configuration, its plain numbers
are the LOQO numbers; when folds disagree, the reported mean is lower than the winner's.

The criterion of a fold is the mean, over the (dataset, query crop) cells, of each cell's mean
AP over its remaining queries: each set counts equally, however many queries it has.

``python -m engine.evaluation.selection docs/results_rows.json rmac-ms+sv+aqe seddati-cam+sv+aqe ...``
prints the folds and the LOQO table from the rows ``main.py eval --results-md`` keeps.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from engine.errors import LookalikeError

Cell = tuple[str, str]  # (dataset, query crop)


@dataclass(frozen=True)
class LoqoResult:
    """``picks[(dataset, query)]``: the configuration chosen without that query; ``cells[cell]``:
    the mean over the cell's queries of their AP under their own fold's pick."""

    picks: dict[tuple[str, str], str]
    cells: dict[Cell, float]


def per_query_table(rows: Sequence[dict], candidates: Sequence[str], cells: Sequence[Cell]) -> dict:
    """``{(candidate, dataset, crop): {query: AP}}`` from results rows (default configs only;
    the newest row wins). A candidate missing a cell is an error: it cannot be compared."""
    table: dict[tuple[str, str, str], dict[str, float]] = {}
    for r in sorted(rows, key=lambda r: r.get("date", "")):
        key = (r.get("method"), r.get("dataset"), r.get("query_crop"))
        if key[0] in candidates and (key[1], key[2]) in cells and r.get("default_config") and r.get("per_query"):
            table[key] = dict(r["per_query"])
    missing = [f"{c} on {d} ({crop})" for c in candidates for d, crop in cells if (c, d, crop) not in table]
    if missing:
        raise LookalikeError("No per-query results for " + "; ".join(missing) + ": run main.py eval --results-md first.")
    return table


def leave_one_query_out(table: dict, candidates: Sequence[str], cells: Sequence[Cell]) -> LoqoResult:
    """LOQO over ``table`` (see :func:`per_query_table`): a query is left out of every cell of its
    dataset (its crop and whole-photo runs are the same photo). Ties go to the earlier candidate."""
    queries = {d: sorted(table[(candidates[0], d, crop)]) for d, crop in cells}

    def criterion(candidate: str, left_out: tuple[str, str]) -> float:
        means = []
        for d, crop in cells:
            kept = [q for q in queries[d] if (d, q) != left_out]
            means.append(sum(table[(candidate, d, crop)][q] for q in kept) / max(1, len(kept)))
        return sum(means) / len(means)

    picks: dict[tuple[str, str], str] = {}
    for d in dict.fromkeys(d for d, _crop in cells):
        for q in queries[d]:
            picks[(d, q)] = max(candidates, key=lambda c: (criterion(c, (d, q)), -candidates.index(c)))
    out = {(d, crop): sum(table[(picks[(d, q)], d, crop)][q] for q in queries[d]) / len(queries[d])
           for d, crop in cells}
    return LoqoResult(picks, out)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3:
        print("usage: python -m engine.evaluation.selection ROWS_JSON CANDIDATE CANDIDATE [...]", file=sys.stderr)
        return 2
    rows = json.loads(Path(args[0]).read_text(encoding="utf-8"))["rows"]
    candidates = args[1:]
    cells = [("oxford_dev", "image"), ("oxford_dev", "none"), ("paris_dev", "image"), ("paris_dev", "none")]
    table = per_query_table(rows, candidates, cells)
    result = leave_one_query_out(table, candidates, cells)
    for (d, q), pick in result.picks.items():
        print(f"without {d}/{q}: {pick}")
    print("| configuration | " + " | ".join(f"{d} {crop}" for d, crop in cells) + " |")
    print("|---|" + "---|" * len(cells))
    for c in candidates:
        means = [sum(table[(c, d, crop)].values()) / len(table[(c, d, crop)]) for d, crop in cells]
        print(f"| {c} | " + " | ".join(f"{m:.3f}" for m in means) + " |")
    print("| **leave-one-query-out** | " + " | ".join(f"**{result.cells[cell]:.3f}**" for cell in cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
