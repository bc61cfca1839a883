import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sae_trainer.data import synthetic_shapes, write_coco  # noqa: E402

# One intra-op thread: the tests run many small ops, and on a busy machine (2 cores shared with
# other test suites) a second OpenMP thread makes them several times slower, not faster.
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if os.environ.get("SAE_SLOW_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="slow; set SAE_SLOW_TESTS=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def coco_dir(tmp_path_factory):
    """A tiny COCO instances dataset of synthetic shapes (RLE annotations)."""
    root = tmp_path_factory.mktemp("coco")
    images, masks = synthetic_shapes(6, size=(96, 128), max_objects=3, seed=1)
    write_coco(str(root), images, masks)
    return str(root)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
