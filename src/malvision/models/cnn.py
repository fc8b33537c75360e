"""Convolutional models: ``cnn`` (small, fast) and ``resnet`` (deeper, residual), trained from scratch.

Images (B, 1, S, S) go through 2-D convolutions. Sequences (bytes, opcode ids) are embedded and go
through the same layers in 1-D: a patchify stem (kernel = stride = ``stem_stride``, like MalConv's
windows, so long inputs shrink at once), then conv/pool stages over time and a global pool. We chose
1-D over drawing ids as a 2-D grid: a grid's row width is arbitrary, so vertical neighbours mean
nothing, while 1-D convolutions see true n-grams of bytes/instructions.

Padding (id 0, always at the right) never changes a real sample's output in eval mode: padded steps
are zeroed after every activation (so they equal the convs' own zero padding), pools use
``ceil_mode`` with windows aligned at step 0, and the global pool skips them.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from malvision.models._base import (
    GLOBAL_POOLS,
    MalvisionModel,
    apply_mask,
    check_choice,
    check_positive,
    downsample_mask,
    global_pool,
    int_tuple,
    layers_for,
    pad_to_multiple,
)
from malvision.models._registry import BYTE_KINDS, register_model

__all__ = ["CNN", "ResNet"]


class _SeqStem(nn.Module):
    """Patchify stem for sequences: (B, L, E) -> (B, C, ceil(L / stride)) with conv-BN-ReLU."""

    def __init__(self, embed_dim: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv1d(embed_dim, out_ch, stride, stride=stride, bias=False)
        self.bn = nn.BatchNorm1d(out_ch)
        self.act = nn.ReLU()

    def forward(self, e: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
        x = apply_mask(e.transpose(1, 2), mask)
        x, mask = pad_to_multiple(x, mask, self.stride)
        mask = downsample_mask(mask, self.stride)
        return apply_mask(self.act(self.bn(self.conv(x))), mask), mask


@register_model("cnn")
class CNN(MalvisionModel):
    """Small fast CNN: conv-BN-ReLU-maxpool blocks, global pool, one linear layer."""

    input_kinds = (*BYTE_KINDS, "views")

    def __init__(
        self,
        *,
        in_kind: str,
        n_classes: int,
        vocab_size: int | None = None,
        channels: Sequence[int] = (16, 32, 64, 128),
        kernel_size: int = 3,
        embed_dim: int = 16,
        stem_stride: int = 4,
        global_pool: str = "avgmax",
        dropout: float = 0.1,
        image_stride: int = 1,
    ) -> None:
        super().__init__(in_kind=in_kind, n_classes=n_classes, vocab_size=vocab_size)
        channels = int_tuple("cnn", "channels", channels)
        check_positive(
            "cnn",
            kernel_size=kernel_size,
            embed_dim=embed_dim,
            stem_stride=stem_stride,
            image_stride=image_stride,
        )
        check_choice("cnn", "global_pool", global_pool, GLOBAL_POOLS)
        self.pool_mode = global_pool
        dim = 1 if self.is_sequence else 2
        conv, bn, pool = layers_for(dim)
        self._init_embedding(embed_dim)
        self.stem = _SeqStem(embed_dim, channels[0], stem_stride) if self.is_sequence else None
        # pictures: a patchify stem (kernel = stride = image_stride) lets a large plot shrink at once
        self.image_stem = (
            nn.Sequential(
                nn.Conv2d(self.in_chans, channels[0], image_stride, stride=image_stride, bias=False),
                nn.BatchNorm2d(channels[0]),
                nn.ReLU(),
            )
            if image_stride > 1 and not self.is_sequence
            else None
        )
        in_ch = channels[0] if self.is_sequence or self.image_stem is not None else self.in_chans
        self.blocks = nn.ModuleList()
        for ch in channels:
            self.blocks.append(
                nn.ModuleDict(
                    {
                        "conv": conv(in_ch, ch, kernel_size, padding=kernel_size // 2, bias=False),
                        "bn": bn(ch),
                        "act": nn.ReLU(),
                        "pool": pool(2, 2, ceil_mode=True),
                    }
                )
            )
            in_ch = ch
        self._init_head(in_ch * (2 if global_pool == "avgmax" else 1), dropout)

    def _feature_map(self, e: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
        x = e
        if self.stem is not None:
            x, mask = self.stem(e, mask)
        elif self.image_stem is not None:
            x = self.image_stem(e)
        for b in self.blocks:
            x = apply_mask(b["act"](b["bn"](b["conv"](x))), mask)
            x = b["pool"](x)
            mask = downsample_mask(mask, 2)
        return x, mask

    def features_embedded(self, e: Tensor, mask: Tensor | None = None) -> Tensor:
        return global_pool(*self._feature_map(e, mask), self.pool_mode)

    def cam_layer(self) -> nn.Module:
        return self.blocks[-1]["act"]


class _BasicBlock(nn.Module):
    """ResNet basic block (two 3-wide convs + shortcut), 1-D or 2-D, masking padded steps."""

    def __init__(self, dim: int, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        conv, bn, _ = layers_for(dim)
        self.stride = stride
        self.conv1 = conv(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = bn(out_ch)
        self.conv2 = conv(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = bn(out_ch)
        self.act1 = nn.ReLU()
        self.act2 = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(conv(in_ch, out_ch, 1, stride=stride, bias=False), bn(out_ch))

    def forward(self, x: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
        mask = downsample_mask(mask, self.stride)
        out = apply_mask(self.act1(self.bn1(self.conv1(x))), mask)
        out = self.bn2(self.conv2(out))
        return apply_mask(self.act2(out + self.shortcut(x)), mask), mask


@register_model("resnet")
class ResNet(MalvisionModel):
    """Residual CNN (basic blocks, stride-2 stages) trained from scratch, global pool, linear layer."""

    input_kinds = (*BYTE_KINDS, "views")

    def __init__(
        self,
        *,
        in_kind: str,
        n_classes: int,
        vocab_size: int | None = None,
        channels: Sequence[int] = (16, 32, 64, 128),
        depths: Sequence[int] = (2, 2, 2, 2),
        embed_dim: int = 16,
        stem_stride: int = 4,
        global_pool: str = "avgmax",
        dropout: float = 0.1,
    ) -> None:
        super().__init__(in_kind=in_kind, n_classes=n_classes, vocab_size=vocab_size)
        channels = int_tuple("resnet", "channels", channels)
        depths = int_tuple("resnet", "depths", depths)
        if len(depths) != len(channels):
            raise ValueError(f"channels ({len(channels)}) and depths ({len(depths)}) differ in length")
        check_positive("resnet", embed_dim=embed_dim, stem_stride=stem_stride)
        check_choice("resnet", "global_pool", global_pool, GLOBAL_POOLS)
        self.pool_mode = global_pool
        self._init_embedding(embed_dim)
        if self.is_sequence:
            self.stem: nn.Module = _SeqStem(embed_dim, channels[0], stem_stride)
        else:  # stride 2: 64x64 -> 32x32, 224 -> 112
            self.stem = nn.Sequential(
                nn.Conv2d(self.in_chans, channels[0], 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(channels[0]),
                nn.ReLU(),
            )
        dim = 1 if self.is_sequence else 2
        self.blocks = nn.ModuleList()
        in_ch = channels[0]
        for i, (ch, depth) in enumerate(zip(channels, depths, strict=True)):
            for j in range(depth):
                self.blocks.append(_BasicBlock(dim, in_ch, ch, 2 if i > 0 and j == 0 else 1))
                in_ch = ch
        self._init_head(in_ch * (2 if global_pool == "avgmax" else 1), dropout)

    def features_embedded(self, e: Tensor, mask: Tensor | None = None) -> Tensor:
        if self.is_sequence:
            x, mask = self.stem(e, mask)
        else:
            x, mask = self.stem(e), None
        for block in self.blocks:
            x, mask = block(x, mask)
        return global_pool(x, mask, self.pool_mode)

    def cam_layer(self) -> nn.Module:
        return self.blocks[-1].act2
