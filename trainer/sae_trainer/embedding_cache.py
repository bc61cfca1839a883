"""Image embeddings of a frozen encoder, cached on disk for decoder-only training."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import torch


# --- embeddings cache (decoder mode) -----------------------------------------------------------

def encoder_fingerprint(encoder: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(encoder.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class EmbeddingCache:
    """Image embeddings of a frozen encoder on disk (float16 .npy), keyed by encoder weights."""

    def __init__(self, directory: str, encoder: torch.nn.Module) -> None:
        self.dir = os.path.join(directory, encoder_fingerprint(encoder))
        self.encoder = encoder
        os.makedirs(self.dir, exist_ok=True)

    def get(self, image_id: int, image: torch.Tensor) -> torch.Tensor:
        path = os.path.join(self.dir, f"{image_id}.npy")
        if os.path.isfile(path):
            return torch.from_numpy(np.load(path).astype(np.float32))
        with torch.no_grad():
            device = next(self.encoder.parameters()).device
            emb = self.encoder(image[None].to(device))[0].cpu()
        tmp = path + f".tmp{os.getpid()}.npy"
        np.save(tmp, emb.numpy().astype(np.float16))
        os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
        return emb.to(torch.float16).float()  # what a later read returns, so runs are reproducible
