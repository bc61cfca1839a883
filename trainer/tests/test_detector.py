import json
import math
import os

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

from sae_trainer.detector import (BoxHead, DecodeSettings, DetectorConfig, ExportedDetector,
                                  boxes_from_maps, decode, detector_loss, make_targets,
                                  stack_targets)
from sae_trainer.detector_train import (DetectorTrainConfig, DetectorTrainingCancelled,
                                        coco_box_figures, evaluate_detector, export_detector,
                                        load_detector, train_detector)
from sae_trainer.model import ModelConfig, build_sam, save_checkpoint

SMALL_SAM = ModelConfig(image_size=128)  # 8x8 embedding grid
SMALL_HEAD = DetectorConfig(width=16, dilations=(1,))


@pytest.fixture(scope="module")
def sam_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = str(tmp_path_factory.mktemp("sam") / "sam.pt")
    save_checkpoint(path, build_sam(SMALL_SAM), SMALL_SAM)
    return path


def logit(p):
    return math.log(p / (1 - p))


def test_targets_put_one_peak_with_size_and_offset_at_the_centre_cell():
    t = make_targets(np.array([[40.0, 8.0, 72.0, 24.0]]), grid=8)  # centre (56, 16), 2 x 1 cells
    assert t.heatmap.shape == (1, 8, 8) and t.heatmap[0, 1, 3] == 1
    assert int(t.centres.sum()) == 1 and t.centres[1, 3]
    assert torch.allclose(t.size[:, 1, 3], torch.tensor([math.log(2), 0.0]))
    assert torch.allclose(t.offset[:, 1, 3], torch.tensor([0.5, 0.0]))
    assert t.heatmap[0, 1, 2] < 1 and t.heatmap[0, 7, 7] < 1e-3  # a Gaussian around the peak


def test_degenerate_boxes_make_no_target():
    t = make_targets(np.array([[10.0, 10.0, 10.0, 30.0]]), grid=8)
    assert int(t.centres.sum()) == 0 and float(t.heatmap.max()) == 0


def test_exported_boxes_invert_the_targets():
    box = np.array([[40.0, 8.0, 72.0, 24.0]])
    t = make_targets(box, grid=8)
    offset = torch.logit(t.offset.clamp(1e-4, 1 - 1e-4))[None]
    boxes = boxes_from_maps(t.size[None], offset)
    assert torch.allclose(boxes[0, :, 1, 3], torch.tensor(box[0], dtype=torch.float32), atol=0.01)


def maps_with(peaks, grid=8):
    """Exported maps holding boxes (score, cell (i, j), box x0 y0 x1 y1) and zeros elsewhere."""
    scores, boxes = torch.zeros(1, 1, grid, grid), torch.zeros(1, 4, grid, grid)
    for score, (i, j), box in peaks:
        scores[0, 0, i, j] = score
        boxes[0, :, i, j] = torch.tensor(box, dtype=torch.float32)
    return scores, boxes


def test_decode_keeps_peaks_scales_clips_drops_degenerate_and_suppresses_overlaps():
    scores, boxes = maps_with([
        (0.9, (1, 1), [0, 0, 40, 40]),
        (0.8, (5, 5), [2, 2, 42, 42]),  # overlaps the first: suppressed
        (0.7, (3, 6), [90, 40, 160, 80]),  # past the right edge: clipped
        (0.6, (6, 1), [10, 100, 10.2, 120]),  # under a pixel wide once scaled: dropped
        (0.05, (7, 7), [0, 0, 8, 8]),  # under the threshold
    ])
    found, values = decode(scores, boxes, scale=2.0, image_hw=(60, 64),
                           settings=DecodeSettings(score_threshold=0.1, nms_iou=0.5))
    assert values.tolist() == pytest.approx([0.9, 0.7])
    assert found.tolist() == [[0, 0, 20, 20], [45, 20, 64, 40]]


def test_decode_takes_only_local_maxima():
    scores, boxes = maps_with([(0.9, (2, 2), [0, 0, 10, 10]), (0.8, (2, 3), [50, 50, 60, 60])])
    found, _ = decode(scores, boxes, 1.0, (128, 128), DecodeSettings(score_threshold=0.1))
    assert found.tolist() == [[0, 0, 10, 10]]


def test_the_loss_falls_towards_a_fixed_batch():
    torch.manual_seed(0)
    head = BoxHead(SMALL_HEAD)
    embedding = torch.randn(2, 256, 8, 8)
    targets = stack_targets([make_targets(np.array([[16.0, 16.0, 64.0, 48.0]]), 8),
                             make_targets(np.array([[0.0, 64.0, 32.0, 128.0]]), 8)])
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        loss = detector_loss(head(embedding), targets)["loss"]
        first = first if first is not None else float(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss) < 0.3 * first


def perfect_results(coco: COCO):
    return [{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 1.0}
            for a in coco.dataset["annotations"]]


