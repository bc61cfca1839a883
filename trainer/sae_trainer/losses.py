"""SAM's training losses (paper §3 "Losses").

Masks: focal + dice in a 20:1 ratio; IoU head: MSE against the true IoU of the predicted mask, weight 1.
With a single prompt the decoder's 3 multimask outputs are scored and only the one with the lowest
loss is back-propagated; with several prompts the single-mask output (token 0) is used.

All per-mask functions take logits (..., H, W) and binary targets of the same shape and return one
value per mask (shape `...`), averaged over pixels.
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch
import torch.nn.functional as F

FOCAL_WEIGHT = 20.0
DICE_WEIGHT = 1.0
IOU_WEIGHT = 1.0


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25,
               gamma: float = 2.0) -> torch.Tensor:
    """Sigmoid focal loss (Lin et al. 2017, as in DETR/SAM), mean over the pixels of each mask."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return (alpha_t * ce * (1 - p_t) ** gamma).flatten(-2).mean(-1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - soft Dice coefficient per mask; `smooth` keeps empty masks finite (DETR's +1)."""
    prob = logits.sigmoid().flatten(-2)
    targets = targets.flatten(-2)
    inter = (prob * targets).sum(-1)
    return 1 - (2 * inter + smooth) / (prob.sum(-1) + targets.sum(-1) + smooth)


def mask_iou(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """IoU of the thresholded prediction (logit > 0) with the target; 1 when both are empty."""
    pred = (logits > 0).flatten(-2)
    gt = targets.flatten(-2) > 0.5
    inter = (pred & gt).sum(-1).float()
    union = (pred | gt).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def mask_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return FOCAL_WEIGHT * focal_loss(logits, targets) + DICE_WEIGHT * dice_loss(logits, targets)


def sam_loss(logits: torch.Tensor, iou_pred: torch.Tensor, targets: torch.Tensor,
             multimask: bool) -> Tuple[torch.Tensor, Dict[str, float]]:
    """Loss for one decoder call.

    logits: (M, C, H, W) with C = 1 + 3 (token 0 = single-mask output, 1..3 = multimask outputs);
    iou_pred: (M, C); targets: (M, H, W) binary; multimask: True when each prompt is a single point
    or box, so the best of the 3 multimask outputs is trained; else token 0 is.
    Returns the mean loss over the M masks and a few scalars for logging.
    """
    targets = targets.unsqueeze(1).expand_as(logits).to(logits.dtype)
    per_output = mask_loss(logits, targets)  # (M, C)
    with torch.no_grad():
        true_iou = mask_iou(logits, targets)  # (M, C)

    if multimask:
        # Back-propagate only the lowest-loss mask; the IoU head learns to score all three.
        outputs = slice(1, None)
        best = per_output[:, outputs].argmin(dim=1, keepdim=True)
        chosen = per_output[:, outputs].gather(1, best).squeeze(1)
        chosen_iou = true_iou[:, outputs].gather(1, best).squeeze(1)
    else:
        outputs = slice(0, 1)
        chosen = per_output[:, 0]
        chosen_iou = true_iou[:, 0]
    iou_loss = F.mse_loss(iou_pred[:, outputs], true_iou[:, outputs], reduction="none").mean(1)

    loss = (chosen + IOU_WEIGHT * iou_loss).mean()
    stats = {"mask_loss": float(chosen.mean()), "iou_loss": float(iou_loss.mean()),
             "iou": float(chosen_iou.mean())}
    return loss, stats


def region_contrast_loss(features: torch.Tensor, regions: torch.Tensor,
                         temperature: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020) over the cells of one image.

    features: (N, D) cell embeddings; regions: (N,) the region each cell lies in, -1 for none.
    Each cell in a region is pulled toward the other cells of that region and pushed away from
    all other cells (those in no region too). Zero when no region has two cells.
    """
    z = F.normalize(features, dim=1)
    logits = z @ z.T / temperature
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(eye, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positive = (regions[:, None] == regions[None, :]) & ~eye & (regions[:, None] >= 0)
    counts = positive.sum(1)
    anchors = counts > 0
    if not anchors.any():
        return features.sum() * 0.0
    mean_positive = log_prob.masked_fill(~positive, 0.0).sum(1)[anchors] / counts[anchors]
    return -mean_positive.mean()
