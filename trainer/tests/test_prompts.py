import numpy as np
import pytest

from sae_trainer.prompts import (
    LABEL_BG, LABEL_BOX_BR, LABEL_BOX_TL, LABEL_FG, LABEL_PAD, FirstPrompt, PromptSet, error_point,
    first_prompt, interior_distance, iteration_schedule, mask_to_box, noisy_box,
    sample_interior_point, sample_point_in_mask)


def random_blob(rng, size=64):
    yy, xx = np.mgrid[:size, :size]
    cy, cx, r = rng.uniform(15, 49, 2).tolist() + [rng.uniform(4, 14)]
    return (yy - cy) ** 2 + ((xx - cx) * rng.uniform(0.5, 2)) ** 2 <= r ** 2


def test_point_is_always_inside_the_mask(rng):
    for _ in range(300):
        mask = random_blob(rng)
        x, y = sample_point_in_mask(mask, rng).astype(int)
        assert mask[y, x]


def test_point_is_uniform_over_the_mask(rng):
    mask = np.zeros((10, 10), bool)
    mask[2, 3] = mask[7, 8] = True
    hits = sum(sample_point_in_mask(mask, rng)[0] == 3 for _ in range(4000))
    assert hits / 4000 == pytest.approx(0.5, abs=0.03)


@pytest.mark.parametrize("box,expected_std", [
    ((300, 400, 700, 500), (20.0, 10.0)),  # 400 x 100: 10% = 40 -> capped 20; 10
    ((500, 500, 550, 580), (5.0, 8.0)),  # 50 x 80 -> 5, 8
])
def test_box_noise_std_is_ten_percent_capped_at_20px(rng, box, expected_std):
    box = np.array(box, np.float32)
    noise = np.stack([noisy_box(box, rng, size=1024) - box for _ in range(4000)])
    std = noise.std(axis=0)
    assert std[[0, 2]] == pytest.approx([expected_std[0]] * 2, rel=0.08)
    assert std[[1, 3]] == pytest.approx([expected_std[1]] * 2, rel=0.08)
    assert np.abs(noise.mean(axis=0)).max() < 1.0


def test_noisy_box_stays_valid_and_in_frame(rng):
    for _ in range(500):
        b = noisy_box(np.array([0, 0, 3, 2], np.float32), rng, size=64)
        assert 0 <= b[0] <= b[2] <= 63 and 0 <= b[1] <= b[3] <= 63


def test_first_prompt_point_or_box_with_equal_probability(rng):
    mask = random_blob(rng)
    kinds = []
    for _ in range(2000):
        coords, labels = first_prompt(mask, rng)
        assert coords.shape == (2, 2) and labels.shape == (2,)
        if labels[0] == LABEL_FG:
            assert labels[1] == LABEL_PAD and mask[int(coords[0, 1]), int(coords[0, 0])]
            kinds.append(0)
        else:
            assert list(labels) == [LABEL_BOX_TL, LABEL_BOX_BR]
            kinds.append(1)
    assert np.mean(kinds) == pytest.approx(0.5, abs=0.04)


def test_mask_to_box_is_tight_xyxy():
    mask = np.zeros((20, 30), bool)
    mask[5:9, 10:21] = True
    assert list(mask_to_box(mask)) == [10, 5, 20, 8]


def test_error_points_fg_from_false_negatives_bg_from_false_positives(rng):
    gt = np.zeros((40, 40), bool)
    pred = np.zeros((40, 40), bool)
    gt[0:20, :] = True  # rows 0-19
    pred[10:40, :] = True  # rows 10-39 -> FN rows 0-9 (400 px), FP rows 20-39 (800 px)
    labels = []
    for _ in range(3000):
        (x, y), label = error_point(pred, gt, rng)
        x, y = int(x), int(y)
        if label == LABEL_FG:
            assert gt[y, x] and not pred[y, x]
        else:
            assert label == LABEL_BG and pred[y, x] and not gt[y, x]
        labels.append(label)
    # uniform over the error region: P(fg) = 400 / 1200
    assert np.mean(labels) == pytest.approx(1 / 3, abs=0.03)


def test_error_point_without_error_confirms_inside_the_mask(rng):
    gt = np.zeros((10, 10), bool)
    gt[3:6, 3:6] = True
    (x, y), label = error_point(gt.copy(), gt, rng)
    assert label == LABEL_FG and gt[int(y), int(x)]


def test_iteration_schedule_has_8_points_and_2_refinements(rng):
    positions = []
    for _ in range(2000):
        s = iteration_schedule(rng)
        assert len(s) == 10 and sum(s) == 8 and s[-1] is False
        positions.append(s[:-1].index(False))
    # the inner refinement iteration lands in each of the 9 gaps about equally often
    counts = np.bincount(positions, minlength=9)
    assert counts.min() > 2000 / 9 * 0.75


def test_prompt_set_orders_clicks_before_the_first_prompt_and_scales(rng):
    gts = np.zeros((2, 16, 16), bool)
    gts[:, 4:12, 4:12] = True
    prompts = PromptSet.initial(np.repeat(np.repeat(gts, 4, 1), 4, 2), rng)
    assert prompts.coords().shape == (2, 2, 2) and prompts.num_clicks == 0
    prompts.add_error_points(np.zeros_like(gts), gts, rng, scale=4.0)
    coords, labels = prompts.coords(), prompts.labels()
    assert coords.shape == (2, 3, 2) and labels.shape == (2, 3)
    assert (labels[:, 0] == LABEL_FG).all()
    # pixel centre of a low-res cell in the 4x frame: 4 * (i + 0.5) - 0.5
    assert ((coords[:, 0] + 0.5) / 4 - 0.5 >= 4).all() and ((coords[:, 0] + 0.5) / 4 - 0.5 < 12).all()
    assert np.allclose(((coords[:, 0] + 0.5) / 4 - 0.5) % 1, 0)


def test_interior_points_keep_off_the_boundary(rng):
    mask = np.zeros((40, 60), bool)
    mask[10:30, 10:50] = True  # 20 x 40: deepest depth 10 px from the boundary
    for _ in range(300):
        x, y = sample_interior_point(mask, rng, depth=0.5).astype(int)
        assert 14 <= y <= 25 and 14 <= x <= 45  # 5 px or more from outside (edge pixels are 1)
    seen = {tuple(sample_interior_point(mask, rng, depth=0.0).astype(int)) for _ in range(3000)}
    assert min(y for _, y in seen) == 10 and max(y for _, y in seen) == 29  # depth 0: everywhere


def test_first_prompt_box_share_and_point_depth_are_parameters(rng):
    mask = random_blob(rng)
    how = FirstPrompt(box_probability=0.2, point_depth=0.5)
    labels = [first_prompt(mask, rng, how)[1][0] for _ in range(2000)]
    assert np.mean(np.array(labels) == LABEL_BOX_TL) == pytest.approx(0.2, abs=0.03)
    depth = interior_distance(mask)
    for _ in range(200):
        coords, labels = first_prompt(mask, rng, FirstPrompt(box_probability=0.0, point_depth=0.5))
        x, y = coords[0].astype(int)
        assert labels[0] == LABEL_FG and depth[y, x] >= 0.5 * depth.max()


def test_iteration_schedule_without_refinements_is_the_points_alone(rng):
    assert iteration_schedule(rng, 3, refinements=False) == [True, True, True]
    assert iteration_schedule(rng, 0, refinements=False) == []