def test_coco_figures_are_one_for_the_true_boxes_and_zero_for_nothing(coco_dir):
    coco = COCO(os.path.join(coco_dir, "annotations.json"))
    ids = coco.getImgIds()
    perfect = coco_box_figures(coco, perfect_results(coco), ids)
    assert perfect["AP"] == pytest.approx(1.0) and perfect["AR100"] == pytest.approx(1.0)
    shifted = [{**r, "bbox": [r["bbox"][0] + 200, *r["bbox"][1:]]} for r in perfect_results(coco)]
    assert coco_box_figures(coco, shifted, ids)["AP50"] == 0.0
    assert coco_box_figures(coco, [], ids)["AP"] == 0.0


def small_train(coco_dir, out_dir, sam_checkpoint, **kw):
    base = dict(data_dir=coco_dir, out_dir=str(out_dir), sam_checkpoint=sam_checkpoint,
                detector=SMALL_HEAD, steps=4, batch_size=2, warmup_steps=1, checkpoint_every=2,
                log_every=1, seed=0)
    return DetectorTrainConfig(**{**base, **kw})


def test_training_writes_a_checkpoint_that_records_its_encoder(coco_dir, tmp_path, sam_checkpoint):
    seen = []
    result = train_detector(small_train(coco_dir, tmp_path, sam_checkpoint), progress=seen.append)
    head, cfg, extra = load_detector(result["checkpoint"])
    assert extra["step"] == 4 and extra["encoder_fingerprint"] == result["encoder_fingerprint"]
    assert cfg == SMALL_HEAD
    assert [s["phase"] for s in seen].count("embed") == 6 and seen[-1]["step"] == 4
    assert len((tmp_path / "detector_log.jsonl").read_text().splitlines()) == 4


def test_cancel_saves_a_checkpoint_and_a_rerun_resumes_it(coco_dir, tmp_path, sam_checkpoint):
    steps = []

    def progress(s):
        if s["phase"] == "train":
            steps.append(s["step"])

    with pytest.raises(DetectorTrainingCancelled):
        train_detector(small_train(coco_dir, tmp_path, sam_checkpoint), progress=progress,
                       cancel=lambda: len(steps) >= 1)
    assert load_detector(str(tmp_path / "detector.pt"))[2]["step"] == 2  # the step it stopped after
    train_detector(small_train(coco_dir, tmp_path, sam_checkpoint), progress=progress)
    assert steps == [1, 2, 3, 4]


def test_a_checkpoint_of_another_training_is_not_resumed(coco_dir, tmp_path, sam_checkpoint):
    train_detector(small_train(coco_dir, tmp_path, sam_checkpoint))
    with pytest.raises(ValueError, match="another training"):
        train_detector(small_train(coco_dir, tmp_path, sam_checkpoint, lr=5e-4, steps=6))


def test_a_foreign_or_malicious_checkpoint_is_refused(tmp_path, sam_checkpoint):
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    torch.save({"format": "sa-engine-detector-checkpoint/1", "model": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="not a detector checkpoint"):
        load_detector(str(tmp_path / "evil.pt"))
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(ValueError, match="not a detector checkpoint"):
        load_detector(sam_checkpoint)  # a SAM checkpoint is not a detector


def test_evaluation_on_another_encoder_is_refused(coco_dir, tmp_path, sam_checkpoint):
    result = train_detector(small_train(coco_dir, tmp_path / "run", sam_checkpoint))
    torch.manual_seed(1)
    other = str(tmp_path / "other.pt")
    save_checkpoint(other, build_sam(SMALL_SAM), SMALL_SAM)
    with pytest.raises(ValueError, match="another SAM encoder"):
        evaluate_detector(result["checkpoint"], other, coco_dir)
    metrics = evaluate_detector(result["checkpoint"], sam_checkpoint, coco_dir,
                                embedding_cache=str(tmp_path / "run" / "embeddings"))
    assert metrics["images"] == 6 and 0.0 <= metrics["AP"] <= 1.0 and "AR100" in metrics


def test_export_matches_pytorch_and_describes_its_graph(coco_dir, tmp_path, sam_checkpoint):
    import onnxruntime as ort

    result = train_detector(small_train(coco_dir, tmp_path / "run", sam_checkpoint))
    package = export_detector(result["checkpoint"], str(tmp_path / "pkg"), name="det", version="v1",
                              sam={"model": "small"}, grid=8)
    parity = package["parity"]["onnx_vs_pytorch_max_abs_diff"]
    assert parity["scores"] < 1e-5 and parity["boxes"] < 1e-2  # boxes in pixels
    assert json.loads((tmp_path / "pkg" / "model.json").read_text()) == json.loads(json.dumps(package))
    assert package["sam"]["encoder_fingerprint"] == result["encoder_fingerprint"]
    session = ort.InferenceSession(str(tmp_path / "pkg" / "detector.onnx"))
    assert [o.name for o in session.get_outputs()] == [o["name"] for o in package["outputs"]]
    head, _, _ = load_detector(result["checkpoint"])
    x = torch.randn(3, 256, 8, 8)
    scores, boxes = session.run(None, {"image_embeddings": x.numpy()})
    with torch.no_grad():
        expected = ExportedDetector(head)(x)
    assert scores.shape == (3, 1, 8, 8) and np.abs(boxes - expected[1].numpy()).max() < 1e-3
