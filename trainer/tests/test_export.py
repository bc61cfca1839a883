"""The model package contract (sam-spec §2): names, shapes, dtypes, dynamic axes, ONNX ~ PyTorch."""

import json
import os

import numpy as np
import onnxruntime as ort
import pytest
import torch

from sae_trainer.export import export_package
from sae_trainer.model import ModelConfig, PromptDecoder, build_sam, load_checkpoint, save_checkpoint

TOL = 1e-4


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """A randomly initialised tiny-encoder model at the contract's 1024 input, exported once."""
    root = tmp_path_factory.mktemp("pkg")
    torch.manual_seed(0)
    # The reference model's shape: reduced decoder MLPs, finer prompt-encoder frequencies.
    cfg = ModelConfig(transformer_mlp_dim=512, iou_head_hidden_dim=128, pe_scale=4.0)
    ckpt = str(root / "model.pt")
    save_checkpoint(ckpt, build_sam(cfg), cfg, step=7,
                    lineage_info={"parent": None, "training_data": {"images": 3}, "steps": 7})
    out = root / "out"
    export_package(ckpt, str(out), name="ref", version="v1", metrics={"miou_1click": 0.5},
                   log=lambda *_: None)
    return out, ckpt


def session(package, name):
    return ort.InferenceSession(str(package[0] / name), providers=["CPUExecutionProvider"])


def signature(sess):
    return ({i.name: (i.shape, i.type) for i in sess.get_inputs()}, [o.name for o in sess.get_outputs()])


def test_decoder_has_the_official_contract(package):
    inputs, outputs = signature(session(package, "decoder.onnx"))
    f = "tensor(float)"
    assert inputs == {
        "image_embeddings": ([1, 256, 64, 64], f),
        "point_coords": ([1, "num_points", 2], f),
        "point_labels": ([1, "num_points"], f),
        "mask_input": ([1, 1, 256, 256], f),
        "has_mask_input": ([1], f),
        "orig_im_size": ([2], f),
    }
    assert outputs == ["masks", "iou_predictions", "low_res_masks"]


def decoder_feed(n_points, rng, orig=(683, 1024), has_mask=0.0):
    coords = rng.uniform(0, 1000, (1, n_points, 2)).astype(np.float32)
    labels = np.concatenate([np.ones((1, n_points - 1)), -np.ones((1, 1))], 1).astype(np.float32)
    return {"image_embeddings": rng.standard_normal((1, 256, 64, 64)).astype(np.float32),
            "point_coords": coords, "point_labels": labels,
            "mask_input": rng.standard_normal((1, 1, 256, 256)).astype(np.float32),
            "has_mask_input": np.array([has_mask], np.float32),
            "orig_im_size": np.array(orig, np.float32)}


@pytest.mark.parametrize("n_points", [1, 3, 6])
def test_decoder_num_points_is_dynamic_and_masks_follow_orig_im_size(package, rng, n_points):
    masks, iou, low = session(package, "decoder.onnx").run(None, decoder_feed(n_points, rng))
    assert masks.shape == (1, 4, 683, 1024) and masks.dtype == np.float32
    assert iou.shape == (1, 4) and low.shape == (1, 4, 256, 256)


def test_encoder_contract(package, rng):
    sess = session(package, "encoder.onnx")
    inputs, outputs = signature(sess)
    assert inputs == {"input_image": ([1, 3, 1024, 1024], "tensor(float)")}
    assert outputs == ["image_embeddings"]
    (emb,) = sess.run(None, {"input_image": rng.standard_normal((1, 3, 1024, 1024)).astype(np.float32)})
    assert emb.shape == (1, 256, 64, 64) and emb.dtype == np.float32


def test_batched_decoder_rows_equal_single_prompt_decoder(package, rng):
    sess = session(package, "decoder_batched.onnx")
    inputs, outputs = signature(sess)
    assert inputs["point_coords"][0] == ["num_prompts", "num_points", 2]
    assert inputs["mask_input"][0] == ["num_prompts", 1, 256, 256]
    assert outputs == ["iou_predictions", "low_res_masks"]
    single = session(package, "decoder.onnx")
    feeds = [decoder_feed(3, rng, has_mask=float(i % 2)) for i in range(5)]
    emb = feeds[0]["image_embeddings"]
    batch = {"image_embeddings": emb}
    for key in ("point_coords", "point_labels", "mask_input", "has_mask_input"):
        batch[key] = np.concatenate([f[key] for f in feeds])
    iou_b, low_b = sess.run(None, batch)
    assert iou_b.shape == (5, 4) and low_b.shape == (5, 4, 256, 256)
    for i, f in enumerate(feeds):
        _, iou, low = single.run(None, {**f, "image_embeddings": emb})
        assert np.abs(iou_b[i] - iou[0]).max() < TOL
        assert np.abs(low_b[i] - low[0]).max() < TOL


