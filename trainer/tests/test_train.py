import json
import os

import numpy as np
import pytest
import torch

from sae_trainer.data import Sample, resize_masks
from sae_trainer.model import ModelConfig, TinyEncoderConfig, load_checkpoint
from sae_trainer.click_simulation import simulate_interactive
from sae_trainer.examples import cell_regions, choose_anchor, make_example, window_side
from sae_trainer.train import Trainer, learning_rate, train
from sae_trainer.train_config import CHECKPOINT_NAME, LOG_NAME, TrainConfig, TrainingCancelled

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
    assert torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)["step"] == 1
    resumed = train(small_config(coco_dir, tmp_path, steps=3))
    assert resumed["steps"] == 3

    # The resumed run ends where an uninterrupted one does.
    straight = train(small_config(coco_dir, tmp_path / "straight", steps=3))
    assert resumed["final"]["loss"] == pytest.approx(straight["final"]["loss"], rel=1e-5)


def test_a_checkpoint_of_another_training_is_not_resumed(coco_dir, tmp_path):
    train(small_config(coco_dir, tmp_path, steps=1))
    with pytest.raises(ValueError, match="belongs to another training .*settings lr"):
        train(small_config(coco_dir, tmp_path, steps=1, lr=1e-5))
    # The same settings on other data (the annotations changed) are another training too.
    ann = os.path.join(coco_dir, "annotations.json")
    with open(ann) as f:
        coco = json.load(f)
    coco["annotations"] = coco["annotations"][1:]
    changed = tmp_path / "changed"
    changed.mkdir()
    os.symlink(os.path.join(coco_dir, "images"), changed / "images")
    with open(changed / "annotations.json", "w") as f:
        json.dump(coco, f)
    with pytest.raises(ValueError, match="training data"):
        train(small_config(str(changed), tmp_path, steps=1))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    torch.save({"config": {}, "model": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="Weights only load failed"):
        load_checkpoint(str(tmp_path / "evil.pt"))
    assert not (tmp_path / "pwned").exists()


def test_a_time_budget_stops_the_run_with_a_checkpoint_and_resume_continues(coco_dir, tmp_path):
    cut = train(small_config(coco_dir, tmp_path, steps=3, log_every=10, max_seconds=1e-6))
    assert cut["stopped"] == "max_seconds" and cut["steps"] == 1
    assert torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)["step"] == 1
    assert [json.loads(line)["step"] for line in (tmp_path / LOG_NAME).read_text().splitlines()] == [1]
    resumed = train(small_config(coco_dir, tmp_path, steps=3))
    assert resumed["stopped"] == "steps" and resumed["steps"] == 3

    straight = train(small_config(coco_dir, tmp_path / "straight", steps=3))
    assert resumed["final"]["loss"] == pytest.approx(straight["final"]["loss"], rel=1e-5)


def test_results_do_not_depend_on_the_number_of_loader_threads(coco_dir, tmp_path):
    one = train(small_config(coco_dir, tmp_path / "one", batch_size=4, loader_threads=1))
    four = train(small_config(coco_dir, tmp_path / "four", batch_size=4, loader_threads=4))
    assert one["final"]["loss"] == four["final"]["loss"]
    sa, _, _ = load_checkpoint(one["checkpoint"])
    sb, _, _ = load_checkpoint(four["checkpoint"])
    for (k, va), vb in zip(sa.state_dict().items(), sb.state_dict().values()):
        assert torch.equal(va, vb), k


def test_the_next_batch_is_drawn_ahead_and_left_out_of_the_checkpoint(coco_dir, tmp_path):
    trainer = Trainer(small_config(coco_dir, tmp_path, steps=3))
    state = trainer.rng.bit_generator.state
    trainer.train_step()
    assert trainer.pending is not None  # step 2's examples are being made during step 1
    drawn_for_step_1 = trainer.pending.rng_before
    assert drawn_for_step_1["numpy"] != state and trainer.rng_state() == drawn_for_step_1
    trainer.train_step()
    trainer.train_step()
    assert trainer.pending is None  # nothing is drawn past the last step
    assert trainer.rng_state()["numpy"] == trainer.rng.bit_generator.state


def test_fine_tune_from_a_parent_checkpoint(coco_dir, tmp_path):
    parent = train(small_config(coco_dir, tmp_path / "parent", steps=1))["checkpoint"]
    child = train(small_config(coco_dir, tmp_path / "child", steps=1, mode="decoder",
                               init_checkpoint=parent))
    _, cfg, extra = load_checkpoint(child["checkpoint"])
    assert cfg.image_size == 128 and extra["lineage_info"]["parent"] == parent


CORRECTIVE_CLICKS_ONLY = ("mask_decoder.output_hypernetworks_mlps.0.",
                          "prompt_encoder.mask_downscaling.", "prompt_encoder.point_embeddings.0.")


