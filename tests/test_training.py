"""Training pipeline: losses on hand-made batches, data layouts, trainer reproducibility/resume."""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from engine.descriptors.methods.actnet import ActnetHead
from engine.evaluation.metrics import rank_by_score, score_query
from engine.errors import LookalikeError
from engine.training.data import (data_hash, load_folder_groups, load_labelled, merge_overlapping_groups,
                                  split_groups, strong_augment)
from engine.training.pipeline import retrieval_map
from engine.training.losses import nra_loss, nra_similarities, triplet_hardest_negative
from engine.training.trainer import TrainConfig, Trainer, epoch_batches

from tests.conftest import make_photo


def _unit(*angles_deg):
    return torch.tensor([[np.cos(np.radians(a)), np.sin(np.radians(a))] for a in angles_deg], dtype=torch.float64)


# -- losses ---------------------------------------------------------------------------------
def test_triplet_loss_uses_hardest_negative_on_hand_made_batch():
    # anchors 0,1 (label 0) at 0° and 10°; negatives at 30° (hard) and 90° (easy)
    x = _unit(0, 10, 30, 90)
    labels = torch.tensor([0, 0, 1, 1])
    d2 = lambda a, b: 2 - 2 * np.cos(np.radians(a - b))  # noqa: E731
    m = 0.1
    # pairs (0,1) (1,0) (2,3) (3,2); hardest negative: 0->30°, 1->30°, 2(30°)->10°, 3(90°)->10°
    expected = np.mean([max(0, m + d2(0, 10) - d2(0, 30)), max(0, m + d2(10, 0) - d2(10, 30)),
                        max(0, m + d2(30, 90) - d2(30, 10)), max(0, m + d2(90, 30) - d2(90, 10))])
    got = triplet_hardest_negative(x, labels, margin=m)
    assert float(got) == pytest.approx(expected, rel=1e-9)


def test_triplet_loss_is_zero_when_groups_are_separated_by_the_margin():
    x = _unit(0, 1, 90, 91)
    assert float(triplet_hardest_negative(x, torch.tensor([0, 0, 1, 1]), 0.1)) == 0.0


def test_triplet_loss_without_valid_triplet_is_zero_and_differentiable():
    x = _unit(0, 45).requires_grad_(True)
    loss = triplet_hardest_negative(x, torch.tensor([0, 1]), 0.1)
    loss.backward()
    assert float(loss.detach()) == 0.0 and x.grad is not None


def test_nra_similarities_pick_hardest_positive_and_negative():
    # group 0 at 0°, 20°, 60°; group 1 at 90°, 100°
    x = _unit(0, 20, 60, 90, 100)
    labels = torch.tensor([0, 0, 0, 1, 1])
    s_pos, s_neg, valid = nra_similarities(x, labels)
    s = lambda a, b: (1 + np.cos(np.radians(a - b))) / 2  # noqa: E731
    assert valid.all()
    assert float(s_pos[0]) == pytest.approx(s(0, 60))      # least similar positive of 0°
    assert float(s_neg[0]) == pytest.approx(s(0, 90))      # most similar negative of 0°
    assert float(s_neg[3]) == pytest.approx(s(90, 60))
    assert float(s_pos[3]) == pytest.approx(s(90, 100))


def test_nra_loss_matches_formula_on_hand_made_batch():
    x = _unit(0, 20, 60, 90, 100)
    labels = torch.tensor([0, 0, 0, 1, 1])
    s = lambda a, b: (1 + np.cos(np.radians(a - b))) / 2  # noqa: E731
    ang = [0, 20, 60, 90, 100]
    lab = [0, 0, 0, 1, 1]
    terms = []
    for i in range(5):
        sp = min(s(ang[i], ang[j]) for j in range(5) if j != i and lab[j] == lab[i])
        sn = max(s(ang[i], ang[j]) for j in range(5) if lab[j] != lab[i])
        terms.append(np.log(sp) + np.log(1 - sn))
    assert float(nra_loss(x, labels)) == pytest.approx(-np.mean(terms), rel=1e-9)


def test_nra_loss_is_lower_for_better_separated_groups():
    labels = torch.tensor([0, 0, 1, 1])
    assert float(nra_loss(_unit(0, 5, 120, 125), labels)) < float(nra_loss(_unit(0, 40, 60, 100), labels))


# -- data -----------------------------------------------------------------------------------
def _write_gt(root, gt):
    (root / "images").mkdir()
    for i, name in enumerate(gt["images"]):
        make_photo(i, (64, 48)).save(root / "images" / name)
    (root / "ground_truth.json").write_text(json.dumps(gt))


