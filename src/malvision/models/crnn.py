"""``crnn``: a convolutional front end that shortens and enriches the input, then a GRU (or LSTM).

Sequences: embed, then conv-BN-ReLU-maxpool blocks over time, each pooling by ``conv_pool`` (default
3 blocks of 2: the recurrent layer sees 1/8 as many steps), then the recurrent layer, a pool over its
states and a linear layer. Images: the same blocks in 2-D; the feature map is averaged over its
columns so each remaining row band (file order, top to bottom) is one step.

Padding is masked as in ``cnn`` (zeroed after each activation, ceil-mode pools aligned at step 0) and
the recurrent part is exact under right padding (see ``rnn``), so padding never changes a real
sample's output in eval mode.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from malvision.models._base import (
    MalvisionModel,
    apply_mask,
    check_choice,
    check_positive,
    downsample_mask,
    int_tuple,
    layers_for,
)
from malvision.models._registry import BYTE_KINDS, register_model
from malvision.models.rnn import POOLS, RecurrentLayers, RecurrentReadout

__all__ = ["CRNN"]


@register_model("crnn")
class CRNN(RecurrentReadout, MalvisionModel):
    """Conv front end (shortens the sequence) feeding a GRU or LSTM, pooled over time, linear layer."""

    input_kinds = BYTE_KINDS

    def __init__(
        self,
        *,
        in_kind: str,
        n_classes: int,
        vocab_size: int | None = None,
        embed_dim: int = 32,
        channels: Sequence[int] = (32, 64, 128),
        kernel_size: int = 3,
        conv_pool: int = 2,
        rnn: str = "gru",
        hidden: int = 128,
        layers: int = 1,
        bidirectional: bool = False,
        pool: str = "max",
        dropout: float = 0.1,
    ) -> None:
        super().__init__(in_kind=in_kind, n_classes=n_classes, vocab_size=vocab_size)
        channels = int_tuple("crnn", "channels", channels)
        check_positive("crnn", embed_dim=embed_dim, kernel_size=kernel_size, conv_pool=conv_pool)
        check_positive("crnn", hidden=hidden, layers=layers)
        check_choice("crnn", "rnn", rnn, ("gru", "lstm"))
        check_choice("crnn", "pool", pool, POOLS)
        self.pool = pool
        self.conv_pool = conv_pool
        self._init_embedding(embed_dim)
        conv, bn, maxpool = layers_for(1 if self.is_sequence else 2)
        in_ch = embed_dim if self.is_sequence else 1
        self.blocks = nn.ModuleList()
        for ch in channels:
            self.blocks.append(
                nn.ModuleDict(
                    {
                        "conv": conv(in_ch, ch, kernel_size, padding=kernel_size // 2, bias=False),
                        "bn": bn(ch),
                        "act": nn.ReLU(),
                        "pool": maxpool(conv_pool, conv_pool, ceil_mode=True),
                    }
                )
            )
            in_ch = ch
        self.rnn = RecurrentLayers(rnn, in_ch, hidden, layers, bool(bidirectional), dropout)
        self._init_head(self.rnn.out_features, dropout)

    def _steps(self, e: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
        """Conv front end: steps (B, T', C), real lengths (B,), step mask (B, T') or None."""
        x = apply_mask(e.transpose(1, 2), mask) if self.is_sequence else e
        for b in self.blocks:
            x = b["pool"](apply_mask(b["act"](b["bn"](b["conv"](x))), mask))
            mask = downsample_mask(mask, self.conv_pool)
        steps = x.transpose(1, 2) if self.is_sequence else x.mean(-1).transpose(1, 2)  # (B, T', C)
        if mask is None:
            lengths = torch.full((steps.shape[0],), steps.shape[1], dtype=torch.long, device=steps.device)
        else:
            lengths = mask.sum(1).clamp(min=1)
        return steps, lengths, mask

    def cam_layer(self) -> nn.Module:
        return self.blocks[-1]["act"]
