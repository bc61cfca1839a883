"""Build SAM models from the official segment-anything modules.

The prompt encoder and mask decoder are always the paper's architecture (only the decoder's inner MLP
sizes are configurable); the image encoder is either one of the official ViTs (so an official
checkpoint loads unchanged) or `tiny`, a small ConvNeXt-style network that is fast enough to train on
a CPU and produces the same 256x64x64 embedding.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from functools import partial
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)
from segment_anything.modeling.common import LayerNorm2d
from segment_anything.modeling.prompt_encoder import PositionEmbeddingRandom
from segment_anything.modeling.transformer import Attention
from segment_anything.utils.onnx import SamOnnxModel

PROMPT_EMBED_DIM = 256
PATCH_SIZE = 16  # embedding stride: 1024 -> 64
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)

# Official ViT configs (segment_anything/build_sam.py).
VIT_CONFIGS: Dict[str, Dict[str, Any]] = {
    "vit_b": dict(embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11)),
    "vit_l": dict(embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23)),
    "vit_h": dict(embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31)),
}
ENCODERS = ("tiny", *VIT_CONFIGS)


@dataclass
class TinyEncoderConfig:
    stem_dim: int = 32  # after the stride-4 patchify stem
    dims: Tuple[int, ...] = (64, 128)  # stages at stride 8 and 16
    depths: Tuple[int, ...] = (1, 2)  # ConvNeXt blocks per stage
    # A learned absolute position embedding at stride 16, as the ViTs have. Without it the
    # embedding says nothing about where a cell is, and the decoder has no cheap way to place a
    # mask at the prompt: training from scratch then stalls on a constant, empty prediction.
    pos_embed: bool = True
    # Pack each cell's 4x4 grid of mean colours (stride 4, 48 values) into the embedding beside the
    # learned features. The decoder can then compare colours at the stride of its masks from the
    # first step, where the learned features alone left it painting a blob at the click.
    colour_cells: bool = False


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model; stored in checkpoints and model.json."""

    encoder: str = "tiny"
    image_size: int = 1024  # model input side; embedding side = image_size // 16
    # Mask decoder. The paper's values are the defaults; CPU-trained reference models may shrink the
    # two MLPs, which leaves the ONNX contract unchanged.
    transformer_depth: int = 2
    transformer_heads: int = 8
    transformer_mlp_dim: int = 2048
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    num_multimask_outputs: int = 3
    # Spread of the prompt encoder's random Fourier frequencies (official: 1). The ViTs put position
    # into the embedding itself; the tiny conv encoder does not, so it needs finer frequencies to
    # tell a small object from its neighbours. A buffer in the weights: the ONNX contract is unchanged.
    pe_scale: float = 1.0
    tiny: TinyEncoderConfig = field(default_factory=TinyEncoderConfig)

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.image_size % PATCH_SIZE:
            raise ValueError(f"image_size must be a multiple of {PATCH_SIZE}, got {self.image_size}")
        if isinstance(self.tiny, dict):
            self.tiny = TinyEncoderConfig(**{k: tuple(v) if isinstance(v, list) else v
                                             for k, v in self.tiny.items()})

    @property
    def embedding_size(self) -> int:
        return self.image_size // PATCH_SIZE

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


