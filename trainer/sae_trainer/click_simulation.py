"""The paper's simulated interactive segmentation (§3): a first prompt, then corrective clicks from
the error region and mask-only refinements, each iteration's loss back-propagated as it goes."""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import torch

from .examples import Example
from .losses import sam_loss
from .model import PromptDecoder
from .prompts import FirstPrompt, PromptSet, iteration_schedule


def simulate_interactive(decoder: PromptDecoder, embedding: torch.Tensor, example: Example,
                         num_points: int, rng: np.random.Generator, loss_scale: float,
                         image_pe: Optional[torch.Tensor] = None,
                         first: FirstPrompt = FirstPrompt(),
                         refinements: bool = True) -> Dict[str, float]:
    """Run the paper's interactive simulation for the masks of one image, back-propagating each
    iteration's loss (times loss_scale) as it goes. Returns per-iteration-averaged stats.

    `embedding` and `image_pe` cover the example's window; prompts are sampled in the window and
    given to the decoder in the model input frame, so a window trains exactly what the whole image
    would."""
    device = embedding.device
    gt_low = example.masks_low.to(device)
    m, low = gt_low.shape[0], gt_low.shape[-1]
    scale = example.masks.shape[-1] / low
    gt_low_np = example.masks_low.bool().numpy()
    prompts = PromptSet.initial(example.masks, rng, first)
    offset = np.array(example.offset, np.float32)
    mask_input, has_mask = torch.zeros(m, 1, low, low, device=device), torch.zeros(m, device=device)
    schedule = [True] + iteration_schedule(rng, num_points, refinements)
    totals: Dict[str, float] = {}
    for i, adds_point in enumerate(schedule):
        if i > 0 and adds_point:
            prompts.add_error_points(mask_input[:, 0].cpu().numpy() > 0, gt_low_np, rng, scale)
        iou_pred, logits = decoder(embedding, torch.from_numpy(prompts.coords() + offset).to(device),
                                   torch.from_numpy(prompts.labels()).to(device), mask_input,
                                   has_mask, image_pe)
        multimask = prompts.num_clicks == 0  # a single point or box: ambiguous, use tokens 1..3
        loss, stats = sam_loss(logits, iou_pred, gt_low, multimask)
        if loss.requires_grad:  # not when train_only freezes all that this iteration reaches
            (loss * loss_scale).backward(retain_graph=False)
        mask_input = select_feedback(logits.detach(), iou_pred.detach(), multimask)[:, None]
        has_mask = torch.ones(m, device=device)
        stats["loss"] = float(loss)
        for k, v in stats.items():
            totals[k] = totals.get(k, 0.0) + v / len(schedule)
    return totals


def select_feedback(logits: torch.Tensor, iou_pred: torch.Tensor, multimask: bool) -> torch.Tensor:
    """The logits fed back as next mask prompt: the highest predicted IoU of the 3 multimask outputs
    after a single prompt, else the single-mask output. (M, C, h, w) -> (M, h, w)."""
    if not multimask:
        return logits[:, 0]
    best = iou_pred[:, 1:].argmax(dim=1) + 1
    return logits[torch.arange(len(logits), device=logits.device), best]
