"""Restormer's transformer block (Zamir et al., CVPR 2022), as CDDFuse and ReFusion use it.

Module and parameter names follow the Restormer code both releases copy (``norm1.body.weight``, ``attn.qkv``,
``attn.qkv_dwconv``, ``attn.temperature``, ``ffn.project_in`` ...), so their state dicts load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _WithBiasLayerNorm(nn.Module):
    """Layer norm over the channels of each pixel: biased variance, eps 1e-5 inside the square root (Restormer's
    ``WithBias_LayerNorm``).

    Computed on the NCHW tensor (mean and variance over dim 1), as the release's arithmetic: ``F.layer_norm``
    needs the channels last, and the permuted copies, plus the channels-last activations they hand the
    convolutions, made a CDDFuse training step about 20% slower (benchmarks/README.md).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(1, keepdim=True)
        var = x.var(1, keepdim=True, unbiased=False)
        return (x - mu) / torch.sqrt(var + 1e-5) * self.weight[:, None, None] + self.bias[:, None, None]


class LayerNorm(nn.Module):
    """Holds the norm as ``body`` so that parameter names match the releases (``norm1.body.weight``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = _WithBiasLayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """``b (head c) h w -> b head c (h w)``."""
    b, c, h, w = t.shape
    return t.reshape(b, heads, c // heads, h * w)


def channel_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """Transposed (channel) attention per head: ``softmax(norm(q) norm(k)^T * temperature) v``, a
    (C/heads x C/heads) map over all pixels; inputs and output ``b head c (h w)``."""
    q = F.normalize(q, dim=-1)
    k = F.normalize(k, dim=-1)
    attn = (q @ k.transpose(-2, -1)) * temperature
    return attn.softmax(dim=-1) @ v


def self_attention(qkv: torch.Tensor, heads: int, temperature: torch.Tensor) -> torch.Tensor:
    """:func:`channel_attention` of the three thirds of ``qkv`` (``b 3c h w``), back to ``b c h w``."""
    b, c3, h, w = qkv.shape
    q, k, v = (split_heads(t, heads) for t in qkv.chunk(3, dim=1))
    return channel_attention(q, k, v, temperature).reshape(b, c3 // 3, h, w)


class MDTA(nn.Module):
    """Multi-Dconv-head transposed attention: 1x1 qkv, depth-wise 3x3, channel attention, 1x1 out; no bias."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, kernel_size=1, bias=False)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, kernel_size=3, padding=1, groups=dim * 3, bias=False)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project_out(self_attention(self.qkv_dwconv(self.qkv(x)), self.heads, self.temperature))


class GDFN(nn.Module):
    """Gated depth-wise feed-forward: 1x1 to 2 x hidden, 3x3 conv, GELU(x1) * x2, 1x1 back; no bias.

    The 3x3 conv has ``hidden * dw_groups_per_hidden`` groups: 2 (depth-wise) in the Restormer blocks; CDDFuse's
    Lite-Transformer ``Mlp`` uses 1 (two input channels per group), which changes the weight shape.
    """

    def __init__(self, dim: int, expansion: float, dw_groups_per_hidden: int = 2) -> None:
        super().__init__()
        hidden = int(dim * expansion)
        self.project_in = nn.Conv2d(dim, hidden * 2, kernel_size=1, bias=False)
        self.dwconv = nn.Conv2d(
            hidden * 2, hidden * 2, kernel_size=3, padding=1, groups=hidden * dw_groups_per_hidden, bias=False
        )
        self.project_out = nn.Conv2d(hidden, dim, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class TransformerBlock(nn.Module):
    """Restormer block: x + MDTA(LN(x)), then x + GDFN(LN(x))."""

    def __init__(self, dim: int, heads: int, expansion: float) -> None:
        super().__init__()
        self.norm1 = LayerNorm(dim)
        self.attn = MDTA(dim, heads)
        self.norm2 = LayerNorm(dim)
        self.ffn = GDFN(dim, expansion)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))
