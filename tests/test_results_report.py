"""docs/RESULTS.md's generated block (summary + per-query AP tables, rows merged through the
sidecar file), ``eval --set`` parsing and ``eval --measured`` (engine/descriptors/methods/measured.json)."""
import json

import pytest

from engine.errors import LookalikeError
from engine.evaluation.dataset import Dataset, Query
from engine.evaluation.metrics import score_query, summarize
from engine.evaluation.report import (BEGIN, DATA_PREFIX, END, load_rows, rows_file_for, short_query_name,
                                      update_measured, update_results_markdown)
from engine.evaluation.runner import MethodResult
from engine.descriptors.methods import METHODS
from engine.descriptors.methods.measured import load_measured

IMAGES = ("christ_church_000179.jpg", "christ_church_000001.jpg", "magdalen_000078.jpg", "magdalen_000002.jpg",
          "other_1.jpg", "other_2.jpg")
QUERIES = (Query("christ_church_000179.jpg", ("christ_church_000001.jpg",), ("christ_church_000179.jpg",),
                 (1, 2, 30, 40), "christ_church_1"),
           Query("magdalen_000078.jpg", ("magdalen_000002.jpg",), ("magdalen_000078.jpg",), (1, 2, 30, 40),
                 "magdalen_2"))


def landmarks(tmp_path, name="city_dev"):
    return Dataset(name, "oxford", tmp_path, tmp_path, IMAGES, QUERIES)


def result(ds, method="rmac", crop="image", ranks=(0, 0), config=None, ms=100.0):
    """A MethodResult whose query i finds its positive after ``ranks[i]`` wrong photos."""
    per = []
    for q, k in zip(ds.queries, ranks):
        wrong = [n for n in ds.images if n not in q.positives and n not in q.junk][:k]
        rest = [n for n in ds.images if n not in wrong and n not in q.positives]
        per.append(score_query(wrong + list(q.positives) + rest, q.image, q.positives, q.junk, label=q.label))
    base = method.partition("+")[0]
    cfg = METHODS[base].config.to_dict() if config is None else config
    return MethodResult(method, ds.name, ds.protocol, "efficientnet-lite0", cfg.get("image_side", 512), 8,
                        len(ds.images), len(ds.queries), crop, "exif", "cpu", summarize(per), ms, ms, 1.0, 0.1,
                        False, cfg, per)


