import numpy as np
import pytest
import torch
from segment_anything import SamPredictor

from sae_trainer.data import CocoInstances
from sae_trainer.evaluate import choose_masks, first_click, iou
from sae_trainer.iou_head import (IouExamples, collect_iou_examples, fit_iou_head, ranking_miou,
                                  refit_iou_head, split_by_image)
from sae_trainer.__main__ import main
from sae_trainer.model import ModelConfig, build_sam, load_checkpoint, save_checkpoint


@pytest.fixture
def small_sam():
    torch.manual_seed(0)
    return build_sam(ModelConfig(image_size=128, transformer_mlp_dim=64, iou_head_hidden_dim=32)).eval()


def test_collected_tokens_are_what_the_head_scores_and_ious_are_the_outputs(small_sam, coco_dir):
    dataset = CocoInstances(coco_dir)
    image_id = dataset.image_ids[0]
    examples = collect_iou_examples(small_sam, dataset, [image_id], 2, np.random.default_rng(0))
    sample = dataset.load(image_id)
    assert len(examples) == 2 * min(2, len(sample.masks)) and set(examples.image_ids) == {image_id}

    # Row 0 is the first chosen mask's deepest click: the predictor gives the same scores and masks.
    gt = sample.masks[choose_masks(len(sample.masks), 2, np.random.default_rng(0))[0]]
    predictor = SamPredictor(small_sam)
    predictor.set_image(sample.image)
    masks, scores, _ = predictor.predict(np.array([first_click(gt)], np.float32), np.array([1]),
                                         multimask_output=True)
    with torch.no_grad():
        head_scores = small_sam.mask_decoder.iou_prediction_head(examples.tokens[:1])[0, 1:]
    np.testing.assert_allclose(head_scores.numpy(), scores, atol=1e-5)
    np.testing.assert_allclose(examples.ious[0, 1:].numpy(), [iou(m, gt) for m in masks], atol=1e-6)


def synthetic_examples(n_images=40, per_image=10, seed=0):
    """Tokens whose first 4 features are the IoUs (plus noise): a head can learn to read them."""
    rng = np.random.default_rng(seed)
    n = n_images * per_image
    ious = torch.tensor(rng.uniform(0, 1, (n, 4)), dtype=torch.float32)
    tokens = torch.tensor(rng.normal(0, 0.1, (n, 256)), dtype=torch.float32)
    tokens[:, :4] = ious * 3
    return IouExamples(tokens, ious, np.repeat(np.arange(n_images), per_image))


def test_fitting_lowers_the_held_out_error_and_ranks_better(small_sam):
    examples = synthetic_examples()
    result = fit_iou_head(small_sam.mask_decoder.iou_prediction_head, examples, epochs=60)
    assert result.best_epoch > 0
    assert result.after["mse"] < 0.02 < result.before["mse"]  # 1/12: the spread of the IoUs
    assert result.after["ranking_miou"] > result.before["ranking_miou"]
    assert result.after["ranking_miou"] <= result.after["oracle_miou"]


def test_the_head_as_it_was_is_kept_when_no_epoch_beats_it(small_sam):
    examples = synthetic_examples()
    head = small_sam.mask_decoder.iou_prediction_head
    result = fit_iou_head(head, examples, epochs=0)
    assert result.best_epoch == 0 and result.after == result.before
    for k, v in head.state_dict().items():
        assert torch.equal(result.state[k], v), k


def test_split_keeps_each_image_on_one_side():
    ids = np.repeat(np.arange(10), 3)
    held = split_by_image(ids, 0.2, seed=0)
    assert held.sum() == 6
    for i in range(10):
        assert len(set(held[ids == i])) == 1


def test_ranking_miou_takes_the_top_scored_multimask_output():
    ious = torch.tensor([[0.9, 0.1, 0.5, 0.7]])
    assert ranking_miou(torch.tensor([[1.0, 0.0, 0.9, 0.2]]), ious) == pytest.approx(0.5)


def test_refit_changes_only_the_iou_head(small_sam, coco_dir):
    before = {k: v.clone() for k, v in small_sam.state_dict().items()}
    done = refit_iou_head(small_sam, CocoInstances(coco_dir), masks_per_image=2, epochs=20)
    changed = {k for k, v in small_sam.state_dict().items() if not torch.equal(v, before[k])}
    assert all(k.startswith("mask_decoder.iou_prediction_head.") for k in changed)
    assert done["prompts"] > 0 and done["held_out_after"]["mse"] <= done["held_out_before"]["mse"]


def test_a_refit_needs_prompts_from_two_images(small_sam):
    one_image = synthetic_examples(n_images=1)
    with pytest.raises(ValueError, match="two images"):
        fit_iou_head(small_sam.mask_decoder.iou_prediction_head, one_image)


def test_the_command_writes_a_checkpoint_with_the_refit_in_its_lineage(small_sam, coco_dir, tmp_path):
    parent, out = str(tmp_path / "parent.pt"), str(tmp_path / "refit.pt")
    cfg = ModelConfig(image_size=128, transformer_mlp_dim=64, iou_head_hidden_dim=32)
    save_checkpoint(parent, small_sam, cfg, step=7, lineage_info={"steps": 7, "parent": None})
    main(["fit-iou-head", "--checkpoint", parent, "--data", coco_dir, "--out", out,
          "--masks-per-image", "2", "--epochs", "5"])
    sam, _, extra = load_checkpoint(out)
    assert extra["step"] == 7 and extra["lineage_info"]["steps"] == 7
    refit = extra["lineage_info"]["iou_head_refit"]
    assert refit["parent"] == parent and refit["images"] == 6 and refit["prompts"] > 0
    for (k, v), before in zip(sam.state_dict().items(), small_sam.state_dict().values()):
        if not k.startswith("mask_decoder.iou_prediction_head."):
            assert torch.equal(v, before), k