@pytest.mark.parametrize("n_points", [2, 5, 12])
def test_folded_decoder_equals_the_official_decoder(package, rng, n_points):
    """decoder_folded.onnx: decoder_batched's contract, the same masks (folding only reorders sums)."""
    folded = session(package, "decoder_folded.onnx")
    assert signature(folded) == signature(session(package, "decoder_batched.onnx"))
    single = session(package, "decoder.onnx")
    for has_mask in (0.0, 1.0):
        feed = decoder_feed(n_points, rng, has_mask=has_mask)
        feed["point_labels"][0, :2] = [0, 1]  # a background click too
        iou, low = folded.run(None, {k: v for k, v in feed.items() if k != "orig_im_size"})
        _, iou_official, low_official = single.run(None, feed)
        assert np.abs(iou - iou_official).max() < TOL
        assert np.abs(low - low_official).max() < TOL
        assert ((low > 0) == (low_official > 0)).mean() > 0.9999


def test_folded_attention_in_pytorch(package, rng):
    """The folded modules against the official ones, in PyTorch, with a batch of prompts."""
    from sae_trainer.folded_attention import fold_attention

    sam, _, _ = load_checkpoint(package[1])
    feeds = [decoder_feed(4, rng, has_mask=float(i % 2)) for i in range(3)]
    args = [torch.from_numpy(np.concatenate([f[k] for f in feeds]) if k != "image_embeddings"
                             else feeds[0][k])
            for k in ("image_embeddings", "point_coords", "point_labels", "mask_input",
                      "has_mask_input")]
    with torch.no_grad():
        official = PromptDecoder(sam)(*args)
        folded = PromptDecoder(fold_attention(sam))(*args)
    for a, b in zip(official, folded):
        assert a.shape == b.shape and float((a - b).abs().max()) < TOL
    assert sam.mask_decoder.transformer.layers[0].cross_attn_token_to_image.__class__.__name__ == \
        "Attention", "fold_attention must leave the model it is given as it was"


def test_onnx_matches_pytorch(package, rng):
    _, ckpt = package
    sam, _, _ = load_checkpoint(ckpt)
    feed = decoder_feed(4, rng, has_mask=1.0)
    feed["point_labels"] = np.array([[1, 0, 2, 3]], np.float32)  # two clicks + a box
    iou, low = PromptDecoder(sam)(*[torch.from_numpy(feed[k]) for k in (
        "image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input")])
    _, iou_onnx, low_onnx = session(package, "decoder.onnx").run(None, feed)
    assert np.abs(iou_onnx - iou.detach().numpy()).max() < TOL
    assert np.abs(low_onnx - low.detach().numpy()).max() < TOL


def test_pe_scale_lives_in_the_weights(package):
    sam, cfg, _ = load_checkpoint(package[1])
    frequencies = sam.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix
    assert cfg.pe_scale == 4.0 and 3.0 < float(frequencies.std()) < 5.0
    official = build_sam(ModelConfig()).prompt_encoder.pe_layer.positional_encoding_gaussian_matrix
    assert 0.7 < float(official.std()) < 1.3


def test_model_json(package):
    meta = json.loads((package[0] / "model.json").read_text())
    assert meta["embedding_shape"] == [1, 256, 64, 64]
    assert meta["encoder"]["file"] == "encoder.onnx" and meta["encoder"]["preprocess_in_graph"] is False
    assert meta["encoder"]["input"]["name"] == "input_image"
    assert meta["encoder"]["input_layout"] == "NCHW"
    assert [i["name"] for i in meta["decoder"]["inputs"]] == [
        "image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input",
        "orig_im_size"]
    assert meta["decoder_accepts_prompt_batch"] is True
    assert meta["decoder_batched"]["file"] == "decoder_batched.onnx"
    assert meta["model_config"]["transformer_mlp_dim"] == 512
    assert meta["model_config"]["iou_head_hidden_dim"] == 128
    assert meta["lineage"]["steps"] == 7 and meta["lineage"]["training_data"] == {"images": 3}
    assert meta["metrics"] == {"miou_1click": 0.5}
    assert json.loads((package[0] / "metrics.json").read_text()) == {"miou_1click": 0.5}
    diffs = meta["parity"]["onnx_vs_pytorch_max_abs_diff"]
    assert meta["decoder_folded"]["file"] == "decoder_folded.onnx"
    assert meta["decoder_folded"]["inputs"] == meta["decoder_batched"]["inputs"]
    assert set(diffs) == {"decoder", "decoder_batched", "decoder_folded", "encoder"}
    assert all(d < TOL for d in diffs.values())


@pytest.mark.slow
def test_official_vit_b_checkpoint_converts(tmp_path):
    """An official-format checkpoint (bare Sam state dict), randomly initialised ViT-B.
    Slow: one ViT-B export + parity check takes minutes on 2 CPU cores."""
    torch.manual_seed(0)
    ckpt = str(tmp_path / "sam_vit_b_random.pth")
    torch.save(build_sam(ModelConfig(encoder="vit_b")).state_dict(), ckpt)
    meta = export_package(ckpt, str(tmp_path / "out"), encoder="vit_b", batched=False,
                          log=lambda *_: None)
    assert meta["encoder"]["arch"] == "vit_b" and meta["lineage"]["parent"] is None
    assert meta["lineage"]["source"] == "official segment-anything checkpoint"
    assert all(d < 1e-3 for d in meta["parity"]["onnx_vs_pytorch_max_abs_diff"].values())
    emb_sess = ort.InferenceSession(str(tmp_path / "out" / "encoder.onnx"))
    assert emb_sess.get_outputs()[0].shape == [1, 256, 64, 64]