def test_train_only_changes_the_named_weights_and_nothing_else(coco_dir, tmp_path):
    cfg = small_config(coco_dir, tmp_path, mode="decoder", train_only=CORRECTIVE_CLICKS_ONLY)
    trainer = Trainer(cfg)
    before = {k: v.clone() for k, v in trainer.sam.state_dict().items()}
    one_click = (torch.randn(1, 256, 8, 8), torch.tensor([[[40.0, 60.0], [0.0, 0.0]]]),
                 torch.tensor([[1.0, -1.0]]), torch.zeros(1, 1, 32, 32), torch.zeros(1))
    with torch.no_grad():
        iou_before, masks_before = trainer.decoder(*one_click)
    trainer.run()
    changed = {k for k, v in trainer.sam.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith(CORRECTIVE_CLICKS_ONLY) for k in changed), changed
    assert any(k.startswith(CORRECTIVE_CLICKS_ONLY[0]) for k in changed)
    assert any(k.startswith(CORRECTIVE_CLICKS_ONLY[1]) for k in changed)
    with torch.no_grad():
        iou_after, masks_after = trainer.decoder(*one_click)
    # A single click's 3 masks and all 4 scores are untouched; only the single-mask output moved.
    assert torch.equal(iou_after, iou_before) and torch.equal(masks_after[:, 1:], masks_before[:, 1:])
    assert not torch.equal(masks_after[:, 0], masks_before[:, 0])


def test_train_only_is_refused_outside_decoder_mode_and_for_unknown_names(coco_dir, tmp_path):
    with pytest.raises(ValueError, match="train_only"):
        small_config(coco_dir, tmp_path, train_only=CORRECTIVE_CLICKS_ONLY)  # full mode
    for prefix in ("mask_decoder.no_such_layer.", "image_encoder."):  # a typo; frozen in decoder mode
        with pytest.raises(ValueError, match="no trainable parameter is named"):
            Trainer(small_config(coco_dir, tmp_path, mode="decoder", train_only=(prefix,)))


def test_colour_cells_asked_for_are_added_to_a_parent_without_them(coco_dir, tmp_path):
    parent = train(small_config(coco_dir, tmp_path / "parent", steps=1))["checkpoint"]
    colour = ModelConfig(image_size=128, tiny=TinyEncoderConfig(colour_cells=True))
    child = train(small_config(coco_dir, tmp_path / "child", steps=1, init_checkpoint=parent,
                               model=colour))["checkpoint"]
    sam, cfg, _ = load_checkpoint(child)
    assert cfg.tiny.colour_cells and sam.image_encoder.neck[0].in_channels == 128 + 48
    with pytest.raises(ValueError, match="full mode"):
        train(small_config(coco_dir, tmp_path / "frozen", steps=1, init_checkpoint=parent,
                           model=colour, mode="decoder"))


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
    with pytest.raises(ValueError, match="loader_threads"):
        TrainConfig(data_dir="", out_dir="", loader_threads=0)
    with pytest.raises(ValueError, match="max_seconds"):
        TrainConfig(data_dir="", out_dir="", max_seconds=0)


# --- training on windows -------------------------------------------------------------------------

def square_sample(boxes, size=(100, 200)):
    """A (H, W) image with one filled rectangle mask per XYXY box (original pixels, inclusive)."""
    masks = np.zeros((len(boxes), *size), bool)
    for m, (x0, y0, x1, y1) in zip(masks, boxes):
        m[y0:y1 + 1, x0:x1 + 1] = True
    return Sample(1, np.full((*size, 3), 128, np.uint8), masks, None)


def test_a_window_is_on_the_embedding_grid_and_holds_its_masks_whole():
    # 200 px wide -> x0.64 to the 128 model input; the boxes land at 64..89 and 0..12 model px.
    sample = square_sample([(100, 10, 139, 40), (0, 0, 19, 19)])
    full = resize_masks(sample.masks, (64, 128), 128)
    for seed in range(20):
        ex = make_example(sample, 128, 8, np.random.default_rng(seed), crop=48)
        x, y = ex.offset
        assert x % 16 == 0 and y % 16 == 0 and 0 <= x <= 80 and 0 <= y <= 80
        assert ex.masks.shape[1:] == (48, 48) and ex.masks_low.shape[1:] == (12, 12)
        assert len(ex.masks) >= 1
        for m in ex.masks:  # every mask is one of the image's, whole, at its place in the window
            assert any(torch.equal(torch.from_numpy(m).float(), f[y:y + 48, x:x + 48])
                       and f.sum() == m.sum() for f in full)


