"""Evaluation harness: protocols against hand-computed rankings, dataset validation, the CLI."""
import json
from pathlib import Path

import numpy as np
import pytest

from engine.cli import main
from engine.errors import LookalikeError
from engine.evaluation import load_folders, load_ground_truth
from engine.evaluation.metrics import average_precision, compute_ap, rank_by_score, score_query, summarize
from engine.evaluation.report import BEGIN, END, update_results_markdown
from tests.conftest import make_photo, shared_dataset


# -- AP (Oxford compute_ap) on hand-computed rankings -------------------------------------------
def test_ap_is_one_when_all_positives_come_first():
    assert average_precision(["a", "b", "x", "y"], ["a", "b"]) == pytest.approx(1.0)


def test_ap_single_positive_at_rank_two_is_a_quarter():
    # trapezoid: precision before = 0/1, after = 1/2 -> (0 + 0.5) / 2 * 1
    assert average_precision(["x", "a", "y"], ["a"]) == pytest.approx(0.25)


def test_ap_trapezoid_over_recall_steps():
    # positives at ranks 0 and 2: (1 + 1)/2 * 1/2 + (1/2 + 2/3)/2 * 1/2 = 0.5 + 0.291666...
    assert average_precision(["a", "x", "b", "y"], ["a", "b"]) == pytest.approx(0.5 + 7 / 24)
    assert compute_ap([0, 2], 2) == pytest.approx(0.5 + 7 / 24)


def test_positive_never_retrieved_contributes_zero():
    # "c" is a positive that is not in the ranking at all.
    assert average_precision(["a", "x", "b"], ["a", "b", "c"]) == pytest.approx((1.0 + 7 / 12) / 3)
    assert compute_ap([], 3) == 0.0


def test_junk_is_removed_before_ap():
    ranking = ["j", "a", "x", "b"]
    # Junk removed: [a, x, b] -> ranks 0, 2 -> 0.791666...
    assert average_precision(ranking, ["a", "b"], junk=["j"]) == pytest.approx(0.5 + 7 / 24)
    # Not removed, the junk would cost: ranks 1, 3 -> (0 + 1/2)/4 + (1/3 + 1/2)/4 = 1/3
    assert average_precision(ranking, ["a", "b"]) == pytest.approx(1 / 3)


def test_holidays_query_is_left_out_of_its_ranking_and_positives():
    s = score_query(["q", "x", "a"], "q", ["q", "a"], exclude_query=True)
    assert s.ap == pytest.approx(0.25) and s.n_positives == 1 and s.top == ["x", "a"]


def test_oxford_keeps_the_query_as_a_positive():
    s = score_query(["q", "a", "x", "b"], "q", ["q", "a", "b"], junk=["x"])
    assert s.ap == pytest.approx(1.0) and s.n_positives == 3


def test_ties_keep_database_order_and_do_not_favour_positives():
    assert rank_by_score(np.array([0.5, 0.9, 0.5, 0.9])).tolist() == [1, 3, 0, 2]
    db = ["neg", "pos"]
    order = rank_by_score(np.array([0.7, 0.7]))
    assert average_precision([db[i] for i in order], ["pos"]) == pytest.approx(0.25)


def test_ns_counts_group_members_in_top_four_query_included():
    group = ["q", "a", "b", "c"]
    assert score_query(["q", "a", "b", "c", "x"], "q", group).ns == 4
    assert score_query(["q", "a", "x", "b", "c"], "q", group).ns == 3
    means = summarize([score_query(["q", "a", "b", "c", "x"], "q", group), score_query(["q", "a", "x", "b", "c"], "q", group)])
    assert means["ns"] == pytest.approx(3.5)


def test_precision_and_recall_at_k():
    ranking = ["x", "a", "y", "b", "z", "w", "v", "u", "t", "s", "c"]
    s = score_query(ranking, "q", ["a", "b", "c"])
    assert s.p_at_1 == 0 and s.p_at_5 == pytest.approx(2 / 5) and s.r_at_10 == pytest.approx(2 / 3)