def test_ground_truth_groups_merge_overlapping_query_positives(tmp_path):
    _write_gt(tmp_path, {"protocol": "ukbench", "images": ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"],
                         "queries": [{"image": "a.jpg", "positives": ["a.jpg", "b.jpg"]},
                                     {"image": "b.jpg", "positives": ["b.jpg", "c.jpg"]},
                                     {"image": "d.jpg", "positives": ["e.jpg"]}]})
    data = load_labelled(tmp_path)
    groups = sorted(sorted(p.name for p in data.subset(ix).paths) for ix in data.groups().values())
    assert groups == [["a.jpg", "b.jpg", "c.jpg"], ["d.jpg", "e.jpg"]]  # d: the query joins its positives


def test_a_query_photo_that_is_its_own_junk_stays_out_of_its_group(tmp_path):
    _write_gt(tmp_path, {"protocol": "oxford", "images": ["q.jpg", "p1.jpg", "p2.jpg", "x.jpg", "y.jpg"],
                         "queries": [{"image": "q.jpg", "positives": ["p1.jpg", "p2.jpg"], "junk": ["q.jpg"]},
                                     {"image": "x.jpg", "positives": ["x.jpg", "y.jpg"]}]})
    names = sorted(p.name for p in load_labelled(tmp_path).paths)
    assert names == ["p1.jpg", "p2.jpg", "x.jpg", "y.jpg"]


def test_training_reads_ground_truth_with_the_evaluation_parser(tmp_path):
    # The validating parser of engine.evaluation.dataset: a bad entry is named, not half-read.
    _write_gt(tmp_path, {"protocol": "ukbench", "images": ["a.jpg", "b.jpg"],
                         "queries": [{"image": "a.jpg", "positives": ["a.jpg", "missing.jpg"]}]})
    with pytest.raises(LookalikeError, match=r"ground_truth.json: queries\[0\].*'missing.jpg' is not in 'images'"):
        load_labelled(tmp_path)


def test_overlapping_groups_merge_through_chains_and_keep_a_stable_order():
    assert merge_overlapping_groups([["m", "n"], ["c", "b"], ["z"], ["n", "a"], ["b", "d"]]) == \
        [["a", "m", "n"], ["b", "c", "d"], ["z"]]
    assert merge_overlapping_groups([]) == []


def test_folder_per_group_layout_and_group_split_are_disjoint(tmp_path):
    for g in range(6):
        (tmp_path / f"g{g}" / "sub").mkdir(parents=True)
        for k in range(3):
            make_photo(g * 10 + k, (64, 48)).save(tmp_path / f"g{g}" / ("sub" if k == 2 else "") / f"{k}.jpg")
    data = load_folder_groups(tmp_path)
    assert len(data) == 18 and len(data.groups()) == 6
    tr, te = split_groups(data, 0.5, seed=3)
    assert len(tr) + len(te) == 18
    assert not ({p.parent.name if p.parent.name != "sub" else p.parent.parent.name for p in tr.paths}
                & {p.parent.name if p.parent.name != "sub" else p.parent.parent.name for p in te.paths})


def test_strong_augment_is_deterministic_keeps_size_and_changes_pixels():
    img = make_photo(1, (160, 120))
    a = strong_augment(img, np.random.default_rng(5))
    b = strong_augment(img, np.random.default_rng(5))
    c = strong_augment(img, np.random.default_rng(6))
    assert a.size == img.size and np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))
    assert np.abs(np.asarray(a, float) - np.asarray(img, float)).mean() > 5


def test_data_hash_depends_on_content_not_order():
    assert data_hash(["a.jpg", "b.jpg"], ["1", "2"]) == data_hash(["b.jpg", "a.jpg"], ["2", "1"])
    assert data_hash(["a.jpg", "b.jpg"], ["1", "2"]) != data_hash(["a.jpg", "b.jpg"], ["1", "3"])


