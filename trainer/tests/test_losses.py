import math

import pytest
import torch

from sae_trainer.losses import (dice_loss, focal_loss, mask_iou, mask_loss, region_contrast_loss,
                                sam_loss)


def focal_by_hand(logit, target, alpha=0.25, gamma=2.0):
    p = 1 / (1 + math.exp(-logit))
    ce = -math.log(p) if target else -math.log(1 - p)
    p_t = p if target else 1 - p
    a = alpha if target else 1 - alpha
    return a * ce * (1 - p_t) ** gamma


def test_focal_loss_matches_hand_computation():
    logits = torch.tensor([[[0.0, 2.0], [-1.0, 3.0]]])
    targets = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    expected = sum(focal_by_hand(l, t) for l, t in [(0, 1), (2, 1), (-1, 0), (3, 0)]) / 4
    assert focal_loss(logits, targets).item() == pytest.approx(expected, rel=1e-5)
    # logit 0, fg pixel: 0.25 * ln2 * 0.5^2
    assert focal_loss(torch.zeros(1, 1, 1), torch.ones(1, 1, 1)).item() == pytest.approx(
        0.25 * math.log(2) * 0.25, rel=1e-6)


def test_dice_loss_matches_hand_computation():
    # Confident prediction of 2 pixels, target has 1 of them: 1 - (2*1 + 1) / (2 + 1 + 1) = 0.25
    logits = torch.tensor([[[50.0, 50.0], [-50.0, -50.0]]])
    targets = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    assert dice_loss(logits, targets).item() == pytest.approx(0.25, abs=1e-6)
    # logit 0 everywhere (p = 0.5), 2 fg of 4: 1 - (2*1 + 1) / (2 + 2 + 1) = 0.4
    assert dice_loss(torch.zeros(1, 2, 2), torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])).item() == \
        pytest.approx(0.4, abs=1e-6)


def test_mask_iou_and_combined_ratio():
    logits = torch.tensor([[[1.0, 1.0], [-1.0, 1.0]]])
    targets = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    assert mask_iou(logits, targets).item() == pytest.approx(2 / 3)
    assert mask_iou(-torch.ones(1, 2, 2), torch.zeros(1, 2, 2)).item() == 1.0
    expected = 20 * focal_loss(logits, targets) + dice_loss(logits, targets)
    assert mask_loss(logits, targets).item() == pytest.approx(expected.item())


def _outputs(target):
    """4 outputs: token 0 half right, token 2 perfect, tokens 1 and 3 inverted."""
    good = target * 20 - 10
    half = good.clone()
    half[: len(half) // 2] *= -1
    return torch.stack([half, -good, good, -good])[None]


def test_sam_loss_single_prompt_trains_the_best_of_three():
    target = (torch.rand(8, 8, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    logits = _outputs(target)
    iou_pred = torch.tensor([[0.5, 0.1, 0.8, 0.2]])
    loss, stats = sam_loss(logits, iou_pred, target[None], multimask=True)
    best = mask_loss(logits[:, 2], target[None])
    true_iou = torch.tensor([0.0, 1.0, 0.0])  # outputs 1..3 (1, 3 are exact complements)
    iou_mse = ((iou_pred[0, 1:] - true_iou) ** 2).mean()
    assert loss.item() == pytest.approx((best + iou_mse).item(), rel=1e-5)
    assert stats["iou"] == pytest.approx(1.0)


def test_sam_loss_several_prompts_trains_token_zero():
    target = (torch.rand(8, 8, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    logits = _outputs(target)
    iou_pred = torch.tensor([[0.3, 0.0, 0.0, 0.0]])
    loss, _ = sam_loss(logits, iou_pred, target[None], multimask=False)
    true_iou0 = mask_iou(logits[:, 0], target[None])
    expected = mask_loss(logits[:, 0], target[None]) + (0.3 - true_iou0) ** 2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_sam_loss_gradient_reaches_only_the_chosen_mask():
    target = torch.zeros(1, 4, 4)
    target[0, :2] = 1
    logits = _outputs(target[0]).requires_grad_(True)
    loss, _ = sam_loss(logits, torch.zeros(1, 4), target, multimask=True)
    loss.backward()
    grads = logits.grad.abs().flatten(2).sum(-1)[0]
    assert grads[2] > 0 and grads[0] == 0 and grads[1] == 0 and grads[3] == 0


def test_region_contrast_loss_by_hand():
    # a and b share region 0 and one direction, c (region 1) points the other way; temperature 1.
    features = torch.tensor([[1.0, 0.0], [2.0, 0.0], [-1.0, 0.0]])
    loss = region_contrast_loss(features, torch.tensor([0, 0, 1]), temperature=1.0)
    # c has no partner, so only a and b are anchors: -(1 - log(e^1 + e^-1)) each
    assert float(loss) == pytest.approx(math.log(math.e + 1 / math.e) - 1, abs=1e-6)
    # cells in no region (-1) are negatives only; with no pair in any region the loss is 0
    assert float(region_contrast_loss(features, torch.tensor([-1, -1, 1]))) == 0.0
    mixed = region_contrast_loss(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]]), torch.tensor([0, 0, 1]))
    assert float(mixed) > float(region_contrast_loss(features, torch.tensor([0, 0, 1])))
