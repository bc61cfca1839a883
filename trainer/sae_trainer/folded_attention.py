"""SAM's mask decoder with its cross-attention projections folded onto the prompt tokens.

The same function as the official decoder (up to float rounding, ~1e-5 in the logits), with 0.57
of its multiply-adds for one click (the cross attentions' 2.7 of 3.5 GFLOP shrink to 1.2; the
upscaling's 0.8 stays): what makes a click fast enough in the browser (issue #23).

Each cross attention of SAM's two-way transformer joins a handful of tokens (5 output tokens plus
the prompt's points, 7 for one click) with the 4,096 cells of the 64x64 image embedding, and the
official module projects every cell: keys and values (token -> image) or queries and the output
(image -> token), each a 4096 x 256 x 128 product. Those projections are linear, so they can be
applied to the few tokens instead (8 heads x 7 tokens = 56 rows instead of 128 columns):

  token -> image, per head h:  q.(W_k x + b_k) = (W_k^T q).x + q.b_k   (q.b_k: constant per row of
                               the softmax, which ignores it)
                               sum_i a_i (W_v x_i + b_v) = W_v (sum_i a_i x_i) + b_v   (sum_i a_i = 1)
  image -> token, per head h:  (W_q x + b_q).k = x.(W_q^T k) + b_q.k
                               W_o (sum_t a_t v_t) = sum_t a_t (W_o v_t)

so the 4,096-row products shrink from 128 to 8 x tokens columns. With more than 10 points in a
prompt (16 tokens) the folded form does more work than the official one; clicks rarely get there.
The weights are the official modules' own: `fold_attention` wraps them, it trains nothing.
"""

from __future__ import annotations

import copy
import math

import torch
from segment_anything.modeling import Sam
from segment_anything.modeling.transformer import Attention
from torch import nn


def _heads(attention: Attention) -> tuple[int, int, int]:
    heads = attention.num_heads
    return heads, attention.internal_dim // heads, attention.embedding_dim


class TokenToImageAttention(nn.Module):
    """`attention(q=tokens, k=image + pe, v=image)` with the key and value projections on the tokens."""

    def __init__(self, attention: Attention) -> None:
        super().__init__()
        self.attention = attention

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        a = self.attention
        heads, d, c = _heads(a)
        b, n = q.shape[0], q.shape[1]
        q = a.q_proj(q).reshape(b, n, heads, d).transpose(1, 2)  # B, H, N, d
        # Each head's query taken back through its key projection: B, H, N, C.
        keys_side = (q @ a.k_proj.weight.reshape(heads, d, c)) / math.sqrt(d)
        scores = keys_side.reshape(b, heads * n, c) @ k.transpose(1, 2)  # B, H*N, cells
        pooled = torch.softmax(scores, dim=-1) @ v  # B, H*N, C: attention-weighted image cells
        out = pooled.reshape(b, heads, n, c) @ a.v_proj.weight.reshape(heads, d, c).transpose(1, 2)
        out = out + a.v_proj.bias.reshape(heads, 1, d)
        return a.out_proj(out.transpose(1, 2).reshape(b, n, heads * d))


class ImageToTokenAttention(nn.Module):
    """`attention(q=image + pe, k=tokens + pe, v=tokens)` with the query and output projections on the tokens."""

    def __init__(self, attention: Attention) -> None:
        super().__init__()
        self.attention = attention

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        a = self.attention
        heads, d, c = _heads(a)
        b, cells, n = q.shape[0], q.shape[1], k.shape[1]
        k = a.k_proj(k).reshape(b, n, heads, d).transpose(1, 2)  # B, H, N, d
        v = a.v_proj(v).reshape(b, n, heads, d).transpose(1, 2)
        # Each head's key taken back through the query projection, and the query bias's share.
        queries_side = (k @ a.q_proj.weight.reshape(heads, d, c)) / math.sqrt(d)  # B, H, N, C
        bias = (k * a.q_proj.bias.reshape(heads, 1, d)).sum(-1) / math.sqrt(d)  # B, H, N
        scores = q @ queries_side.reshape(b, heads * n, c).transpose(1, 2) + bias.reshape(b, 1, heads * n)
        weights = torch.softmax(scores.reshape(b, cells, heads, n), dim=-1).reshape(b, cells, heads * n)
        # Each head's values taken through its block of the output projection: B, H, N, C.
        values_out = v @ a.out_proj.weight.t().reshape(heads, d, c)
        return weights @ values_out.reshape(b, heads * n, c) + a.out_proj.bias


def fold_attention(sam: Sam) -> Sam:
    """A copy of `sam` whose decoder computes its cross attentions in the folded form."""
    folded = copy.deepcopy(sam)
    transformer = folded.mask_decoder.transformer
    for layer in transformer.layers:
        layer.cross_attn_token_to_image = TokenToImageAttention(layer.cross_attn_token_to_image)
        layer.cross_attn_image_to_token = ImageToTokenAttention(layer.cross_attn_image_to_token)
    transformer.final_attn_token_to_image = TokenToImageAttention(transformer.final_attn_token_to_image)
    return folded