def test_training_map_is_the_evaluation_map():
    # Each item queries the others. Item 0's nearest is of the other label and its group mate
    # comes second: a non-interpolated AP would give 1/2 there, Oxford's AP (what eval reports) 1/4.
    labels = np.array([0, 1, 0, 1])
    vectors = _unit(0, 10, 40, 25).numpy()
    names = [f"{i}.jpg" for i in range(len(labels))]
    sims = vectors @ vectors.T
    expected = [score_query([names[j] for j in rank_by_score(sims[i])], names[i],
                            [names[j] for j in range(len(labels)) if labels[j] == labels[i]],
                            exclude_query=True).ap for i in range(len(labels))]
    non_interpolated = []
    for i in range(len(labels)):
        rel = np.array([labels[j] == labels[i] for j in rank_by_score(sims[i]) if j != i], float)
        non_interpolated.append(float((np.cumsum(rel) / np.arange(1, len(rel) + 1) * rel).sum() / rel.sum()))
    assert np.mean(expected) != pytest.approx(np.mean(non_interpolated))  # the two definitions differ here
    assert retrieval_map(vectors, labels) == pytest.approx(np.mean(expected), abs=1e-12)


# -- trainer --------------------------------------------------------------------------------
def _synthetic_set(n_groups=6, per=3, seed=0):
    """Groups share a few strong activations (the object); every image adds many weak random
    ones (background clutter). A more non-linear activation separates the groups better."""
    g = torch.Generator().manual_seed(seed)
    items, labels = [], []
    C = 12
    for k in range(n_groups):
        obj = torch.zeros(C, 5, 5)
        for _ in range(3):
            obj[torch.randint(0, C, (1,), generator=g), torch.randint(0, 5, (1,), generator=g),
                torch.randint(0, 5, (1,), generator=g)] = 4.0
        for _ in range(per):
            clutter = torch.rand(C, 5, 5, generator=g) * (torch.rand(C, 5, 5, generator=g) < 0.6) * 1.6
            items.append({"t": (obj + clutter).half()})
            labels.append(k)
    return items, np.asarray(labels)


def test_epoch_batches_are_deterministic_and_each_has_negatives():
    labels = np.repeat(np.arange(9), 3)
    cfg = TrainConfig(groups_per_batch=4, seed=1)
    b1, b2 = epoch_batches(labels, cfg, 2), epoch_batches(labels, cfg, 2)
    assert b1 == b2 and b1 != epoch_batches(labels, cfg, 3)
    assert sorted(i for b in b1 for i in b) == list(range(27))
    assert all(len(set(labels[b])) >= 2 for b in b1)


def test_tiny_synthetic_training_lowers_the_loss():
    items, labels = _synthetic_set()
    head = ActnetHead(("t",), "sinh")
    cfg = TrainConfig(epochs=25, lr=0.05, groups_per_batch=6, loss="triplet", margin=0.3)
    tr = Trainer(head, items, labels, cfg)
    before = tr.mean_loss()
    tr.run()
    assert tr.mean_loss() < 0.8 * before


def test_checkpoint_resume_gives_the_same_result_as_an_uninterrupted_run(tmp_path):
    items, labels = _synthetic_set(seed=1)
    cfg = TrainConfig(epochs=4, lr=0.05, groups_per_batch=3, loss="nra")
    full = ActnetHead(("t",), "weibull")
    res_full = Trainer(full, items, labels, cfg, tmp_path / "full.ckpt").run()

    part = ActnetHead(("t",), "weibull")
    ckpt = tmp_path / "part.ckpt"
    cancel = threading.Event()
    steps = []

    def stop_in_epoch_three(p):
        steps.append(p)
        if p.epoch == 3 and p.step == 1:
            cancel.set()

    first = Trainer(part, items, labels, cfg, ckpt).run(progress=stop_in_epoch_three, cancel=cancel)
    assert first.cancelled and first.epochs_done == 2
    assert all(p.eta_s >= 0 for p in steps) and steps[0].steps == len(epoch_batches(labels, cfg, 0))
    resumed_head = ActnetHead(("t",), "weibull")  # a fresh process: only the checkpoint survives
    second = Trainer(resumed_head, items, labels, cfg, ckpt).run()
    assert second.resumed_from == 2 and second.epochs_done == 4
    assert second.epoch_losses == pytest.approx(res_full.epoch_losses, rel=1e-12)
    for (n, a), (_m, b) in zip(full.state_dict().items(), resumed_head.state_dict().items()):
        assert torch.equal(a, b), n


def test_checkpoint_is_loadable_with_weights_only(tmp_path):
    items, labels = _synthetic_set(n_groups=3)
    Trainer(ActnetHead(("t",), "exp"), items, labels, TrainConfig(epochs=1, groups_per_batch=3), tmp_path / "c.ckpt").run()
    obj = torch.load(tmp_path / "c.ckpt", weights_only=True)
    assert obj["epoch"] == 1 and "acts.0.alpha" in obj["model"]
    assert not list(tmp_path.glob(".*tmp"))
