"""CrossFuse networks, with the module names of the official release (``hli1221/CrossFuse``).

Two objects are saved and loaded, each under the official state-dict layout so that the published files load
with ``strict=True`` and no key map:

* :class:`AutoEncoder` -- one per modality (official ``Auto_Encoder_single``): ``fea_encoder1`` (encoder,
  1,125,312 parameters) and ``recon_decoder1`` (reconstruction decoder, used only in training stage 1);
* :class:`FusionNet` -- the second-stage network (official ``Trans_FuseNet``): ``cross_atten_block`` (the
  cross-attention mechanism, CAM), ``decoder_fusion`` (fusion decoder) and ``conv_gra`` (a fixed Laplacian
  kept only because it is in the official state dict; the official forward never uses it).

No layer of the auto-encoders has an activation or normalisation (the official ``ConvLayer`` is reflection
padding + convolution; its BatchNorm is commented out); max pooling is their only non-linearity. The fusion
decoder's convolutions are each followed by BatchNorm (no activation either).

Shapes for an H x W input (float in [0, 1]; the official code divides its 0..255 input by 255 first):
shallow features ``sh``: 32 x H x W; deep features ``de``: 128 x H/8 x W/8 (three 2x2 max pools, floor).
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

EPSILON = 1e-6  # the official EPSILON / EXP constants

SHALLOW_CHANNELS = 32
DEEP_CHANNELS = 128


# ------------------------------------------------------------------------------------------- helpers
def reflect_pad(x: torch.Tensor, left: int, right: int, top: int, bottom: int) -> torch.Tensor:
    """Reflection padding of any amount.

    Identical to ``nn.ReflectionPad2d`` whenever that is defined (every pad smaller than the side); larger
    pads, which the official code cannot do (it raises), repeat the reflection about the new border; a side of
    one pixel is replicated.
    """
    pads = [left, right, top, bottom]
    if min(pads) < 0:
        raise ValueError(f"negative padding {pads}")
    while any(pads):
        h, w = x.shape[-2:]
        step_w, step_h = max(w - 1, 0), max(h - 1, 0)
        now = [min(pads[0], step_w), min(pads[1], step_w), min(pads[2], step_h), min(pads[3], step_h)]
        if not any(now):  # a one-pixel side cannot be reflected
            return F.pad(x, pads, mode="replicate")
        x = F.pad(x, now, mode="reflect")
        pads = [p - n for p, n in zip(pads, now, strict=True)]
    return x


def match_size(reference: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reflection-pad ``x`` to the spatial size of ``reference`` (official ``UpsampleReshape_eval``).

    The decoder output is 8 * floor(H / 8) high; the missing rows (0..7) are split as
    ``top = d // 2``, ``bottom = d - top`` (same for columns).
    """
    dh = reference.shape[-2] - x.shape[-2]
    dw = reference.shape[-1] - x.shape[-1]
    if dh == 0 and dw == 0:
        return x
    if dh < 0 or dw < 0:
        raise ValueError(f"cannot shrink {tuple(x.shape)} to {tuple(reference.shape)}")
    return reflect_pad(x, dw // 2, dw - dw // 2, dh // 2, dh - dh // 2)


def normalize_tensor(x: torch.Tensor) -> torch.Tensor:
    """Per image and channel ``(x - min) / (max - min + 1e-6)`` (official ``normalize_tensor``)."""
    flat = x.flatten(2)
    lo = flat.min(dim=2).values[..., None, None]
    hi = flat.max(dim=2).values[..., None, None]
    return (x - lo) / (hi - lo + EPSILON)


def to_tokens(x: torch.Tensor, patch: int) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """B x C x H x W -> B x N x (C * patch * patch) tokens (official ``PatchEmbed_tensor`` + flatten).

    The map is first reflection-padded at the bottom and right to a multiple of ``patch``; tokens are the
    patches in row-major order, each flattened as (channel, row, column).
    """
    b, c, h, w = x.shape
    x = reflect_pad(x, 0, (-w) % patch, 0, (-h) % patch)
    hn, wn = x.shape[-2] // patch, x.shape[-1] // patch
    tokens = x.reshape(b, c, hn, patch, wn, patch).permute(0, 2, 4, 1, 3, 5).reshape(b, hn * wn, -1)
    return tokens, (h, w, hn, wn)


def from_tokens(tokens: torch.Tensor, patch: int, geometry: tuple[int, int, int, int]) -> torch.Tensor:
    """Inverse of :func:`to_tokens` (official ``Recons_tensor``): back to B x C x H x W, padding cropped."""
    h, w, hn, wn = geometry
    b = tokens.shape[0]
    c = tokens.shape[-1] // (patch * patch)
    x = tokens.reshape(b, hn, wn, c, patch, patch).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c, hn * patch, wn * patch)[:, :, :h, :w]