# -- ground_truth.json validation --------------------------------------------------------------
def _write_gt(root: Path, data: dict, files=("a.jpg", "b.jpg", "c.jpg")) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    for f in files:
        make_photo(len(f)).resize((32, 24)).save(root / "images" / f)
    (root / "ground_truth.json").write_text(json.dumps(data))
    return root


GOOD = {"protocol": "holidays", "images": ["a.jpg", "b.jpg", "c.jpg"],
        "queries": [{"image": "a.jpg", "positives": ["b.jpg"], "junk": []}]}


def test_valid_ground_truth_is_parsed(tmp_path):
    ds = load_ground_truth(_write_gt(tmp_path, GOOD))
    assert ds.protocol == "holidays" and ds.images == ("a.jpg", "b.jpg", "c.jpg")
    assert ds.queries[0].positives == ("b.jpg",) and ds.excludes_query


@pytest.mark.parametrize("change, message", [
    ({"protocol": "paris"}, "'protocol' is 'paris'"),
    ({"queries": [GOOD["queries"][0], {"image": "a.jpg", "positives": ["zz.jpg"]}]}, "queries[1] ('a.jpg'): positive 'zz.jpg' is not in 'images'"),
    ({"queries": [{"image": "q.jpg", "positives": ["b.jpg"]}]}, "queries[0] ('q.jpg'): query image 'q.jpg' is not in 'images'"),
    ({"queries": [{"id": "tower_1", "image": "a.jpg", "positives": ["b.jpg"], "bbox": [5, 5, 2, 9]}]}, "queries[0] ('tower_1'): 'bbox'"),
    ({"queries": [{"image": "a.jpg", "positives": ["b.jpg"], "junk": ["b.jpg"]}]}, "'b.jpg' is both a positive and junk"),
    ({"queries": [{"image": "a.jpg", "positives": []}]}, "'positives' is empty"),
    ({"images": ["a.jpg", "b.jpg", "a.jpg"]}, "images[2] 'a.jpg' is listed twice"),
    ({"images": ["a.jpg", "b.jpg", "c.jpg", "gone.jpg"]}, "image 'gone.jpg' listed in 'images' is not in"),
])
def test_bad_ground_truth_names_the_bad_entry(tmp_path, change, message):
    with pytest.raises(LookalikeError) as err:
        load_ground_truth(_write_gt(tmp_path, {**GOOD, **change}))
    assert message in str(err.value) and "ground_truth.json" in str(err.value)


def test_missing_key_and_broken_json_are_clear_errors(tmp_path):
    with pytest.raises(LookalikeError, match="missing required key 'queries'"):
        load_ground_truth(_write_gt(tmp_path, {"protocol": "oxford", "images": ["a.jpg"]}))
    (tmp_path / "ground_truth.json").write_text('{"protocol": "oxford",\n "images": [}')
    with pytest.raises(LookalikeError, match="not valid JSON \\(line 2"):
        load_ground_truth(tmp_path)


# -- --layout folders, the CLI and --json ------------------------------------------------------
def _user_folders(root: Path) -> Path:
    """Three groups of lightly edited copies of one generated photo each, plus a distractor."""
    for g, seed in enumerate((11, 22, 33)):
        d = root / f"group{g}"
        d.mkdir(parents=True)
        img = make_photo(seed, (256, 192))
        w, h = img.size
        img.save(d / "orig.jpg", quality=92)
        img.crop((10, 8, w - 10, h - 8)).resize((w, h)).save(d / "crop.jpg", quality=85)
        img.point(lambda v: min(255, int(v * 1.1))).save(d / "bright.jpg", quality=85)
    make_photo(99, (256, 192)).save(root / "other.jpg")
    (root / "lonely").mkdir()
    make_photo(98, (256, 192)).save(root / "lonely" / "only.jpg")
    return root


