import numpy as np

from sae_trainer.data import CocoInstances, RleMasks, instance_boxes
from sae_trainer.prompts import mask_to_box


def test_masks_decode_on_demand_and_boxes_come_from_the_rles(coco_dir):
    dataset = CocoInstances(coco_dir)
    sample = dataset.load(dataset.image_ids[0])
    assert isinstance(sample.masks, RleMasks) and len(sample.masks) >= 1
    decoded = sample.masks[list(range(len(sample.masks)))]
    assert decoded.dtype == bool and decoded.shape == (len(sample.masks), *sample.image.shape[:2])
    assert np.array_equal(sample.masks[0], decoded[0]) and decoded.reshape(len(decoded), -1).any(1).all()
    assert np.array_equal(sample.masks.boxes(), np.stack([mask_to_box(m) for m in decoded]))
    assert np.array_equal(instance_boxes(decoded), sample.masks.boxes())
    assert sample.masks[[]].shape == (0, *sample.image.shape[:2])
