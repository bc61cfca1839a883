"""The tiny encoder's colour cells (their layout, adding them to a trained parent, their export),
and compact checkpoints."""

import pytest
import torch

from sae_trainer.export import check_encoder, export_encoder
from sae_trainer.model import (ModelConfig, TinyEncoderConfig, build_sam, colour_cells,
                               compact_checkpoint, load_checkpoint, save_checkpoint,
                               with_colour_cells, with_deeper_stages)

SMALL = dict(image_size=128)  # 8x8 embedding: fast on CPU


def test_colour_cells_hold_each_cells_mean_colours_on_a_4x4_grid():
    image = torch.rand(1, 3, 32, 32)
    cells = colour_cells(image)
    assert cells.shape == (1, 48, 2, 2)
    # Cell (row 1, column 0), colour 2, grid square (row 3, column 1): pixels 28..31 x 4..7.
    expected = image[0, 2, 16 + 12:16 + 16, 4:8].mean()
    assert torch.allclose(cells[0, 2 * 16 + 3 * 4 + 1, 1, 0], expected)


def test_the_embedding_hears_the_colour_cells():
    torch.manual_seed(0)
    sam = build_sam(ModelConfig(**SMALL, tiny=TinyEncoderConfig(colour_cells=True))).eval()
    image = torch.randn(1, 3, 128, 128)
    shifted = image.clone()
    shifted[..., :16, :16] += 1.0  # one cell's colours only
    with torch.no_grad():
        a, b = sam.image_encoder(image), sam.image_encoder(shifted)
    assert a.shape == (1, 256, 8, 8)
    assert (a - b).abs().amax() > 1e-3


def test_adding_colour_cells_to_a_parent_keeps_its_weights():
    torch.manual_seed(0)
    cfg = ModelConfig(**SMALL)
    parent = build_sam(cfg)
    child, child_cfg = with_colour_cells(parent, cfg)
    assert child_cfg.tiny.colour_cells and not cfg.tiny.colour_cells
    parent_state, child_state = parent.state_dict(), child.state_dict()
    key = "image_encoder.neck.0.weight"
    for name, value in parent_state.items():
        if name != key:
            assert torch.equal(child_state[name], value), name
    wide = child_state[key]
    assert wide.shape == (256, 128 + 48, 1, 1)
    assert torch.equal(wide[:, :128], parent_state[key])
    assert wide[:, 128:].std() == pytest.approx(float(parent_state[key].std()), rel=0.2)
    assert with_colour_cells(child, child_cfg)[0] is child  # already there: unchanged


def test_colour_cells_are_a_tiny_encoder_option():
    cfg = ModelConfig(encoder="vit_b", image_size=128)
    with pytest.raises(ValueError, match="tiny-encoder option"):
        with_colour_cells(None, cfg)


def test_an_encoder_with_colour_cells_exports_and_matches_pytorch(tmp_path):
    torch.manual_seed(0)
    sam = build_sam(ModelConfig(**SMALL, tiny=TinyEncoderConfig(colour_cells=True))).eval()
    path = str(tmp_path / "encoder.onnx")
    export_encoder(sam, path)
    assert check_encoder(sam, path) < 1e-4


def test_a_compact_checkpoint_keeps_float16_weights_only_and_loads(tmp_path):
    cfg = ModelConfig(image_size=128)
    sam = build_sam(cfg)
    full = tmp_path / "full.pt"
    save_checkpoint(str(full), sam, cfg, step=7, optimizer={"state": {"big": torch.zeros(1000)}})
    info = compact_checkpoint(str(full), str(tmp_path / "small.pt"), {"parent": "p"})
    assert info == {"steps": 7, "parent": "p", "weights": "float16-rounded"}
    raw = torch.load(tmp_path / "small.pt", weights_only=False)
    assert "optimizer" not in raw and raw["step"] == 7
    assert {v.dtype for v in raw["model"].values() if v.is_floating_point()} == {torch.float16}
    loaded, loaded_cfg, _ = load_checkpoint(str(tmp_path / "small.pt"))
    assert loaded_cfg == cfg
    for (k, a), b in zip(sam.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a.half().to(a.dtype) if a.is_floating_point() else a, b), k


def test_deeper_stages_keep_every_trained_weight_and_start_near_the_parent():
    cfg = ModelConfig(**SMALL)
    parent = build_sam(cfg).eval()
    deep, deep_cfg = with_deeper_stages(parent, cfg, (2, 4))
    assert deep_cfg.tiny.depths == (2, 4) and [len(s) - 1 for s in deep.image_encoder.stages] == [2, 4]
    state = deep.state_dict()
    for k, v in parent.state_dict().items():
        assert torch.equal(state[k], v), k
    image = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        before, after = parent.image_encoder(image), deep.image_encoder(image)
    assert 0 < (after - before).abs().max() < 0.1 * before.abs().max()
    with pytest.raises(ValueError, match="only grow"):
        with_deeper_stages(deep, deep_cfg, (1, 4))