def test_a_window_is_centred_on_a_mask_bigger_than_itself():
    sample = square_sample([(20, 10, 179, 90)])  # 102 x 51 model px, window 48
    ex = make_example(sample, 128, 8, np.random.default_rng(0), crop=48)
    (x, y), centre = ex.offset, (64.0, 32.3)  # the box's centre in model pixels
    assert abs(x + 24 - centre[0]) <= 8 and abs(y + 24 - centre[1]) <= 8
    assert len(ex.masks) == 0  # not whole in the window, so not a target


def test_window_prompts_reach_the_decoder_in_the_model_input_frame():
    sample = square_sample([(100, 10, 139, 40)])
    full = resize_masks(sample.masks, (64, 128), 128)[0].bool()
    ex = make_example(sample, 128, 8, np.random.default_rng(3), crop=48)
    seen = []

    class RecordingDecoder:
        def __call__(self, emb, coords, labels, mask_input, has_mask, image_pe):
            seen.append((coords.clone(), labels.clone(), image_pe))
            m = len(coords)
            logits = torch.zeros(m, 4, 12, 12, requires_grad=True)
            return torch.zeros(m, 4, requires_grad=True), logits

    pe = torch.arange(8 * 8, dtype=torch.float32).reshape(1, 1, 8, 8)
    simulate_interactive(RecordingDecoder(), torch.zeros(1, 256, 3, 3), ex, num_points=2,
                         rng=np.random.default_rng(0), loss_scale=1.0,
                         image_pe=ex.window(pe, 16))
    x0, y0 = ex.offset
    assert torch.equal(seen[0][2], pe[..., y0 // 16:y0 // 16 + 3, x0 // 16:x0 // 16 + 3])
    near_mask = torch.nn.functional.max_pool2d(full[None, None].float(), 5, 1, 2)[0, 0] > 0
    for i, (coords, labels, _) in enumerate(seen):
        for (x, y), label in zip(coords[0].tolist(), labels[0].tolist()):
            if label == 1:  # foreground clicks fall on the mask where the whole image has it
                # (corrective clicks sit at the centre of a 1/4-scale pixel: within 2 px)
                assert (full if i == 0 else near_mask)[int(round(y)), int(round(x))]
            if label in (2, 3):  # box corners within a few pixels of the mask's box
                assert 54 <= x <= 100 and 0 <= y <= 36


def test_training_on_windows_lowers_the_loss(coco_dir, tmp_path):
    trainer = Trainer(small_config(coco_dir, tmp_path, lr=1e-3, num_points=0, crop_size=64))
    examples = trainer.sample_examples()
    assert examples and all(e.masks.shape[1:] == (64, 64) for e in examples)
    before = trainer.forward_backward(examples, np.random.default_rng(5))["loss"]
    trainer.optimizer_step()
    after = trainer.forward_backward(examples, np.random.default_rng(5))["loss"]
    assert after < before


def test_windows_grow_with_their_anchor_mask():
    assert window_side(np.array([0, 0, 40, 20]), 64, 2.0, 1024) == 80  # 2 x 40, on the 16 grid
    assert window_side(np.array([0, 0, 10, 10]), 64, 2.0, 1024) == 64  # at least the minimum
    assert window_side(np.array([0, 0, 700, 90]), 64, 2.0, 1024) == 1024  # at most the image
    # A mask too big for a fixed 48 px window gets a window of its own size, context included.
    sample = square_sample([(20, 10, 179, 90)])  # 102 x 51 model px
    ex = make_example(sample, 128, 8, np.random.default_rng(0), crop=48, context=1.1)
    assert ex.crop is None and ex.offset == (0, 0) and len(ex.masks) == 1  # the whole input
    sample = square_sample([(100, 10, 139, 40), (0, 0, 19, 19)])  # 26 x 20 and 13 x 13 model px
    for seed in range(10):
        ex = make_example(sample, 128, 8, np.random.default_rng(seed), crop=32, context=1.5)
        assert ex.crop in (32, 48) and len(ex.masks) >= 1


def test_training_on_windows_of_several_sizes_lowers_the_loss(coco_dir, tmp_path):
    trainer = Trainer(small_config(coco_dir, tmp_path, lr=1e-3, num_points=0, crop_size=32,
                                   crop_context=2.0, batch_size=4))
    examples = trainer.sample_examples()
    assert len({e.masks.shape[-1] for e in examples}) > 1  # the batch mixes window sizes
    before = trainer.forward_backward(examples, np.random.default_rng(5))["loss"]
    trainer.optimizer_step()
    after = trainer.forward_backward(examples, np.random.default_rng(5))["loss"]
    assert after < before


def test_a_fresh_model_starts_with_local_attention_and_a_small_embedding(coco_dir, tmp_path):
    trainer = Trainer(small_config(coco_dir, tmp_path))
    for name, module in trainer.sam.mask_decoder.named_modules():
        if hasattr(module, "q_proj"):
            assert torch.equal(module.q_proj.weight, module.k_proj.weight), name
    assert torch.all(trainer.sam.image_encoder.neck[-1].weight == 0.1)
    # A parent's weights are kept as they are.
    parent = train(small_config(coco_dir, tmp_path / "p", steps=1))["checkpoint"]
    child = Trainer(small_config(coco_dir, tmp_path / "c", init_checkpoint=parent))
    loaded, _, _ = load_checkpoint(parent)
    assert torch.equal(child.sam.image_encoder.neck[-1].weight, loaded.image_encoder.neck[-1].weight)


def test_a_vit_cannot_train_on_windows_end_to_end(coco_dir, tmp_path):
    with pytest.raises(ValueError, match="tiny encoder"):
        Trainer(small_config(coco_dir, tmp_path, model=ModelConfig(encoder="vit_b", image_size=128),
                             crop_size=64))


def test_weight_decay_spares_norms_biases_and_position_embeddings(coco_dir, tmp_path):
    trainer = Trainer(small_config(coco_dir, tmp_path))
    decay, no_decay = trainer.optimizer.param_groups
    names = {id(p): n for n, p in trainer.sam.named_parameters()}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"])
    spared = {names[id(p)] for p in no_decay["params"]}
    assert "image_encoder.pos_embed" in spared and "image_encoder.neck.3.weight" in spared
    assert len(decay["params"]) + len(no_decay["params"]) == sum(1 for _ in trainer.sam.parameters())


def test_anchor_power_draws_big_masks_more_often(rng):
    boxes = np.array([[0, 0, 10, 10], [0, 0, 40, 40]], np.float32)  # areas 100 and 1600
    share = lambda power: np.mean([choose_anchor(boxes, power, rng) for _ in range(4000)])
    assert share(0.0) == pytest.approx(0.5, abs=0.03)
    assert share(1.0) == pytest.approx(1600 / 1700, abs=0.02)
    assert share(0.5) == pytest.approx(40 / 50, abs=0.03)


def test_each_cell_lies_in_the_smallest_mask_over_its_centre():
    # 100 x 200 image -> x0.64 into the 128 input: 8 cells across, 4 rows inside the image.
    sample = square_sample([(0, 0, 199, 99), (100, 25, 149, 74)])  # the whole image, a square in it
    regions = cell_regions(sample, 128, (0, 0), None).numpy()
    assert regions.shape == (8, 8)
    assert (regions[4:] == -1).all()  # padding below the image
    centre = np.arange(8) * 16 + 8  # cell centres in the input, /0.64 in the image
    inner = ((centre / 0.64 >= 100) & (centre / 0.64 <= 149))[None, :] & \
        ((centre / 0.64 >= 25) & (centre / 0.64 <= 74))[:4, None]
    assert (regions[:4][inner] == 1).all() and (regions[:4][~inner] == 0).all() and inner.any()
    window = cell_regions(sample, 128, (64, 16), 32).numpy()  # a 2 x 2 cell window
    assert np.array_equal(window, regions[1:3, 4:6])


def test_the_region_loss_trains_the_encoder_alongside(coco_dir, tmp_path):
    trainer = Trainer(small_config(coco_dir, tmp_path, region_loss_weight=1.0, num_points=0))
    assert trainer.region_head is not None
    examples = trainer.sample_examples()
    assert all(e.regions is not None and e.regions.shape == (8, 8) for e in examples)
    stats = trainer.forward_backward(examples, np.random.default_rng(0))
    assert stats["region_loss"] > 0 and trainer.region_head.weight.grad is not None
    trainer.optimizer_step()
    trainer.save()
    resumed = Trainer(small_config(coco_dir, tmp_path, region_loss_weight=1.0, num_points=0))
    assert torch.equal(resumed.region_head.weight, trainer.region_head.weight)


def test_deeper_stages_asked_for_are_added_to_a_parent(coco_dir, tmp_path):
    parent = train(small_config(coco_dir, tmp_path / "parent", steps=1))["checkpoint"]
    deep = ModelConfig(image_size=128, tiny=TinyEncoderConfig(depths=(1, 4)))
    child = train(small_config(coco_dir, tmp_path / "child", steps=1, init_checkpoint=parent,
                               model=deep))["checkpoint"]
    sam, cfg, _ = load_checkpoint(child)
    assert cfg.tiny.depths == (1, 4) and len(sam.image_encoder.stages[1]) == 5
    with pytest.raises(ValueError, match="full mode"):
        train(small_config(coco_dir, tmp_path / "frozen", steps=1, init_checkpoint=parent,
                           model=deep, mode="decoder"))
