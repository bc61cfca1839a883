"""Refit a trained model's IoU head on whole images, everything else frozen (not in the paper).

The IoU head ranks the 3 masks of a single click and is what the automatic generator filters on.
It trains with the masks, on the trainer's examples (windows of the image on a CPU budget), and can
end up ranking worse than a fixed choice: on sae-ref v3 (card's 100 held-out masks) picking by it
gave 0.318 one-click mIoU, always taking the 2nd mask 0.331, the best of the 3 by true IoU 0.442.

Refitting the head alone leaves every mask as it is, and it is cheap: the head's input, the IoU
token after the transformer, is collected once per prompt with the model as inference runs it
(whole images, `SamPredictor`), and the small MLP is then fitted to the true IoUs of the four
outputs in seconds. The epoch kept is the one with the lowest error on images held out of the fit
(the head as it was counts too), so a refit never scores worse there than the head it replaces.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch
from segment_anything import SamPredictor
from segment_anything.modeling import Sam
from torch import nn

from .data import CocoInstances
from .evaluate import choose_masks, first_click, iou
from .prompts import sample_point_in_mask


@dataclass
class IouExamples:
    """What the head sees and what it should say, one row per prompt."""

    tokens: torch.Tensor  # (N, 256): the IoU token after the transformer (the head's input)
    ious: torch.Tensor  # (N, 4): true IoU of each output (token 0 = single mask, 1..3 multimask)
    image_ids: np.ndarray  # (N,): the image of each prompt, for splitting by image

    def __len__(self) -> int:
        return len(self.ious)

    def subset(self, rows: np.ndarray) -> "IouExamples":
        index = torch.from_numpy(np.flatnonzero(rows))
        return IouExamples(self.tokens[index], self.ious[index], self.image_ids[rows])


def clicks_for(mask: np.ndarray, ignore: Optional[np.ndarray],
               rng: np.random.Generator) -> List[tuple[int, int]]:
    """A mask's first clicks: its deepest point (where evaluation and a careful annotator click)
    and a point drawn uniformly from it (the paper's training rule)."""
    x, y = sample_point_in_mask(mask, rng)
    return [first_click(mask, ignore), (int(x), int(y))]


def all_outputs(predictor: SamPredictor, points: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The 4 masks (single-mask output first) of each click at the image's size, in one decoder
    pass: `SamPredictor.predict_torch` returns either token 0 or tokens 1..3."""
    sam = predictor.model
    sparse, dense = sam.prompt_encoder(points=(points, labels), boxes=None, masks=None)
    low_res, _ = sam.mask_decoder.predict_masks(predictor.features, sam.prompt_encoder.get_dense_pe(),
                                                sparse, dense)
    masks = sam.postprocess_masks(low_res, predictor.input_size, predictor.original_size)
    return masks > sam.mask_threshold


@torch.no_grad()
def collect_iou_examples(sam: Sam, dataset: CocoInstances, image_ids: List[int],
                         masks_per_image: int, rng: np.random.Generator,
                         progress: Optional[Callable[[int, int], None]] = None) -> IouExamples:
    """Run each image's single clicks through the model and keep the head's input and targets."""
    sam.eval()
    predictor = SamPredictor(sam)
    seen: Dict[str, torch.Tensor] = {}
    hook = sam.mask_decoder.iou_prediction_head.register_forward_pre_hook(
        lambda _module, inputs: seen.__setitem__("tokens", inputs[0].detach().cpu()))
    tokens, ious, owners = [], [], []
    try:
        for n, image_id in enumerate(image_ids, start=1):
            sample = dataset.load(image_id)
            chosen = choose_masks(len(sample.masks), masks_per_image, rng)
            gts = [sample.masks[k] for k in chosen]
            clicks = [(c, gt) for gt in gts for c in clicks_for(gt, sample.ignore, rng)]
            if clicks:
                predictor.set_image(sample.image)
                coords = predictor.transform.apply_coords(
                    np.array([c for c, _ in clicks], np.float32), sample.image.shape[:2])
                points = torch.from_numpy(coords)[:, None, :].to(predictor.device)
                labels = torch.ones(len(clicks), 1, dtype=torch.int, device=predictor.device)
                outputs = all_outputs(predictor, points, labels).cpu().numpy()  # (P, 4, H, W)
                tokens.append(seen["tokens"])
                ious += [[iou(m, gt, sample.ignore) for m in outputs[i]]  # as evaluate scores
                         for i, (_, gt) in enumerate(clicks)]
                owners += [image_id] * len(clicks)
            if progress is not None:
                progress(n, len(image_ids))
    finally:
        hook.remove()
    if not tokens:
        raise ValueError("no mask to collect IoU examples from")
    return IouExamples(torch.cat(tokens), torch.tensor(np.array(ious), dtype=torch.float32),
                       np.array(owners))


def ranking_miou(predicted: torch.Tensor, ious: torch.Tensor) -> float:
    """Mean true IoU of the multimask output the predictions rank first (what one click returns)."""
    best = predicted[:, 1:].argmax(dim=1) + 1
    return float(ious[torch.arange(len(ious)), best].mean())


def split_by_image(image_ids: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean rows of the held-out images (prompts of one image never straddle the split)."""
    unique = np.unique(image_ids)
    held = np.random.default_rng(seed).choice(unique, max(1, round(len(unique) * fraction)),
                                              replace=False)
    return np.isin(image_ids, held)


@dataclass
class FitResult:
    state: Dict[str, torch.Tensor]  # the kept head's weights
    best_epoch: int  # 0: the head as it was
    before: Dict[str, float]  # held-out figures of the head as it was
    after: Dict[str, float]  # and of the kept one


def head_figures(head: nn.Module, examples: IouExamples) -> Dict[str, float]:
    with torch.no_grad():
        predicted = head(examples.tokens)
    return {"mse": float(((predicted - examples.ious) ** 2).mean()),
            "ranking_miou": ranking_miou(predicted, examples.ious),
            "oracle_miou": float(examples.ious[:, 1:].max(dim=1).values.mean()),
            "prompts": len(examples)}


def fit_iou_head(head: nn.Module, examples: IouExamples, epochs: int = 200, lr: float = 1e-3,
                 batch_size: int = 256, weight_decay: float = 0.01, val_fraction: float = 0.2,
                 seed: int = 0) -> FitResult:
    """Fit a copy of `head` to the examples' IoUs (MSE over all 4 outputs, as the paper's IoU loss)
    and keep the epoch with the lowest held-out MSE."""
    held = split_by_image(examples.image_ids, val_fraction, seed)
    fit, val = examples.subset(~held), examples.subset(held)
    if len(fit) == 0:
        raise ValueError("IoU head refit needs prompts from at least two images")
    head = copy.deepcopy(head)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    before = head_figures(head, val)
    best_mse, best_epoch, best_state = before["mse"], 0, copy.deepcopy(head.state_dict())
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(fit), generator=generator)
        for start in range(0, len(fit), batch_size):
            rows = order[start:start + batch_size]
            loss = ((head(fit.tokens[rows]) - fit.ious[rows]) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        mse = head_figures(head, val)["mse"]
        if mse < best_mse:
            best_mse, best_epoch, best_state = mse, epoch, copy.deepcopy(head.state_dict())
    head.load_state_dict(best_state)
    return FitResult(best_state, best_epoch, before, head_figures(head, val))


def refit_iou_head(sam: Sam, dataset: CocoInstances, max_images: Optional[int] = None,
                   masks_per_image: int = 8, epochs: int = 200, seed: int = 0,
                   progress: Optional[Callable[[int, int], None]] = None) -> Dict[str, Any]:
    """Refit `sam`'s IoU head in place on the dataset's first `max_images` images; returns what
    was done and measured (for the checkpoint's lineage)."""
    image_ids = dataset.image_ids[:max_images] if max_images else dataset.image_ids
    examples = collect_iou_examples(sam, dataset, image_ids, masks_per_image,
                                    np.random.default_rng(seed), progress)
    result = fit_iou_head(sam.mask_decoder.iou_prediction_head, examples, epochs=epochs, seed=seed)
    sam.mask_decoder.iou_prediction_head.load_state_dict(result.state)
    return {"images": len(image_ids), "prompts": len(examples), "masks_per_image": masks_per_image,
            "epochs": epochs, "best_epoch": result.best_epoch, "seed": seed,
            "held_out_before": result.before, "held_out_after": result.after}
