import json
import os

import numpy as np
import pytest
import torch

from sae_trainer.model import ModelConfig, load_checkpoint
from sae_trainer.train import (CHECKPOINT_NAME, LOG_NAME, TrainConfig, Trainer, TrainingCancelled,
                               learning_rate, train)

SMALL = ModelConfig(image_size=128)  # 8x8 embedding, 32x32 masks: fast on CPU


def small_config(coco_dir, out_dir, **kw):
    base = dict(data_dir=coco_dir, out_dir=str(out_dir), model=SMALL, steps=2, batch_size=2,
                masks_per_image=3, num_points=2, warmup_steps=1, checkpoint_every=1, log_every=1,
                seed=0)
    return TrainConfig(**{**base, **kw})


def test_one_training_step_lowers_the_loss_on_a_fixed_batch(coco_dir, tmp_path):
    trainer = Trainer(small_config(coco_dir, tmp_path, lr=1e-3, num_points=0))
    examples = trainer.sample_examples()
    before = trainer.forward_backward(examples, np.random.default_rng(5))["loss"]
    trainer.optimizer_step()
    after = trainer.forward_backward(examples, np.random.default_rng(5))["loss"]
    assert after < before


def test_decoder_mode_freezes_the_encoder_and_caches_embeddings(coco_dir, tmp_path):
    cfg = small_config(coco_dir, tmp_path, mode="decoder")
    trainer = Trainer(cfg)
    encoder_before = {k: v.clone() for k, v in trainer.sam.image_encoder.state_dict().items()}
    decoder_before = trainer.sam.mask_decoder.output_upscaling[0].weight.clone()
    trainer.run()
    for k, v in trainer.sam.image_encoder.state_dict().items():
        assert torch.equal(v, encoder_before[k]), k
    assert not torch.equal(trainer.sam.mask_decoder.output_upscaling[0].weight, decoder_before)
    cached = [f for _, _, fs in os.walk(tmp_path / "embeddings") for f in fs if f.endswith(".npy")]
    assert 0 < len(cached) <= 4


def test_training_is_deterministic_given_the_seed(coco_dir, tmp_path):
    a = train(small_config(coco_dir, tmp_path / "a"))
    b = train(small_config(coco_dir, tmp_path / "b"))
    assert a["final"]["loss"] == b["final"]["loss"]
    sa, _, _ = load_checkpoint(a["checkpoint"])
    sb, _, _ = load_checkpoint(b["checkpoint"])
    for (k, va), vb in zip(sa.state_dict().items(), sb.state_dict().values()):
        assert torch.equal(va, vb), k


def test_progress_checkpoint_log_and_lineage(coco_dir, tmp_path):
    seen = []
    result = train(small_config(coco_dir, tmp_path), progress=seen.append)
    assert [s["step"] for s in seen] == [1, 2] and all(np.isfinite(s["loss"]) for s in seen)
    assert result["checkpoint"] == str(tmp_path / CHECKPOINT_NAME)
    sam, cfg, extra = load_checkpoint(result["checkpoint"])
    assert cfg.image_size == 128 and extra["step"] == 2
    assert extra["lineage_info"]["training_data"]["images"] == 6
    lines = (tmp_path / LOG_NAME).read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2]


def test_cancel_saves_a_checkpoint_and_resume_continues(coco_dir, tmp_path):
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 1  # let one step run, then cancel

    with pytest.raises(TrainingCancelled):
        train(small_config(coco_dir, tmp_path, steps=3), cancel=cancel)
    assert torch.load(tmp_path / CHECKPOINT_NAME, weights_only=False)["step"] == 1
    resumed = train(small_config(coco_dir, tmp_path, steps=3))
    assert resumed["steps"] == 3

    # The resumed run ends where an uninterrupted one does.
    straight = train(small_config(coco_dir, tmp_path / "straight", steps=3))
    assert resumed["final"]["loss"] == pytest.approx(straight["final"]["loss"], rel=1e-5)


def test_fine_tune_from_a_parent_checkpoint(coco_dir, tmp_path):
    parent = train(small_config(coco_dir, tmp_path / "parent", steps=1))["checkpoint"]
    child = train(small_config(coco_dir, tmp_path / "child", steps=1, mode="decoder",
                               init_checkpoint=parent))
    _, cfg, extra = load_checkpoint(child["checkpoint"])
    assert cfg.image_size == 128 and extra["lineage_info"]["parent"] == parent


def test_learning_rate_warmup_and_step_decay():
    cfg = TrainConfig(data_dir="", out_dir="", steps=90, lr=1.0, warmup_steps=10)
    assert learning_rate(cfg, 0) == pytest.approx(0.1)
    assert learning_rate(cfg, 30) == 1.0
    assert learning_rate(cfg, 60) == pytest.approx(0.1)
    assert learning_rate(cfg, 85) == pytest.approx(0.01)


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="mode"):
        TrainConfig(data_dir="", out_dir="", mode="everything")
    with pytest.raises(ValueError, match="encoder"):
        ModelConfig(encoder="resnet")
