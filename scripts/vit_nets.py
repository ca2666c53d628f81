"""Small vision transformers in torch, shared by ``scripts/export_vits.py`` (random-weight coverage exports) and
``scripts/train_vit.py`` (the ground-truth ViTs). Torch is used at build time only; blackbox-xai never imports it.

Layouts (each the shape peers and users meet in the wild, kept tiny so that the exports are tens of kB):

* :class:`ViT`: timm-style blocks (pre-norm, one ``qkv`` Linear reshaped to (B, N, 3, heads, head_dim) and permuted,
  ``softmax(q k^T * scale)`` over the keys, GELU MLP), patch embedding by a strided Conv, with ``extra`` leading
  tokens (1: a class token as in ViT; 2: class and distillation tokens as in DeiT; 0: global average pooling of the
  tokens) and a learned position embedding;
* :class:`MHAViT`: the same with ``nn.MultiheadAttention`` (``batch_first=True``) in each block;
* :class:`SwinLike`: a two-stage windowed model (channels-last (B, H, W, C) stages, attention inside
  non-overlapping windows, a patch-merging step between the stages, mean over the positions at the end).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class Attention(nn.Module):
    """timm's ``Attention``: qkv in one Linear, (B, N, 3, H, d) -> permute -> softmax(q k^T / sqrt(d)) v."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(x)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp: int, mha: bool = False) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.mha = mha
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True) if mha else Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        if self.mha:
            y = self.attn(y, y, y, need_weights=True)[0]
        else:
            y = self.attn(y)
        x = x + y
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """A small ViT: ``size`` (H, W) input, square ``patch``, ``extra`` leading tokens (0 = average pooling)."""

    def __init__(self, size: tuple[int, int] = (32, 48), patch: int = 8, dim: int = 32, depth: int = 2,
                 heads: int = 2, mlp: int = 64, classes: int = 5, extra: int = 1, mha: bool = False) -> None:
        super().__init__()
        self.extra = extra
        self.patch_embed = nn.Conv2d(3, dim, patch, stride=patch)
        tokens = (size[0] // patch) * (size[1] // patch)
        self.tokens = nn.Parameter(torch.randn(1, extra, dim) * 0.02) if extra else None
        self.pos_embed = nn.Parameter(torch.randn(1, tokens + extra, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp, mha) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)
        self.head_dist = nn.Linear(dim, classes) if extra == 2 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        if self.tokens is not None:
            x = torch.cat([self.tokens.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.norm(self.blocks(x + self.pos_embed))
        if self.extra == 0:
            return self.head(x.mean(dim=1))
        if self.head_dist is not None:  # DeiT: the mean of the class and distillation heads
            return (self.head(x[:, 0]) + self.head_dist(x[:, 1])) / 2
        return self.head(x[:, 0])


class WindowAttention(nn.Module):
    """Attention inside non-overlapping ``window`` x ``window`` windows of a (B, H, W, C) map."""

    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        self.window = window
        self.attn = Attention(dim, heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        s = self.window
        windows = x.reshape(b, h // s, s, w // s, s, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, s * s, c)
        windows = self.attn(windows)
        return windows.reshape(b, h // s, w // s, s, s, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)


class SwinBlock(nn.Module):
    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, window)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SwinLike(nn.Module):
    """Patch embedding (stride 4) to a channels-last grid, a windowed block, patch merging (2x2 -> 1, 4C -> 2C),
    a second windowed block, mean over the positions, a linear head."""

    def __init__(self, dim: int = 16, classes: int = 5, window: int = 2) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, 4, stride=4)
        self.stage1 = SwinBlock(dim, 2, window)
        self.merge_norm = nn.LayerNorm(4 * dim)
        self.merge = nn.Linear(4 * dim, 2 * dim)
        self.stage2 = SwinBlock(2 * dim, 2, window)
        self.norm = nn.LayerNorm(2 * dim)
        self.head = nn.Linear(2 * dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage1(self.patch_embed(x).permute(0, 2, 3, 1))
        b, h, w, c = x.shape
        x = x.reshape(b, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 4, 2, 5).reshape(b, h // 2, w // 2, 4 * c)
        x = self.stage2(self.merge(self.merge_norm(x)))
        return self.head(self.norm(x).mean(dim=(1, 2)))


def export(net: nn.Module, size: tuple[int, int], path: Any, opset: int = 17) -> None:
    """TorchScript-based export (``dynamo=False``: the dynamo exporter needs onnxscript), input ``input`` with a
    dynamic batch axis, output ``logits``, weights inside the file."""
    net.eval()
    example = torch.randn(1, 3, *size)
    torch.onnx.export(net, (example,), str(path), dynamo=False, opset_version=opset, input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      do_constant_folding=True)
