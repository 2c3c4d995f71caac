"""Leave-one-query-out choice among measured configurations (engine.evaluation.selection)."""
from __future__ import annotations

import pytest

from engine.errors import LookalikeError
from engine.evaluation.selection import leave_one_query_out, per_query_table

CELLS = [("a_dev", "image"), ("b_dev", "image")]


def _row(method, dataset, aps, default=True, date="2026-12-02"):
    return {"method": method, "dataset": dataset, "query_crop": "image", "default_config": default,
            "per_query": aps, "date": date}


def test_a_configuration_that_wins_only_on_the_left_out_query_is_not_credited_with_it():
    # "lucky" has the higher mean on a_dev only thanks to q1; "steady" is better on q2 and q3.
    # Without q1 the fold picks steady, so q1 is reported at steady's 0.5, not lucky's 1.0; the
    # other folds still see q1 and pick lucky.
    rows = [_row("steady", "a_dev", {"q1": 0.5, "q2": 0.8, "q3": 0.8}),
            _row("lucky", "a_dev", {"q1": 1.0, "q2": 0.6, "q3": 0.6}),
            _row("steady", "b_dev", {"p1": 0.9, "p2": 0.9}),
            _row("lucky", "b_dev", {"p1": 0.9, "p2": 0.9})]
    table = per_query_table(rows, ["steady", "lucky"], CELLS)
    res = leave_one_query_out(table, ["steady", "lucky"], CELLS)
    assert [res.picks[("a_dev", q)] for q in ("q1", "q2", "q3")] == ["steady", "lucky", "lucky"]
    assert res.cells[("a_dev", "image")] == pytest.approx((0.5 + 0.6 + 0.6) / 3)
    # below the plain mean of either configuration: the choice is not credited with its luck
    assert res.cells[("a_dev", "image")] < min(sum(table[(c, "a_dev", "image")].values()) / 3 for c in ("steady", "lucky"))
    assert res.cells[("b_dev", "image")] == pytest.approx(0.9)


def test_rows_of_other_configs_are_ignored_and_a_missing_cell_is_an_error():
    rows = [_row("m", "a_dev", {"q1": 0.1}, default=False), _row("m", "b_dev", {"p1": 0.2})]
    with pytest.raises(LookalikeError, match="m on a_dev"):
        per_query_table(rows, ["m"], CELLS)
    rows.append(_row("m", "a_dev", {"q1": 0.3}, date="2026-11-01"))
    rows.append(_row("m", "a_dev", {"q1": 0.4}, date="2026-12-01"))  # the newest row wins
    assert per_query_table(rows, ["m"], CELLS)[("m", "a_dev", "image")] == {"q1": 0.4}