def test_folders_layout_groups_subfolders_and_keeps_distractors(tmp_path):
    ds = load_folders(_user_folders(tmp_path / "mine"))
    assert ds.protocol == "folders" and len(ds.images) == 11 and len(ds.queries) == 9
    q = next(q for q in ds.queries if q.image == "group0/crop.jpg")
    assert set(q.positives) == {"group0/orig.jpg", "group0/bright.jpg"}
    assert "other.jpg" in ds.images and "lonely/only.jpg" in ds.images


def test_eval_cli_folders_json_schema_and_cache(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LOOKALIKE_HOME", str(tmp_path / "home"))
    root = _user_folders(tmp_path / "mine")
    args = ["eval", str(root), "--layout", "folders", "--method", "mac", "--rerank", "none", "--device", "cpu", "--json",
            "--cache", str(tmp_path / "cache"), "--results-md", str(tmp_path / "RESULTS.md"),
            "--report", str(tmp_path / "report")]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dataset"] == "mine" and out["protocol"] == "folders" and out["queries"] == 9
    (res,) = out["results"]
    assert res["method"] == "mac" and res["ns"] is None and not res["cached"]
    for key in ("mAP", "p@1", "p@5", "r@10", "dim", "image_side", "backbone", "ms_per_image"):
        assert key in res
    assert len(res["per_query"]) == 9 and {"query", "ap", "p@1", "top"} <= set(res["per_query"][0])
    assert all(q not in pq["top"] for pq in res["per_query"] for q in [pq["query"]])  # query left out
    assert res["mAP"] > 0.8, res  # edited copies of one photo find each other
    md = (tmp_path / "RESULTS.md").read_text()
    assert BEGIN in md and END in md and "| mine | folders | mac |" in md
    assert (tmp_path / "report" / "mine" / "pr_mac.png").stat().st_size > 0
    assert (tmp_path / "report" / "mine" / "worst_mac.png").stat().st_size > 0
    # Second run: served from the cache, same numbers.
    assert main(args) == 0
    again = json.loads(capsys.readouterr().out)["results"][0]
    assert again["cached"] and again["mAP"] == res["mAP"]


def test_evaluation_ranks_as_the_apps_search_does(tmp_path, monkeypatch):
    # ms-rmac re-scores exactly (weighted layer distances, not the inner product of its search
    # vectors): the evaluation must rank by what SearchIndex.search ranks by.
    from engine.api import Collection
    from engine.evaluation.runner import catalog_dir_for, evaluate

    monkeypatch.setenv("LOOKALIKE_HOME", str(tmp_path / "home"))
    ds = load_folders(_user_folders(tmp_path / "mine"))
    overrides = {"image_side": 128}
    result = evaluate(ds, "ms-rmac", device="cpu", cache_root=tmp_path / "cache", overrides=overrides)
    config = {**result.config, "weights": None}
    col = Collection.open(catalog_dir_for(ds, "ms-rmac", config, "exif", tmp_path / "cache"), device="cpu")
    try:
        idx = col.search_index("ms-rmac")
        for q in result.per_query:
            query_path = str(ds.images_root / q.query)
            found = idx.search(idx.raw[idx.row_of(query_path)], top=10, exclude={query_path})
            assert [str(Path(r.path).relative_to(ds.images_root).as_posix()) for r in found] == q.top
    finally:
        col.close()


def test_results_markdown_keeps_hand_written_text(tmp_path):
    from engine.evaluation.dataset import Dataset
    from engine.evaluation.metrics import score_query as sq
    from engine.evaluation.runner import MethodResult

    path = tmp_path / "RESULTS.md"
    path.write_text(f"# Results\n\nintro by hand\n\n{BEGIN}\nold\n{END}\n\nfooter by hand\n")
    ds = Dataset("d", "ukbench", tmp_path, tmp_path, ("q", "a"), ())
    per = [sq(["q", "a"], "q", ["q", "a"])]

    def result(method):
        return MethodResult(method, "d", "ukbench", "bb", 512, 8, 2, 1, "image", "exif", "cpu", summarize(per),
                            12.0, 20.0, 1.0, 0.1, False, {}, per)

    update_results_markdown(path, [(ds, [result("mac")])])
    update_results_markdown(path, [(ds, [result("gem")])])
    text = path.read_text()
    assert text.startswith("# Results\n\nintro by hand") and text.rstrip().endswith("footer by hand")
    assert "| d | ukbench | mac |" in text and "| d | ukbench | gem |" in text and "\nold\n" not in text


def test_eval_without_dataset_is_a_clear_error(capsys):
    assert main(["eval"]) == 2
    assert "dataset folder" in capsys.readouterr().err


# -- real data ---------------------------------------------------------------------------------
def test_ukbench56_rmac_ns_at_least_3_5(tmp_path, capsys):
    root = shared_dataset("ukbench56")
    assert main(["eval", str(root), "--method", "rmac", "--device", "cpu", "--json",
                 "--cache", str(tmp_path / "cache")]) == 0
    res = json.loads(capsys.readouterr().out)["results"][0]
    assert res["ns"] >= 3.5, res["ns"]
    assert len(res["per_query"]) == 56


def _boxed_set(tmp_path):
    """A tiny landmark-style set (protocol oxford): one boxed query, its cropped copy, two others."""
    scene = make_photo(5, (256, 192))
    data = {"protocol": "oxford", "images": ["q.jpg", "near.jpg", "far1.jpg", "far2.jpg"],
            "queries": [{"id": "scene_1", "image": "q.jpg", "positives": ["q.jpg", "near.jpg"],
                         "junk": ["far2.jpg"], "bbox": [40, 30, 200, 160]}]}
    root = tmp_path / "sets" / "ds"
    (root / "images").mkdir(parents=True)
    scene.save(root / "images" / "q.jpg")
    scene.crop((40, 30, 200, 160)).resize((256, 192)).save(root / "images" / "near.jpg")
    make_photo(6, (256, 192)).save(root / "images" / "far1.jpg")
    make_photo(7, (256, 192)).save(root / "images" / "far2.jpg")
    (root / "ground_truth.json").write_text(json.dumps(data))
    return root


def test_boxed_queries_are_scored_with_and_without_the_crop(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LOOKALIKE_HOME", str(tmp_path / "home"))
    root = _boxed_set(tmp_path)
    assert main(["eval", str(root), "--method", "mac", "--device", "cpu", "--json", "--cache", str(tmp_path / "c")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["query_crop"] for r in out["results"]] == ["image", "none"]
    for r in out["results"]:
        assert r["per_query"][0]["query"] == "scene_1" and "far2.jpg" not in r["per_query"][0]["top"]
        assert r["ns"] is None and 0 < r["mAP"] <= 1
    # --all finds the dataset under --datasets-root; the index is reused from the cache.
    assert main(["eval", "--all", "--datasets-root", str(tmp_path / "sets"), "--method", "mac", "--device", "cpu",
                 "--json", "--cache", str(tmp_path / "c"), "--query-crop", "activations"]) == 0
    (r,) = json.loads(capsys.readouterr().out)["results"]
    assert r["query_crop"] == "image (activations not supported)" and r["cached"]


def test_eval_set_results_md_and_measured_keep_configs_apart(tmp_path, capsys, monkeypatch):
    from engine.evaluation.report import load_rows
    from engine.descriptors.methods.measured import load_measured

    monkeypatch.setenv("LOOKALIKE_HOME", str(tmp_path / "home"))
    root = _boxed_set(tmp_path)
    md, measured = tmp_path / "docs" / "RESULTS.md", tmp_path / "measured.json"
    common = [str(root), "--method", "mac", "--rerank", "none", "--device", "cpu", "--json", "--cache", str(tmp_path / "c"),
              "--results-md", str(md), "--measured", str(measured)]
    assert main(["eval", *common, "--chosen-on", "paris_dev"]) == 0
    default = {r["query_crop"]: r for r in json.loads(capsys.readouterr().out)["results"]}
    assert main(["eval", *common, "--set", "image_side=128"]) == 0
    small = {r["query_crop"]: r for r in json.loads(capsys.readouterr().out)["results"]}
    assert small["image"]["image_side"] == 128 and default["image"]["image_side"] == 512
    rows = load_rows(md)
    assert sorted((r["image_side"], r["query_crop"], r["chosen_on"]) for r in rows) == [
        (128, "image", "not tuned"), (128, "none", "not tuned"), (512, "image", "paris_dev"), (512, "none", "paris_dev")]
    text = md.read_text()
    assert "#### ds: AP per query, query cropped to its box" in text and "| scene_1 | mean |" in text
    # Only the default config speaks for the method in the app's list.
    got = load_measured(measured)
    assert set(got) == {"mac"}
    assert got["mac"]["ds:image"] == pytest.approx(default["image"]["mAP"], abs=1e-4)
    assert got["mac"]["ds:none"] == pytest.approx(default["none"]["mAP"], abs=1e-4)


def test_stored_rotation_mirror_ignores_exif_orientation(tmp_path):
    from PIL import Image

    from engine.evaluation.dataset import Dataset
    from engine.evaluation.runner import _stored_orientation_copy
    from engine.imaging.images import load_image

    src = tmp_path / "src"
    src.mkdir()
    img = make_photo(3, (120, 80))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(src / "rot.jpg", exif=exif)
    img.save(src / "plain.jpg")
    ds = Dataset("h", "holidays", src, src, ("rot.jpg", "plain.jpg"), ())
    assert load_image(src / "rot.jpg").size == (80, 120)  # the app shows it upright
    mirror = _stored_orientation_copy(ds, tmp_path / "mirror")
    assert load_image(mirror / "rot.jpg").size == (120, 80)  # as stored
    assert (mirror / "plain.jpg").read_bytes() == (src / "plain.jpg").read_bytes()


def test_shared_feature_maps_compute_each_image_once_and_hand_out_copies():
    import torch
    from PIL import Image

    from engine.evaluation.runner import SharedFeatureMaps

    class FakeExtractor:
        backbone = "fake"

        def __init__(self):
            self.seen = 0

        def feature_maps(self, images, side, taps):
            self.seen += len(images)
            return [{t: torch.full((2, 1, 1), float(im.getpixel((0, 0))[0] + side)) for t in taps} for im in images]

    fake = FakeExtractor()
    shared = SharedFeatureMaps(fake)
    a, b = Image.new("RGB", (4, 4), (10, 0, 0)), Image.new("RGB", (4, 4), (20, 0, 0))
    first = shared.feature_maps([a, b], 512, ["head"])
    first[0]["head"].zero_()  # a caller modifying its maps must not corrupt the cache
    again = shared.feature_maps([b, a.copy()], 512, ["head"])
    assert fake.seen == 2 and shared.hits == 2
    assert again[0]["head"][0, 0, 0] == 532 and again[1]["head"][0, 0, 0] == 522
    shared.feature_maps([a], 256, ["head"])  # another input side is another map
    assert fake.seen == 3 and shared.backbone == "fake"


def test_strict_ground_truth_the_query_photo_is_junk_and_never_counts():
    """Strict sets list the query's own photo in junk: ranking it first earns nothing, and
    AP is computed over the *other* photos of the landmark only."""
    strict = score_query(["q", "far1", "near"], "q", ["near"], junk=["q"])
    assert strict.n_positives == 1 and strict.top == ["far1", "near"]
    assert strict.ap == pytest.approx(0.25)  # near is 2nd once q is removed: (0 + 1/2) / 2
    # the old, non-strict lists counted the query as a positive, which inflated AP
    lenient = score_query(["q", "far1", "near"], "q", ["q", "near"])
    assert lenient.ap > 0.7 > strict.ap


def test_eval_honours_a_strict_landmark_set_without_any_flag(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LOOKALIKE_HOME", str(tmp_path / "home"))
    root = _boxed_set(tmp_path)
    gt = json.loads((root / "ground_truth.json").read_text())
    gt["queries"][0]["positives"] = ["near.jpg"]
    gt["queries"][0]["junk"] = ["q.jpg", "far2.jpg"]
    (root / "ground_truth.json").write_text(json.dumps(gt))
    assert main(["eval", str(root), "--method", "mac", "--device", "cpu", "--json", "--rerank", "none",
                 "--cache", str(tmp_path / "c")]) == 0
    for r in json.loads(capsys.readouterr().out)["results"]:
        (q,) = r["per_query"]
        assert q["positives"] == 1 and "q.jpg" not in q["top"] and q["top"][0] in ("near.jpg", "far1.jpg")


LANDMARKS = {"protocol": "oxford", "images": ["q1.jpg", "q2.jpg", "p1.jpg", "p2.jpg", "p3.jpg", "lone.jpg", "x.jpg"],
             "queries": [{"id": "tower_1", "image": "q1.jpg", "positives": ["p1.jpg", "p2.jpg", "p3.jpg"],
                          "junk": ["q1.jpg", "x.jpg"], "bbox": [1, 1, 20, 20]},
                         {"id": "tower_2", "image": "q2.jpg", "positives": ["p1.jpg", "p2.jpg", "p3.jpg"],
                          "junk": ["q2.jpg"]},
                         {"id": "gate_1", "image": "lone.jpg", "positives": ["x.jpg"], "junk": ["lone.jpg"]}]}


def test_every_positive_becomes_a_whole_photo_query_for_the_others(tmp_path):
    from engine.evaluation import every_positive_queries

    root = tmp_path / "oxford_gt"
    root.mkdir()
    (root / "ground_truth.json").write_text(json.dumps(LANDMARKS))
    ds = load_ground_truth(root, check_files=False)
    derived = every_positive_queries(ds)
    # p1..p3 once each (two given queries of one landmark share them); gate_1's single positive
    # has no other photo to find, so it makes no query.
    assert [q.image for q in derived.queries] == ["p1.jpg", "p2.jpg", "p3.jpg"]
    p2 = derived.queries[1]
    assert p2.positives == ("p1.jpg", "p3.jpg") and p2.bbox is None and p2.id == "tower_1:p2.jpg"
    # strict: the photo itself is junk, and so is everything the given query called junk
    assert set(p2.junk) == {"q1.jpg", "x.jpg", "p2.jpg"}
    assert derived.images == ds.images and derived.name == ds.name  # same index, same cache
    assert derived.label == "oxford_gt (every positive)" and ds.label == "oxford_gt"
    assert [q.image for q in every_positive_queries(ds, stride=2).queries] == ["p1.jpg", "p3.jpg"]
    assert every_positive_queries(ds, stride=2).label == "oxford_gt (every 2nd positive)"
    with pytest.raises(LookalikeError, match="stride"):
        every_positive_queries(ds, stride=0)


def test_eval_every_positive_reports_under_its_own_label_and_refuses_measured(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LOOKALIKE_HOME", str(tmp_path / "home"))
    root = _boxed_set(tmp_path)  # scene_1: positives q.jpg (its own photo) and near.jpg
    md = tmp_path / "RESULTS.md"
    assert main(["eval", str(root), "--method", "mac", "--device", "cpu", "--json", "--cache", str(tmp_path / "c"),
                 "--queries", "every-positive", "--rerank", "none", "--results-md", str(md)]) == 0
    out = json.loads(capsys.readouterr().out)
    (r,) = out["results"]
    assert out["dataset"] == "ds (every positive)" and out["queries"] == 2
    assert [q["query"] for q in r["per_query"]] == ["scene_1:q.jpg", "scene_1:near.jpg"]
    assert "| ds (every positive) |" in md.read_text()
    assert main(["eval", str(root), "--method", "mac", "--queries", "every-positive", "--measured",
                 str(tmp_path / "m.json")]) == 2
    assert "not with --queries every-positive" in capsys.readouterr().err
    assert main(["eval", str(root), "--method", "mac", "--query-stride", "3"]) == 2
