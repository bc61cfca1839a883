import numpy as np
import pytest
import torch

from sae_trainer.model import ModelConfig, load_checkpoint, resolve_device
from sae_trainer.train import Trainer, train
from sae_trainer.train_config import TrainConfig

HAS_CUDA = torch.cuda.is_available()
NO_GPU = "needs a CUDA GPU, and PyTorch sees none on this host"


def test_auto_takes_the_gpu_when_there_is_one():
    assert resolve_device("auto").type == ("cuda" if HAS_CUDA else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("name", ["tpu", "gpu0", "mps"])
def test_an_unknown_device_is_refused_with_the_choices(name):
    with pytest.raises(ValueError, match=r"unknown device .*auto \(CUDA"):
        resolve_device(name)


@pytest.mark.skipif(HAS_CUDA, reason="this host has a GPU: the missing-GPU error cannot happen")
def test_a_gpu_asked_for_on_a_host_without_one_is_an_error_not_a_cpu_run(coco_dir, tmp_path):
    with pytest.raises(ValueError, match=r"device 'cuda' asked for, but PyTorch .* sees no GPU"):
        resolve_device("cuda")
    cfg = TrainConfig(data_dir=coco_dir, out_dir=str(tmp_path), model=ModelConfig(image_size=128),
                      steps=1, device="cuda:0")
    with pytest.raises(ValueError, match="sees no GPU"):
        Trainer(cfg)
    assert not (tmp_path / "checkpoint.pt").exists()


@pytest.mark.skipif(not HAS_CUDA, reason=NO_GPU)
@pytest.mark.parametrize("mode", ["full", "decoder"])
def test_training_on_the_gpu_lowers_the_loss_and_its_checkpoint_loads_on_a_cpu(coco_dir, tmp_path,
                                                                                mode):
    cfg = TrainConfig(data_dir=coco_dir, out_dir=str(tmp_path), model=ModelConfig(image_size=128),
                      mode=mode, steps=2, batch_size=2, masks_per_image=3, num_points=2,
                      warmup_steps=1, lr=1e-3, device="cuda")
    trainer = Trainer(cfg)
    assert next(trainer.sam.parameters()).is_cuda
    examples = trainer.sample_examples()
    before = trainer.forward_backward(examples, np.random.default_rng(5))["loss"]
    trainer.optimizer_step()
    after = trainer.forward_backward(examples, np.random.default_rng(5))["loss"]
    assert after < before
    result = train(TrainConfig(**{**cfg.to_dict(), "out_dir": str(tmp_path / "run")}))
    sam, _, _ = load_checkpoint(result["checkpoint"])
    assert next(sam.parameters()).device.type == "cpu"


@pytest.mark.skipif(HAS_CUDA, reason="this host has a GPU: the missing-GPU error cannot happen")
def test_the_command_line_says_why_it_cannot_train_on_a_missing_gpu(coco_dir, tmp_path, capsys):
    from sae_trainer.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", coco_dir, "--out", str(tmp_path), "--device", "cuda"])
    message = exit_info.value.code  # sys.exit(text): printed to stderr, exit status 1
    assert message.startswith("sae_trainer train: device 'cuda' asked for") and "no GPU" in message