def shift(x: torch.Tensor, amount: int) -> torch.Tensor:
    """Cyclic shift of a feature map by ``-amount`` rows and columns (the CAM's shift)."""
    return torch.roll(x, shifts=(-amount, -amount), dims=(2, 3))


def unshift(x: torch.Tensor, amount: int) -> torch.Tensor:
    return torch.roll(x, shifts=(amount, amount), dims=(2, 3))


def attention_weights(q: torch.Tensor, k: torch.Tensor, scale: float, reverse: bool) -> torch.Tensor:
    """``softmax(QK^T * scale)``, or with ``reverse`` the CAM's re-softmax ``softmax(-QK^T * scale)``."""
    scores = (q @ k.transpose(-2, -1)) * scale
    if reverse:
        scores = -scores
    return scores.softmax(dim=-1)


# -------------------------------------------------------------------------------------- auto-encoder
class ConvLayer(nn.Module):
    """Reflection padding (k // 2) and a k x k convolution with bias; BatchNorm in the fusion decoder only.

    Attribute names (``conv2d`` a Sequential, index 0 the convolution, 1 the BatchNorm) match the release.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, batch_norm: bool = False):
        super().__init__()
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel_size, 1)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        self.conv2d = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2d(self.reflection_pad(x))


class DenseConvLayer(ConvLayer):
    """A dense-block convolution: its output is concatenated to its input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, super().forward(x)], dim=1)


class DenseBlock(nn.Module):
    """Three dense 3x3 convolutions (growth 64) and an ``adjust_conv`` 3x3 back to ``out_channels``."""

    def __init__(self, in_channels: int, growth: int = 64, layers: int = 3, out_channels: int = 128):
        super().__init__()
        self.num_layers = layers
        for i in range(layers):
            self.add_module(f"dense_conv{i}", DenseConvLayer(in_channels + i * growth, growth))
        self.adjust_conv = ConvLayer(in_channels + layers * growth, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.num_layers):
            x = getattr(self, f"dense_conv{i}")(x)
        return self.adjust_conv(x)