def section(text, title):
    """The lines of the per-query table under the heading that contains ``title``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("####") and title in line)
    out = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        out.append(line)
    return out


def test_per_query_tables_for_crop_and_whole_photo(tmp_path):
    ds = landmarks(tmp_path)
    path = tmp_path / "RESULTS.md"
    # AP with the positive at rank 1 (0-based) is 0.25 (trapezoid); at rank 0, 1.
    update_results_markdown(path, [(ds, [result(ds, crop="image", ranks=(0, 1)),
                                         result(ds, crop="none", ranks=(1, 1))])], chosen_on="paris_dev")
    text = path.read_text()
    crop = section(text, "city_dev: AP per query, query cropped")
    whole = section(text, "city_dev: AP per query, whole photo")
    assert crop[0] == "| method | config | chosen on | christ_church_1 | magdalen_2 | mean |"
    assert crop[2] == "| rmac | 512 px, scales 1, no re-ranking | paris_dev | 1.000 | 0.250 | 0.625 |"
    assert whole[2].endswith("| paris_dev | 0.250 | 0.250 | 0.250 |")
    assert len(crop) == len(whole) == 3


def test_non_landmark_sets_have_no_per_query_table(tmp_path):
    ds = Dataset("objects", "ukbench", tmp_path, tmp_path, ("q", "a"), (Query("q", ("q", "a")),))
    path = tmp_path / "RESULTS.md"
    update_results_markdown(path, [(ds, [result(ds, ranks=(0,))])])
    assert "| objects | ukbench | rmac |" in path.read_text() and "####" not in path.read_text()


def test_rows_merge_across_runs_and_same_key_is_replaced(tmp_path):
    a, b = landmarks(tmp_path, "a_dev"), landmarks(tmp_path, "b_dev")
    path = tmp_path / "RESULTS.md"
    path.write_text(f"# Results\n\nby hand\n\n{BEGIN}\n{END}\n\nfooter\n")
    update_results_markdown(path, [(a, [result(a, ranks=(1, 1))]), (b, [result(b, ranks=(1, 1))])])
    update_results_markdown(path, [(a, [result(a, ranks=(0, 0))])], chosen_on="leave-one-query-out")
    rows = load_rows(path)
    by_ds = {r["dataset"]: r for r in rows}
    assert len(rows) == 2  # a_dev replaced, b_dev kept
    assert by_ds["a_dev"]["mAP"] == 1.0 and by_ds["a_dev"]["chosen_on"] == "leave-one-query-out"
    assert by_ds["b_dev"]["mAP"] == 0.25 and by_ds["b_dev"]["chosen_on"] == "not tuned"
    assert by_ds["a_dev"]["per_query"] == {"christ_church_1": 1.0, "magdalen_2": 1.0}
    text = path.read_text()
    assert text.startswith("# Results\n\nby hand") and text.rstrip().endswith("footer")
    # The rows live in the sidecar; the Markdown is rendered from it.
    assert json.loads(rows_file_for(path).read_text())["rows"] == rows and DATA_PREFIX not in text


def test_config_and_rerank_are_part_of_the_key(tmp_path):
    ds = landmarks(tmp_path)
    path = tmp_path / "RESULTS.md"
    big = {**METHODS["rmac"].config.to_dict(), "image_side": 1024, "scales": (1.0, 0.7071, 0.5)}
    update_results_markdown(path, [(ds, [result(ds), result(ds, "rmac+aqe"), result(ds, config=big)])])
    update_results_markdown(path, [(ds, [result(ds, config=big, ranks=(1, 0))])])
    rows = load_rows(path)
    assert len(rows) == 3
    configs = {(r["method"], r["config"]): r for r in rows}
    assert configs[("rmac", "512 px, scales 1, no re-ranking")]["default_config"]
    assert configs[("rmac+aqe", "512 px, scales 1, re-ranking aqe")]["rerank"] == "aqe"
    custom = configs[("rmac", "1024 px, scales 1/0.707/0.5, no re-ranking")]
    assert not custom["default_config"] and custom["mAP"] == pytest.approx(0.625)
    assert "| rmac | 1024 px, scales 1/0.707/0.5, no re-ranking (not the method's default) |" in path.read_text()


def test_rows_without_a_recorded_config_are_superseded_and_legacy_json_is_read(tmp_path):
    ds = landmarks(tmp_path)
    path = tmp_path / "RESULTS.md"
    legacy = [{"dataset": "city_dev", "protocol": "oxford", "method": "rmac", "backbone": "bb", "image_side": 512,
               "dim": 8, "query_crop": "image", "rotation": "exif", "mAP": 0.9, "device": "cpu", "date": "2026-11-25"},
              {"dataset": "city_dev", "protocol": "oxford", "method": "gem", "backbone": "bb", "image_side": 512,
               "dim": 8, "query_crop": "image", "rotation": "exif", "mAP": 0.5, "device": "cpu", "date": "2026-11-25"}]
    path.write_text(f"{BEGIN}\n{DATA_PREFIX}{json.dumps(legacy)} -->\n{END}\n")
    assert [r["method"] for r in load_rows(path)] == ["rmac", "gem"]
    update_results_markdown(path, [(ds, [result(ds)])])
    rows = {r["method"]: r for r in load_rows(path)}
    assert rows["rmac"]["mAP"] == 1.0 and rows["rmac"]["config_id"]  # the new run replaced it
    assert rows["gem"]["mAP"] == 0.5  # another method's old row stays
    assert "| gem | 512 px (config not recorded) |" in path.read_text()


def test_measured_file_gets_only_default_config_results_merged(tmp_path):
    ds = landmarks(tmp_path)
    objects = Dataset("objects", "ukbench", tmp_path, tmp_path, ("q", "a"), (Query("q", ("q", "a")),))
    path = tmp_path / "measured.json"
    path.write_text(json.dumps({"note": "old", "methods": {"gem": {"images_per_s": 3.0, "objects": 0.8},
                                                           "rmac": {"old_set:image": 0.4}}}))
    assert load_measured(path)["gem"]["images_per_s"] == 3.0  # cached now; the write must refresh it
    big = {**METHODS["rmac"].config.to_dict(), "image_side": 1024}
    written = update_measured(path, [(ds, [result(ds, ranks=(0, 1), ms=200.0),
                                           result(ds, "rmac+aqe", crop="none", ranks=(1, 1), ms=200.0),
                                           result(ds, config=big, ranks=(0, 0), ms=900.0),
                                           result(ds, "mac", config={"image_side": 512})])])
    assert written == ["rmac"]
    got = load_measured(path)
    assert got["gem"] == {"images_per_s": 3.0, "objects": 0.8}
    rmac = got["rmac"]
    assert rmac["old_set:image"] == 0.4 and rmac["city_dev:image"] == pytest.approx(0.625)
    assert rmac["city_dev:none+aqe"] == pytest.approx(0.25) and "mac" not in got
    assert rmac["images_per_s"] == pytest.approx(5.0)  # 1000 / 200 ms, not the 1024 px run's 900 ms
    update_measured(path, [(objects, [result(objects, ranks=(0,), ms=50.0)])])
    rmac = load_measured(path)["rmac"]
    assert rmac["objects"] == 1.0
    # Two images are a less steady speed than six: the speed of the bigger run stays.
    assert rmac["images_per_s"] == pytest.approx(5.0) and rmac["images_per_s_on"] == "city_dev (cpu)"


# -- eval --set ------------------------------------------------------------------------------
def test_set_values_are_json_or_bare_words():
    from engine.cli.eval import parse_overrides

    got = parse_overrides(["image_side=1024", "scales=[1,0.7071,0.5]", "whole_map=true", "activation_cap=null",
                           "tap=head"], ["rmac", "gem"])
    assert got == {"image_side": 1024, "scales": [1, 0.7071, 0.5], "whole_map": True, "activation_cap": None,
                   "tap": "head"}
    assert parse_overrides(None, ["rmac"]) == {}


@pytest.mark.parametrize("item, message", [
    ("image_side", "KEY=VALUE"),
    ("=3", "KEY=VALUE"),
    ("scales=[1,0.7", "not a JSON value"),
    ("no_such=1", "no such setting for rmac"),
    ("image_side=big", "rmac's image_side is int"),
    ("image_side=1.5", "rmac's image_side is int"),
    ("whole_map=1", "rmac's whole_map is bool"),
    ("scales=0.5", "rmac's scales is tuple"),
])
def test_set_errors_say_what_is_wrong(item, message):
    from engine.cli.eval import parse_overrides

    with pytest.raises(LookalikeError, match=message.replace("[", r"\[")):
        parse_overrides([item], ["rmac"])


def test_set_is_checked_against_every_method_before_any_work(tmp_path, capsys):
    from engine.cli import main

    # ramac has no "scales": the error comes before the (missing) dataset is even read.
    assert main(["eval", str(tmp_path / "missing"), "--method", "rmac", "--method", "ramac",
                 "--set", "scales=[1,0.5]"]) == 2
    assert "no such setting for ramac" in capsys.readouterr().err


def test_query_column_titles_drop_exactly_the_image_extensions_the_app_indexes():
    assert [short_query_name(n) for n in ("imgs/a.JPG", "b.heic", "c.dng", "d.webp")] == ["a", "b", "c", "d"]
    assert short_query_name("christ_church_1") == "christ_church_1"
    assert short_query_name("notes.txt") == "notes.txt"  # not an image extension: kept whole


def test_eval_report_without_matplotlib_names_the_report_extra_before_any_work(tmp_path, monkeypatch, capsys):
    import sys

    from engine.cli import main

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    code = main(["eval", str(tmp_path / "no-such-dataset"), "--report", str(tmp_path / "report")])
    err = capsys.readouterr().err
    assert code == 2 and "pip install 'lookalike[report]'" in err
    assert "not found" not in err  # refused before the dataset is even looked at
