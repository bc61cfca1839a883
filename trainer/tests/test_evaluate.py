import numpy as np
import pytest
import torch

from sae_trainer.data import CocoInstances
from sae_trainer.evaluate import (MaskResult, choose_masks, disk, evaluate, evaluate_mask, first_click,
                                  iou, iou_head_figures, next_click, summarize)
from sae_trainer.model import ModelConfig, build_sam


def rect(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_first_click_is_the_interior_most_point():
    x, y = first_click(rect(50, 60, 10, 31, 20, 41))  # 21 x 21 square centred at (30, 20)
    assert (x, y) == (30, 20)
    x, y = first_click(rect(50, 60, 10, 31, 20, 51))  # 21 x 31: on the ridge y = 20
    assert y == 20 and 30 <= x <= 40


def test_first_click_treats_the_image_border_as_boundary():
    x, y = first_click(rect(40, 40, 0, 40, 0, 10))  # a strip on the left edge
    assert x in (4, 5)


def test_next_click_goes_to_the_larger_error_region():
    gt = rect(60, 60, 10, 50, 10, 50)
    pred = rect(60, 60, 10, 50, 10, 30)  # misses a 40x20 strip (FN)
    pred |= rect(60, 60, 52, 56, 0, 60)  # and adds a thin 4-px FP strip
    (x, y), positive = next_click(pred, gt)
    assert positive and gt[y, x] and not pred[y, x] and 35 <= x <= 44
    (x, y), positive = next_click(gt | rect(60, 60, 0, 60, 52, 60), gt)  # only FP
    assert not positive and x >= 52
    assert next_click(gt, gt) is None


def test_ignore_mask_is_excluded_from_iou_and_clicks():
    gt = rect(20, 20, 0, 10, 0, 20)
    pred = rect(20, 20, 0, 20, 0, 20)
    ignore = rect(20, 20, 10, 20, 0, 20)
    assert iou(pred, gt) == pytest.approx(0.5)
    assert iou(pred, gt, ignore) == 1.0
    assert next_click(pred, gt, ignore) is None


class OraclePredictor:
    """Returns the ground truth after `needed` clicks, an empty mask before."""

    def __init__(self, gt, needed):
        self.gt, self.needed, self.calls = gt, needed, []

    def predict(self, coords, labels, mask_input=None, multimask_output=True):
        self.calls.append((coords.copy(), labels.copy(), mask_input is not None, multimask_output))
        m = self.gt if len(coords) >= self.needed else np.zeros_like(self.gt)
        n = 3 if multimask_output else 1
        return (np.repeat(m[None], n, 0), np.linspace(0.9, 0.5, n), np.zeros((n, 256, 256), np.float32))


def test_click_protocol_counts_clicks_to_90():
    gt = rect(40, 40, 5, 30, 5, 30)
    oracle = OraclePredictor(gt, needed=3)
    result = evaluate_mask(oracle, gt)
    assert result.ious == [0.0, 0.0, 1.0]
    first, second = oracle.calls[0], oracle.calls[1]
    assert first[3] is True and first[2] is False  # 1 click: multimask, no mask prompt
    assert second[3] is False and second[2] is True  # then single mask + previous logits
    assert list(second[1]) == [1, 1]  # the miss was a false negative: fg click
    assert MaskResult([0.5] * 20).clicks_to(0.9) == 20


def test_summary_metrics():
    s = summarize([MaskResult([0.95]), MaskResult([0.5, 0.88, 0.92])], images=1)
    assert s["miou_1click"] == pytest.approx(0.725)
    assert s["noc90"] == pytest.approx(2.0) and s["noc85"] == pytest.approx(1.5)
    # a mask that stopped clicking keeps its last IoU
    assert s["miou_at_clicks"]["2"] == pytest.approx((0.95 + 0.88) / 2)
    assert s["miou_at_clicks"]["20"] == pytest.approx((0.95 + 0.92) / 2)
    assert list(summarize([MaskResult([0.5])], images=1, max_clicks=3)["miou_at_clicks"]) == ["1", "2", "3"]


def test_evaluate_runs_on_a_coco_folder(coco_dir):
    torch.manual_seed(0)
    sam = build_sam(ModelConfig(image_size=128))
    metrics = evaluate(sam, CocoInstances(coco_dir), max_images=2, max_masks_per_image=2,
                       max_clicks=3)
    assert metrics["images"] == 2 and 2 <= metrics["masks"] <= 4
    assert 0 <= metrics["miou_1click"] <= 1 and 1 <= metrics["noc90"] <= 3
    assert 0 < metrics["miou_1click_disk"] <= 1 and 0 <= metrics["miou_1click_blank"] <= 1
    assert "miou_1click_blank" not in evaluate(sam, CocoInstances(coco_dir), max_images=1,
                                               max_clicks=1, blank_check=False)
    # 3 first-click masks per evaluated mask, each a (predicted, true) pair
    assert metrics["iou_head"]["pairs"] == 3 * metrics["masks"]
    assert sum(b["count"] for b in metrics["iou_head"]["bins"]) == metrics["iou_head"]["pairs"]


def test_iou_head_figures():
    f = iou_head_figures([(0.05, 0.1), (0.12, 0.0), (0.55, 0.7), (0.95, 0.9), (1.0, 1.0)])
    assert f["pairs"] == 5
    assert f["mean_abs_error"] == pytest.approx((0.05 + 0.12 + 0.15 + 0.05 + 0.0) / 5)
    assert f["pearson"] == pytest.approx(np.corrcoef([0.05, 0.12, 0.55, 0.95, 1.0], [0.1, 0, 0.7, 0.9, 1])[0, 1])
    # tenths by predicted IoU; 1.0 falls in the last one; empty tenths are left out
    assert [(b["from"], b["count"]) for b in f["bins"]] == [(0.0, 1), (0.1, 1), (0.5, 1), (0.9, 2)]
    assert f["bins"][3]["true"] == pytest.approx(0.95) and f["bins"][3]["to"] == 1.0
    # a head that predicts one value for everything has no correlation to report
    assert iou_head_figures([(0.3, 0.1), (0.3, 0.9)])["pearson"] is None
    assert iou_head_figures([]) == {"pairs": 0, "pearson": None, "mean_abs_error": 0.0, "bins": []}


def test_evaluate_mask_keeps_the_first_clicks_predicted_and_true_iou():
    obj = rect(40, 40, 10, 30, 10, 30)
    result = evaluate_mask(OraclePredictor(obj, 1), obj)
    assert [p for p, _ in result.first_click_pairs] == pytest.approx([0.9, 0.7, 0.5])
    assert result.ious[0] == result.first_click_pairs[0][1]
    assert result.oracle_iou == max(t for _, t in result.first_click_pairs)


def test_disk_reference_is_position_and_true_size_alone():
    d = disk((101, 101), (50, 40), 400)
    assert abs(int(d.sum()) - 400) <= 12 and d[40, 50] and not d[40, 70]
    round_object = disk((101, 101), (50, 50), 900)
    assert evaluate_mask(OraclePredictor(round_object, 1), round_object).disk_iou == 1.0
    strip = rect(100, 100, 0, 100, 45, 55)  # same-area disk covers a third of a 10-px strip
    assert evaluate_mask(OraclePredictor(strip, 1), strip).disk_iou < 0.35


def test_a_sample_of_masks_is_random_not_the_first_ones():
    rng = np.random.default_rng(0)
    picks = [tuple(choose_masks(10, 3, rng)) for _ in range(50)]
    assert all(len(p) == 3 and list(p) == sorted(p) for p in picks)
    assert len(set(picks)) > 10 and any(p[0] > 0 for p in picks)
    assert choose_masks(2, 3, rng) == [0, 1] and choose_masks(4, None, rng) == [0, 1, 2, 3]


def test_summary_by_size_and_oracle():
    results = [MaskResult([0.9], oracle_iou=0.95, area=100), MaskResult([0.5], oracle_iou=0.7, area=5000),
               MaskResult([0.2], oracle_iou=0.2, area=20000)]
    s = summarize(results, images=1)
    assert s["miou_1click_oracle"] == pytest.approx(0.6167, abs=1e-4)
    assert "miou_1click_disk" not in s  # reported only when every mask has one
    results[0].disk_iou, results[1].disk_iou, results[2].disk_iou = 0.5, 0.6, 0.7
    assert summarize(results, images=1)["miou_1click_disk"] == pytest.approx(0.6)
    assert s["by_size"]["small"] == {"masks": 1, "miou_1click": 0.9, "noc90": 1.0}
    assert s["by_size"]["medium"]["masks"] == 1 and s["by_size"]["large"]["miou_1click"] == 0.2