class Encoder(nn.Module):
    """conv1 (1 -> 32, full resolution) = shallow features; max pool, DB(32 -> 128), max pool, DB(128 -> 128),
    max pool = deep features at 1/8 resolution."""

    def __init__(self, in_channels: int = 1) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(2, 2)
        self.conv1 = ConvLayer(in_channels, SHALLOW_CHANNELS)
        self.dense_blocks = nn.Sequential(
            DenseBlock(SHALLOW_CHANNELS, 64, 3, DEEP_CHANNELS),
            nn.MaxPool2d(2, 2),
            DenseBlock(DEEP_CHANNELS, 64, 3, DEEP_CHANNELS),
            nn.MaxPool2d(2, 2),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shallow = self.conv1(x)
        return shallow, self.dense_blocks(self.pool(shallow))


class ReconstructionDecoder(nn.Module):
    """Stage-1 decoder (official ``Decoder_rec``): conv 128->64, up, conv 64->64, up, conv 64->32, up,
    + shallow features (skip), 1x1 conv 32 -> 1."""

    def __init__(self, in_channels: int = DEEP_CHANNELS, out_channels: int = 1) -> None:
        super().__init__()
        half, quarter = in_channels // 2, in_channels // 4
        self.up = nn.Upsample(scale_factor=2)
        self.conv1 = ConvLayer(in_channels, half)
        self.conv_block = nn.Sequential(
            ConvLayer(half, half),
            nn.Upsample(scale_factor=2),
            ConvLayer(half, quarter),
            nn.Upsample(scale_factor=2),
        )
        self.conv_last = ConvLayer(quarter, out_channels, kernel_size=1)

    def forward(self, shallow: torch.Tensor, deep: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(self.up(self.conv1(deep)))
        return self.conv_last(match_size(shallow, out) + shallow)


class AutoEncoder(nn.Module):
    """One modality's auto-encoder (official ``Auto_Encoder_single``); inputs and outputs in [0, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.fea_encoder1 = Encoder(1)
        self.recon_decoder1 = ReconstructionDecoder(DEEP_CHANNELS, 1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(shallow 32 x H x W, deep 128 x H/8 x W/8) features of N x 1 x H x W images in [0, 1]."""
        return self.fea_encoder1(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction (stage 1); the official code multiplies it by 255 to compare with 0..255 inputs."""
        shallow, deep = self.fea_encoder1(x)
        return self.recon_decoder1(shallow, deep)


# ------------------------------------------------------------------------------ cross-attention (CAM)
class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int, p: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Attention(nn.Module):
    """Multi-head attention over tokens. ``cross=False``: self-attention, one ``qkv`` projection.

    ``cross=True``: query from the first input, key and value from the second and third (separate
    ``q_linear`` / ``k_linear`` / ``v_linear``), weights by the **re-softmax** ``softmax(-QK^T / sqrt(d))``,
    d the head dimension. The release also creates ``qkv`` in cross mode and never uses it; it is kept for
    the state dict.
    """

    def __init__(
        self,
        dim: int,
        n_heads: int = 16,
        qkv_bias: bool = True,
        attn_p: float = 0.0,
        proj_p: float = 0.0,
        cross: bool = False,
    ) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim {dim} is not a multiple of n_heads {n_heads}")
        self.n_heads = n_heads
        self.dim = dim
        self.head_dim = dim // n_heads
        self.scale = self.head_dim**-0.5
        self.cross = cross
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        if cross:
            self.q_linear = nn.Linear(dim, dim, bias=qkv_bias)
            self.k_linear = nn.Linear(dim, dim, bias=qkv_bias)
            self.v_linear = nn.Linear(dim, dim, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_p)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_p)
        #: set to True to keep the last attention weights in ``last_weights`` (tests, visualisation)
        self.keep_weights = False
        self.last_weights: torch.Tensor | None = None

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.reshape(b, n, self.n_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        if self.cross:
            assert isinstance(x, list | tuple)
            q = self._heads(self.q_linear(x[0]))
            k = self._heads(self.k_linear(x[1]))
            v = self._heads(self.v_linear(x[2]))
            b, n = x[0].shape[:2]
        else:
            assert isinstance(x, torch.Tensor)
            b, n, _ = x.shape
            qkv = self.qkv(x).reshape(b, n, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
        weights = attention_weights(q, k, self.scale, reverse=self.cross)
        if self.keep_weights:
            self.last_weights = weights.detach()
        out = (self.attn_drop(weights) @ v).transpose(1, 2).reshape(b, n, self.dim)
        return self.proj_drop(self.proj(out))


class Block(nn.Module):
    """Pre-norm transformer block. Cross mode takes [x_q, x_k, x_v], normalises all three with ``norm1``,
    adds the attention to the *un-normalised* x_v, and returns [norm1(x_q), out, out]."""

    def __init__(
        self,
        dim: int,
        n_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        p: float = 0.0,
        attn_p: float = 0.0,
        cross: bool = False,
    ) -> None:
        super().__init__()
        self.cross = cross
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, n_heads, qkv_bias, attn_p, p, cross)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLP(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor | list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        if self.cross:
            normed = [self.norm1(t) for t in x]
            out = x[2] + self.attn(normed)
            out = out + self.mlp(self.norm2(out))
            return [normed[0], out, out]
        assert isinstance(x, torch.Tensor)
        out = x + self.attn(self.norm1(x))
        return out + self.mlp(self.norm2(out))


class SelfAttentionStack(nn.Module):
    """Official ``self_atten_module``: ``depth`` self-attention blocks. Its ``norm`` is never applied
    (kept for the state dict)."""

    def __init__(
        self, dim: int, depth: int, n_heads: int, mlp_ratio: float, qkv_bias: bool, p: float, attn_p: float
    ) -> None:
        super().__init__()
        self.pos_drop = nn.Dropout(p)
        self.blocks = nn.ModuleList(
            Block(dim, n_heads, mlp_ratio, qkv_bias, p, attn_p, cross=False) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pos_drop(x)
        for block in self.blocks:
            x = block(x)  # type: ignore[assignment]
        return x


class CrossAttentionStack(nn.Module):
    """Official ``cross_atten_module``: query tokens from ``x1``, key/value tokens from ``x2``; after every
    block the value stream is normalised with ``norm``."""

    def __init__(
        self, dim: int, depth: int, n_heads: int, mlp_ratio: float, qkv_bias: bool, p: float, attn_p: float
    ) -> None:
        super().__init__()
        self.pos_drop = nn.Dropout(p)
        self.blocks = nn.ModuleList(
            Block(dim, n_heads, mlp_ratio, qkv_bias, p, attn_p, cross=True) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        x2 = self.pos_drop(x2)
        x: list[torch.Tensor] = [x1, x2, x2]
        for block in self.blocks:
            x = block(x)  # type: ignore[assignment]
            x[2] = self.norm(x[2])
        return x[2]


class SelfAttentionPair(nn.Module):
    """Official ``self_atten``: one self-attention stack per modality on 2x2-patch tokens of feature maps."""

    def __init__(
        self,
        patch: int,
        dim: int,
        depth: int,
        n_heads: int,
        mlp_ratio: float,
        qkv_bias: bool,
        p: float,
        attn_p: float,
    ) -> None:
        super().__init__()
        self.patch = patch
        self.self_atten1 = SelfAttentionStack(dim, depth, n_heads, mlp_ratio, qkv_bias, p, attn_p)
        self.self_atten2 = SelfAttentionStack(dim, depth, n_heads, mlp_ratio, qkv_bias, p, attn_p)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t1, geometry = to_tokens(x1, self.patch)
        t2, _ = to_tokens(x2, self.patch)
        return (
            from_tokens(self.self_atten1(t1), self.patch, geometry),
            from_tokens(self.self_atten2(t2), self.patch, geometry),
        )


class CrossAttentionPair(nn.Module):
    """Official ``cross_atten``: ``cross_atten1(ir -> vi) + cross_atten2(vi -> ir)``, as a feature map."""

    def __init__(
        self,
        patch: int,
        dim: int,
        depth: int,
        n_heads: int,
        mlp_ratio: float,
        qkv_bias: bool,
        p: float,
        attn_p: float,
    ) -> None:
        super().__init__()
        self.patch = patch
        self.cross_atten1 = CrossAttentionStack(dim, depth, n_heads, mlp_ratio, qkv_bias, p, attn_p)
        self.cross_atten2 = CrossAttentionStack(dim, depth, n_heads, mlp_ratio, qkv_bias, p, attn_p)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        t1, geometry = to_tokens(x1, self.patch)
        t2, _ = to_tokens(x2, self.patch)
        fused = self.cross_atten1(t1, t2) + self.cross_atten2(t2, t1)
        return from_tokens(fused, self.patch, geometry)


class CrossAttentionMechanism(nn.Module):
    """The CAM (official ``cross_encoder``), on one pair of deep feature maps (one 32x32 tile at test time):

    1. self-attention per modality (``self_atten_block1``);
    2. with ``shift``: cyclic shift by ``tile // 2`` (16) rows and columns, self-attention again
       (``self_atten_block2``), shift back; without: ``self_atten_block2`` on the unshifted maps;
    3. cross-attention with re-softmax in both directions, summed (``cross_atten_block``).
    """

    def __init__(
        self,
        tile: int = 32,
        patch: int = 2,
        dim: int = DEEP_CHANNELS * 4,
        depth_self: int = 1,
        depth_cross: int = 1,
        n_heads: int = 16,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        p: float = 0.0,
        attn_p: float = 0.0,
    ) -> None:
        super().__init__()
        self.shift_size = tile // 2
        self.depth_cross = depth_cross
        args = (patch, dim, depth_self, n_heads, mlp_ratio, qkv_bias, p, attn_p)
        self.self_atten_block1 = SelfAttentionPair(*args)
        self.self_atten_block2 = SelfAttentionPair(*args)
        self.cross_atten_block = CrossAttentionPair(patch, dim, depth_cross, n_heads, mlp_ratio, qkv_bias, p, attn_p)

    def forward(self, ir: torch.Tensor, vi: torch.Tensor, shift_flag: bool = True) -> torch.Tensor:
        ir, vi = self.self_atten_block1(ir, vi)
        if shift_flag:
            s = self.shift_size
            ir, vi = self.self_atten_block2(shift(ir, s), shift(vi, s))
            ir, vi = unshift(ir, s), unshift(vi, s)
        else:
            ir, vi = self.self_atten_block2(ir, vi)
        if self.depth_cross > 0:
            return self.cross_atten_block(ir, vi)
        return ir + vi


# ---------------------------------------------------------------------------------- fusion decoder
def _fixed_conv(channels: int, kernel: torch.Tensor) -> nn.Conv2d:
    """A bias-free, zero-padded, non-trainable convolution whose every (out, in) kernel is ``kernel``.

    Note that it sums over *all* input channels (the release repeats one kernel over the full channel matrix;
    it is not a depthwise filter).
    """
    conv = nn.Conv2d(channels, channels, kernel.shape[-1], stride=1, padding=kernel.shape[-1] // 2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(kernel.expand(channels, channels, *kernel.shape))
    conv.requires_grad_(False)
    return conv


class ActivityWeights(nn.Module):
    """Official ``Weight``: fixed 3x3 mean filters (``conv_sh`` over the 32 shallow channels, ``conv_de`` over
    the 128 deep channels) giving the detached per-pixel weights of the decoder's two skip connections."""

    def __init__(self, shallow_channels: int = SHALLOW_CHANNELS, deep_channels: int = DEEP_CHANNELS) -> None:
        super().__init__()
        box = torch.full((3, 3), 1.0 / 9.0)
        self.conv_sh = _fixed_conv(shallow_channels, box)
        self.conv_de = _fixed_conv(deep_channels, box)

    @staticmethod
    def _ratio(gx: torch.Tensor, gy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        total = gx + gy + EPSILON
        return (gx / total).detach(), (gy / total).detach()

    def shallow(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Detail activity ``|x - conv_sh(x)|`` (written sqrt of the square), normalised over x, y."""
        return self._ratio(torch.sqrt((x - self.conv_sh(x)) ** 2), torch.sqrt((y - self.conv_sh(y)) ** 2))

    def deep(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Local mean ``conv_de(x)`` (may be negative: no activation in the encoder), normalised over x, y."""
        return self._ratio(self.conv_de(x), self.conv_de(y))


class FusionDecoder(nn.Module):
    """Official ``Decoder_fusion``: fused deep features + weighted deep skips -> conv 128->64, up,
    conv 64->64, up, conv 64->32, up, conv 32->32 -> + weighted shallow skips -> 1x1 conv 32->1 (every conv
    with BatchNorm).

    The shallow skip adds ``ir_scale * w_ir * ir_sh + w_vi * vi_sh`` with ``ir_scale = 0.5`` in the release.
    """

    def __init__(self, in_channels: int = DEEP_CHANNELS, out_channels: int = 1, ir_scale: float = 0.5) -> None:
        super().__init__()
        half, quarter = in_channels // 2, in_channels // 4
        self.ir_scale = float(ir_scale)
        self.up = nn.Upsample(scale_factor=2)
        self.conv1 = ConvLayer(in_channels, half, batch_norm=True)
        self.conv_block = nn.Sequential(
            ConvLayer(half, half, batch_norm=True),
            nn.Upsample(scale_factor=2),
            ConvLayer(half, quarter, batch_norm=True),
            nn.Upsample(scale_factor=2),
            ConvLayer(quarter, quarter, batch_norm=True),
        )
        self.conv_last = ConvLayer(quarter, out_channels, kernel_size=1, batch_norm=True)
        self.weight = ActivityWeights(quarter, in_channels)

    def forward(
        self,
        ir_sh: torch.Tensor,
        vi_sh: torch.Tensor,
        ir_de: torch.Tensor,
        vi_de: torch.Tensor,
        fused: torch.Tensor,
    ) -> torch.Tensor:
        w_ir, w_vi = self.weight.deep(ir_de, vi_de)
        out = fused + w_ir * ir_de + w_vi * vi_de
        out = self.conv_block(self.up(self.conv1(out)))
        out = match_size(ir_sh, out)
        s_ir, s_vi = self.weight.shallow(ir_sh, vi_sh)
        out = out + self.ir_scale * s_ir * ir_sh + s_vi * vi_sh
        return self.conv_last(out)


class FusionNet(nn.Module):
    """Second-stage network (official ``Trans_FuseNet`` with img_size 32, patch 2, depth_self 1,
    depth_cross 1, 16 heads, mlp_ratio 4, qkv_bias, no dropout): CAM + fusion decoder."""

    def __init__(
        self,
        tile: int = 32,
        patch: int = 2,
        depth_self: int = 1,
        depth_cross: int = 1,
        n_heads: int = 16,
        mlp_ratio: float = 4.0,
        ir_scale: float = 0.5,
    ) -> None:
        super().__init__()
        self.tile = tile
        dim = DEEP_CHANNELS * patch * patch  # 512
        self.cross_atten_block = CrossAttentionMechanism(
            tile, patch, dim, depth_self, depth_cross, n_heads, mlp_ratio, True, 0.0, 0.0
        )
        laplacian = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
        self.conv_gra = _fixed_conv(SHALLOW_CHANNELS, laplacian)  # in the state dict, unused by the release
        self.decoder_fusion = FusionDecoder(DEEP_CHANNELS, 1, ir_scale)

    def cam(self, ir_de: torch.Tensor, vi_de: torch.Tensor, shift_flag: bool) -> torch.Tensor:
        """The CAM on whole feature maps (the release's training path)."""
        return self.cross_atten_block(ir_de, vi_de, shift_flag)

    def cam_tiled(self, ir_de: torch.Tensor, vi_de: torch.Tensor, shift_flag: bool) -> torch.Tensor:
        """The CAM at test time: feature maps reflection-padded (bottom, right) to a multiple of ``tile``
        (32), cut into tile x tile pieces, each fused on its own (batched here, one by one in the release),
        put back together and cropped."""
        b, c, h, w = ir_de.shape
        t = self.tile
        pad_h, pad_w = (-h) % t, (-w) % t
        hn, wn = (h + pad_h) // t, (w + pad_w) // t

        def tiles(x: torch.Tensor) -> torch.Tensor:
            x = reflect_pad(x, 0, pad_w, 0, pad_h)
            return x.reshape(b, c, hn, t, wn, t).permute(0, 2, 4, 1, 3, 5).reshape(b * hn * wn, c, t, t)

        fused = self.cross_atten_block(tiles(ir_de), tiles(vi_de), shift_flag)
        fused = fused.reshape(b, hn, wn, c, t, t).permute(0, 3, 1, 4, 2, 5).reshape(b, c, hn * t, wn * t)
        return fused[:, :, :h, :w]

    def decode(
        self,
        ir_sh: torch.Tensor,
        vi_sh: torch.Tensor,
        ir_de: torch.Tensor,
        vi_de: torch.Tensor,
        fused: torch.Tensor,
    ) -> torch.Tensor:
        """Decoder output min-max normalised per image to [0, 1) (the release then multiplies by 255)."""
        return normalize_tensor(self.decoder_fusion(ir_sh, vi_sh, ir_de, vi_de, fused))

    def forward(
        self,
        ir_sh: torch.Tensor,
        vi_sh: torch.Tensor,
        ir_de: torch.Tensor,
        vi_de: torch.Tensor,
        shift_flag: bool = True,
        tiled: bool = True,
    ) -> torch.Tensor:
        fused = (self.cam_tiled if tiled else self.cam)(ir_de, vi_de, shift_flag)
        return self.decode(ir_sh, vi_sh, ir_de, vi_de, fused)


# ----------------------------------------------------------------------------------- bookkeeping
def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def _unused_cam_parameter(name: str) -> bool:
    """The release's CAM parameters its forward never reads: the ``qkv`` of the cross-attention blocks and the
    final ``norm`` of the self-attention stacks."""
    return (name.startswith("cross_atten_block.") and ".attn.qkv." in name) or (
        name.startswith("self_atten_block") and re.search(r"self_atten[12]\.norm\.", name) is not None
    )


def parameter_counts(auto_encoder: AutoEncoder, fusion: FusionNet) -> dict[str, int]:
    """Parameter counts of the parts: every parameter of the state dict (fixed filters and parameters the
    forward never reads included), except ``cam_used`` (without the unused ones) and ``decoder_trainable``
    (without the fixed mean filters)."""
    decoder = fusion.decoder_fusion
    return {
        "encoder": count_parameters(auto_encoder.fea_encoder1),
        "reconstruction_decoder": count_parameters(auto_encoder.recon_decoder1),
        "cam": count_parameters(fusion.cross_atten_block),
        "cam_used": sum(
            p.numel() for name, p in fusion.cross_atten_block.named_parameters() if not _unused_cam_parameter(name)
        ),
        "decoder": count_parameters(decoder),
        "decoder_trainable": count_parameters(decoder, trainable_only=True),
        "fusion_net": count_parameters(fusion),
    }