class ConvNeXtBlock(nn.Module):
    """Depthwise 7x7 conv -> LayerNorm -> pointwise MLP (x4), residual (ConvNeXt, Liu et al. 2022)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = LayerNorm2d(dim)
        self.pwconv1 = nn.Conv2d(dim, 4 * dim, kernel_size=1)
        self.act = nn.GELU()
        self.pwconv2 = nn.Conv2d(4 * dim, dim, kernel_size=1)
        # Layer scale keeps the residual branch small at init, which makes training from scratch stable.
        self.gamma = nn.Parameter(torch.full((dim, 1, 1), 1e-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pwconv2(self.act(self.pwconv1(self.norm(self.dwconv(x)))))
        return x + self.gamma * y


def sincos_position_embedding(dim: int, size: int) -> torch.Tensor:
    """(1, dim, size, size) 2-D sine-cosine position embedding (MAE's), half the channels per axis."""
    if dim % 4:
        raise ValueError(f"position embedding width must be a multiple of 4, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    pos = torch.arange(size, dtype=torch.float64)[:, None] * omega[None]  # (size, dim/4)
    axis = torch.cat([pos.sin(), pos.cos()], dim=1)  # (size, dim/2)
    ys = axis[:, None, :].expand(size, size, dim // 2)
    xs = axis[None, :, :].expand(size, size, dim // 2)
    return torch.cat([xs, ys], dim=2).permute(2, 0, 1)[None].float()


COLOUR_GRID = 4  # colour_cells: mean colours on a 4x4 grid per embedding cell
COLOUR_CHANNELS = 3 * COLOUR_GRID ** 2


def colour_cells(image: torch.Tensor) -> torch.Tensor:
    """(B,3,S,S) -> (B,48,S/16,S/16): each 16x16 cell's mean colours on a 4x4 grid, channel
    c*16 + row*4 + column."""
    return F.pixel_unshuffle(F.avg_pool2d(image, PATCH_SIZE // COLOUR_GRID), COLOUR_GRID)


class TinyImageEncoder(nn.Module):
    """A CPU-fast image encoder: stride-4 patchify stem, two ConvNeXt stages down to stride 16, a
    learned position embedding (initialised to sine-cosine), then SAM's neck (1x1 conv ->
    LayerNorm2d -> 3x3 conv -> LayerNorm2d) to 256 channels.

    Input (B,3,S,S) normalised and padded like SAM's; output (B,256,S/16,S/16). Training on windows
    of the model input passes each window's top-left embedding cell as `origins` so every cell gets
    the position embedding it has in the whole image.
    """

    def __init__(self, img_size: int = 1024, cfg: Optional[TinyEncoderConfig] = None,
                 out_chans: int = PROMPT_EMBED_DIM) -> None:
        super().__init__()
        cfg = cfg or TinyEncoderConfig()
        if len(cfg.dims) != 2 or len(cfg.depths) != 2:
            raise ValueError("tiny encoder needs exactly two stages (stride 8 and 16)")
        self.img_size = img_size  # read by Sam, SamPredictor and SamOnnxModel
        self.stem = nn.Sequential(nn.Conv2d(3, cfg.stem_dim, kernel_size=4, stride=4),
                                  LayerNorm2d(cfg.stem_dim))
        stages, in_dim = [], cfg.stem_dim
        for dim, depth in zip(cfg.dims, cfg.depths):
            down = nn.Sequential(LayerNorm2d(in_dim), nn.Conv2d(in_dim, dim, kernel_size=2, stride=2))
            stages.append(nn.Sequential(down, *[ConvNeXtBlock(dim) for _ in range(depth)]))
            in_dim = dim
        self.stages = nn.Sequential(*stages)
        self.pos_embed = (nn.Parameter(sincos_position_embedding(in_dim, img_size // PATCH_SIZE))
                          if cfg.pos_embed else None)
        self.packs_colour_cells = cfg.colour_cells
        neck_in = in_dim + (COLOUR_CHANNELS if cfg.colour_cells else 0)
        self.neck = nn.Sequential(  # same as ImageEncoderViT.neck
            nn.Conv2d(neck_in, out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, image: torch.Tensor,
                origins: Optional[Sequence[Tuple[int, int]]] = None) -> torch.Tensor:
        x = self.stages(self.stem(image))
        if self.pos_embed is not None:
            h, w = x.shape[-2:]
            if origins is None:
                x = x + self.pos_embed[..., :h, :w]
            else:  # (column, row) of each window's first cell
                x = x + torch.cat([self.pos_embed[..., r:r + h, c:c + w] for c, r in origins])
        if self.packs_colour_cells:
            x = torch.cat([x, colour_cells(image)], dim=1)
        return self.neck(x)


def build_image_encoder(cfg: ModelConfig) -> nn.Module:
    if cfg.encoder == "tiny":
        return TinyImageEncoder(cfg.image_size, cfg.tiny)
    vit = VIT_CONFIGS[cfg.encoder]
    return ImageEncoderViT(  # as segment_anything.build_sam._build_sam
        depth=vit["depth"],
        embed_dim=vit["embed_dim"],
        img_size=cfg.image_size,
        mlp_ratio=4,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=vit["num_heads"],
        patch_size=PATCH_SIZE,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=list(vit["global_attn_indexes"]),
        window_size=14,
        out_chans=PROMPT_EMBED_DIM,
    )


def build_sam(cfg: ModelConfig) -> Sam:
    """A SAM with the given encoder and the paper's prompt encoder and mask decoder."""
    emb = cfg.embedding_size
    sam = Sam(
        image_encoder=build_image_encoder(cfg),
        prompt_encoder=PromptEncoder(
            embed_dim=PROMPT_EMBED_DIM,
            image_embedding_size=(emb, emb),
            input_image_size=(cfg.image_size, cfg.image_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=cfg.num_multimask_outputs,
            transformer=TwoWayTransformer(
                depth=cfg.transformer_depth,
                embedding_dim=PROMPT_EMBED_DIM,
                mlp_dim=cfg.transformer_mlp_dim,
                num_heads=cfg.transformer_heads,
            ),
            transformer_dim=PROMPT_EMBED_DIM,
            iou_head_depth=cfg.iou_head_depth,
            iou_head_hidden_dim=cfg.iou_head_hidden_dim,
        ),
        pixel_mean=list(PIXEL_MEAN),
        pixel_std=list(PIXEL_STD),
    )
    if cfg.pe_scale != 1.0:
        sam.prompt_encoder.pe_layer = PositionEmbeddingRandom(PROMPT_EMBED_DIM // 2, scale=cfg.pe_scale)
    return sam


def init_from_scratch(sam: Sam, embedding_scale: float = 0.1) -> None:
    """Initialisation for training a SAM from scratch (a parent model or an official checkpoint
    replaces it; the architecture is unchanged).

    * Every decoder attention starts with its key projection equal to its query projection, so
      q.k = x'W'Wy is a positive semi-definite form. Queries and keys carry the Fourier position
      encodings of prompts and cells, whose inner product is a kernel of their distance, so
      attention starts out local at every position of the image. With independent projections it
      starts out random and the decoder learns to put a mask at the prompt only around positions
      it has seen (measured on prompts alone, windows anywhere in the image: no progress in 400
      steps, against IoU 0.45 with tied projections).
    * The tiny encoder's last LayerNorm starts at `embedding_scale`, so that at first the cells'
      content, still noise, does not drown their position encodings in the decoder's attention.
    """
    for module in sam.mask_decoder.modules():
        if isinstance(module, Attention):
            with torch.no_grad():
                module.k_proj.weight.copy_(module.q_proj.weight)
                module.k_proj.bias.copy_(module.q_proj.bias)
    if isinstance(sam.image_encoder, TinyImageEncoder):
        with torch.no_grad():
            sam.image_encoder.neck[-1].weight.fill_(embedding_scale)


def with_colour_cells(sam: Sam, cfg: ModelConfig) -> Tuple[Sam, ModelConfig]:
    """A copy of a tiny-encoder model whose encoder also packs colour cells, every trained weight
    kept. The neck's weights for the 48 new inputs are drawn at the spread of its trained ones, so
    the embedding starts out near the parent's and the colours are heard from the first step."""
    if cfg.encoder != "tiny":
        raise ValueError("colour cells are a tiny-encoder option; "
                         f"this model's encoder is {cfg.encoder}")
    if cfg.tiny.colour_cells:
        return sam, cfg
    wide_cfg = replace(cfg, tiny=replace(cfg.tiny, colour_cells=True))
    wide = build_sam(wide_cfg)
    state = sam.state_dict()
    key = "image_encoder.neck.0.weight"
    trained = state[key]
    new = torch.randn(trained.shape[0], COLOUR_CHANNELS, *trained.shape[2:]) * trained.std()
    state[key] = torch.cat([trained, new], dim=1)
    wide.load_state_dict(state)
    wide.train(sam.training)
    return wide, wide_cfg


NEW_BLOCK_SCALE = 1e-2  # with_deeper_stages: a new block's layer scale


def with_deeper_stages(sam: Sam, cfg: ModelConfig, depths: Tuple[int, ...]) -> Tuple[Sam, ModelConfig]:
    """A copy of a tiny-encoder model with more ConvNeXt blocks per stage (at least the parent's),
    every trained weight kept. New blocks go after the trained ones with a layer scale of 1e-2, so
    the embedding starts within about 1% of the parent's and the new blocks learn from the first step."""
    if cfg.encoder != "tiny":
        raise ValueError(f"deeper stages are a tiny-encoder option; this model's encoder is {cfg.encoder}")
    depths = tuple(depths)
    if len(depths) != len(cfg.tiny.depths) or any(d < p for d, p in zip(depths, cfg.tiny.depths)):
        raise ValueError(f"stages can only grow: parent depths {cfg.tiny.depths}, asked {depths}")
    if depths == tuple(cfg.tiny.depths):
        return sam, cfg
    deep_cfg = replace(cfg, tiny=replace(cfg.tiny, depths=depths))
    deep = build_sam(deep_cfg)
    for stage, parent_depth in zip(deep.image_encoder.stages, cfg.tiny.depths):
        for block in list(stage)[1 + parent_depth:]:  # stage = [downsample, blocks...]
            with torch.no_grad():
                block.gamma.fill_(NEW_BLOCK_SCALE)
    missing, unexpected = deep.load_state_dict(sam.state_dict(), strict=False)
    if unexpected or any(not k.startswith("image_encoder.stages.") for k in missing):
        raise RuntimeError(f"deepening lost weights: missing {missing}, unexpected {unexpected}")
    deep.train(sam.training)
    return deep, deep_cfg


class PromptDecoder(SamOnnxModel):
    """Prompt encoder + mask decoder for a batch of B prompts on one image embedding.

    Prompts use the ONNX contract's encoding (points in the model input frame, labels -1..3, the
    caller adds padding points), through SamOnnxModel's own embedding code, so training, evaluation
    and the exported graphs share one path. Unlike SamOnnxModel.forward this is differentiable.

    Inputs: image_embeddings (1,256,e,e), point_coords (B,N,2), point_labels (B,N),
    mask_input (B,1,4e,4e), has_mask_input (B,); optionally image_pe, the positional encoding of the
    embedding's cells (default: the whole image's; training on a window passes that window's slice).
    Returns iou_predictions (B,4) and low_res_masks (B,4,4e,4e) logits; index 0 is the single-mask
    output, 1..3 the multimask outputs.
    """

    def __init__(self, sam: Sam) -> None:
        super().__init__(sam, return_single_mask=False)

    def forward(self, image_embeddings: torch.Tensor, point_coords: torch.Tensor,
                point_labels: torch.Tensor, mask_input: torch.Tensor,
                has_mask_input: torch.Tensor,
                image_pe: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        sparse = self._embed_points(point_coords, point_labels)
        dense = self._embed_masks(mask_input, has_mask_input.reshape(-1, 1, 1, 1))
        low_res_masks, iou_predictions = self.mask_decoder.predict_masks(
            image_embeddings=image_embeddings,
            image_pe=self.model.prompt_encoder.get_dense_pe() if image_pe is None else image_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
        )
        return iou_predictions, low_res_masks


# --- devices -----------------------------------------------------------------------------------

DEVICES_HELP = "auto (CUDA when PyTorch sees a GPU, else CPU), cpu, cuda or cuda:N"


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device a run asks for; a GPU that is asked for by name and absent is an error, not
    a silent fall-back to a CPU run many times slower."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"unknown device {name!r}: use {DEVICES_HELP}") from e
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}: use {DEVICES_HELP}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "no CUDA support"
            raise ValueError(f"device {name!r} asked for, but PyTorch {torch.__version__} "
                             f"({build}) sees no GPU")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} asked for, but only "
                             f"{torch.cuda.device_count()} GPU(s) are visible")
    return device


# --- checkpoints -------------------------------------------------------------------------------

def save_checkpoint(path: str, sam: Sam, cfg: ModelConfig, **extra: Any) -> None:
    """Our checkpoint: {"config", "model" (Sam state dict), ...extra (step, optimizer, lineage)}."""
    torch.save({"config": cfg.to_dict(), "model": sam.state_dict(), **extra}, path)


def compact_checkpoint(source: str, dest: str, lineage: Dict[str, Any]) -> Dict[str, Any]:
    """Keep only a checkpoint's weights, rounded to float16 (no optimizer or RNG state): the form
    in which a model is committed or carried back from a lent machine. Returns its lineage."""
    sam, cfg, extra = load_checkpoint(source)
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in sam.state_dict().items()}
    info = {"steps": extra.get("step"), **lineage, "weights": "float16-rounded"}
    torch.save({"config": cfg.to_dict(), "model": half, "step": extra.get("step"),
                "lineage_info": info}, dest)
    return info


def load_checkpoint(path: str, encoder: Optional[str] = None,
                    map_location: str = "cpu") -> Tuple[Sam, ModelConfig, Dict[str, Any]]:
    """Load our checkpoint, or an official SAM state dict (then `encoder` names its ViT config).

    Returns the model (eval mode), its config and the checkpoint's extra fields.
    """
    # weights_only: a checkpoint may come from storage others write to; it is data, never code.
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if isinstance(ckpt, dict) and "config" in ckpt and "model" in ckpt:
        cfg = ModelConfig.from_dict(ckpt["config"])
        state, extra = ckpt["model"], {k: v for k, v in ckpt.items() if k not in ("config", "model")}
    else:  # official checkpoint: a bare Sam state dict
        if encoder is None:
            encoder = infer_official_encoder(ckpt)
        cfg, state, extra = ModelConfig(encoder=encoder), ckpt, {"official": True}
    sam = build_sam(cfg)
    sam.load_state_dict(state)
    sam.eval()
    return sam, cfg, extra


def infer_official_encoder(state: Dict[str, torch.Tensor]) -> str:
    """Tell vit_b/l/h apart by the patch embedding width of an official state dict."""
    width = state["image_encoder.patch_embed.proj.weight"].shape[0]
    for name, vit in VIT_CONFIGS.items():
        if vit["embed_dim"] == width:
            return name
    raise ValueError(f"unknown image encoder width {width}; pass the encoder name explicitly")


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
