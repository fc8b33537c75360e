"""``malconv``: MalConv (Raff et al. 2017) with MalConv2-style low-memory chunking.

Embedding (8) -> two 1-D convs over non-overlapping windows (kernel = stride = 512, 128 channels),
one gating the other through a sigmoid -> global max pool over time -> linear + ReLU -> linear.

Inputs of several MB fit in bounded memory as in MalConv2's LowMemConv.py: when the input spans more
than ``chunk_size`` positions, the max-pool winners are found chunk by chunk under ``torch.no_grad``,
then only the winning window of each channel is embedded and convolved again with gradients. Memory
follows ``chunk_size``, not the file length; the result equals an unchunked forward.

Windows made only of padding are left out of the max pool, so padding never changes a sample's output.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from malvision.models._base import MalvisionModel, check_positive
from malvision.models._registry import register_model

__all__ = ["MalConv"]


@register_model("malconv")
class MalConv(MalvisionModel):
    """MalConv: gated 1-D conv over 512-byte windows, global max pool, two linear layers."""

    input_kinds = ("bytes", "opcodes")
    reads_whole = True

    def __init__(
        self,
        *,
        in_kind: str,
        n_classes: int,
        vocab_size: int | None = None,
        embed_dim: int = 8,
        window: int = 512,
        stride: int = 512,
        channels: int = 128,
        hidden: int = 128,
        chunk_size: int = 65536,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(in_kind=in_kind, n_classes=n_classes, vocab_size=vocab_size)
        check_positive(
            "malconv",
            embed_dim=embed_dim,
            window=window,
            stride=stride,
            channels=channels,
            hidden=hidden,
            chunk_size=chunk_size,
        )
        self.window = window
        self.stride = stride
        self.chunk_size = chunk_size
        self._init_embedding(embed_dim)
        self.conv = nn.Conv1d(embed_dim, channels, window, stride=stride)
        self.gate = nn.Conv1d(embed_dim, channels, window, stride=stride)
        self.fc1 = nn.Linear(channels, hidden)
        self.act = nn.ReLU()
        self._init_head(hidden, dropout)

    # -- the chunked max pool -----------------------------------------------------------------------
    def _gated(self, e: Tensor) -> Tensor:
        """(B, E, T) embedded -> (B, C, windows) gated activations."""
        return self.conv(e) * torch.sigmoid(self.gate(e))

    def _positions_per_chunk(self) -> int:
        return max(1, (self.chunk_size - self.window) // self.stride + 1)

    def _max_pool(
        self,
        valid: Tensor,
        span: Callable[[int, int], Tensor],
        windows: Callable[[Tensor], Tensor],
    ) -> Tensor:
        """Max over windows of the gated conv: (B, C).

        ``valid`` (B, n) marks the windows (one every ``stride`` steps from 0) that hold a real token;
        ``span(a, b)`` gives the embedded input [a, b) as (B, E, b - a) (zeros past the end; b < 0:
        all of it, right-padded with window - 1 zeros);
        ``windows(starts)`` gives the windows starting at ``starts`` (B, C) as (B, C, window, E).
        """
        k, s = self.window, self.stride
        n_out = valid.shape[1]
        per_chunk = self._positions_per_chunk()
        if n_out <= per_chunk:  # one piece: the plain, unchunked forward (traceable for ONNX)
            g = self._gated(span(0, -1))
            return g.masked_fill(~valid.unsqueeze(1), float("-inf")).amax(-1)
        best: Tensor | None = None
        best_pos: Tensor | None = None
        with torch.no_grad():
            for p0 in range(0, n_out, per_chunk):
                p1 = min(n_out, p0 + per_chunk)
                g = self._gated(span(p0 * s, (p1 - 1) * s + k))
                g = g.masked_fill(~valid[:, p0:p1].unsqueeze(1), float("-inf"))
                v, i = g.max(-1)
                if best is None or best_pos is None:
                    best, best_pos = v, i
                else:
                    better = v > best
                    best = torch.where(better, v, best)
                    best_pos = torch.where(better, i + p0, best_pos)
        assert best is not None and best_pos is not None
        if not torch.is_grad_enabled():
            return best
        win = windows(best_pos * s)  # recompute only the winners, with gradients
        a = torch.einsum("bcke,cek->bc", win, self.conv.weight) + self.conv.bias
        g = torch.einsum("bcke,cek->bc", win, self.gate.weight) + self.gate.bias
        return a * torch.sigmoid(g)

    def _pooled(self, ids: Tensor | None, e: Tensor | None, mask: Tensor | None) -> Tensor:
        """Max-pooled gated features (B, C) from ids (embedded lazily, chunk by chunk) or from ``e``."""
        src = ids if ids is not None else e
        assert src is not None
        b, length = src.shape[0], src.shape[1]
        k, s = self.window, self.stride
        if mask is None:
            mask = torch.ones(b, length, dtype=torch.bool, device=src.device)
        valid = mask[:, ::s]  # a window every s steps while it starts on a real token (masks are prefixes)

        def embed_range(a: int, z: int) -> Tensor:
            """Embedded [a, z) as (B, E, z - a), zeros past the end; z < 0: all, padded by window - 1."""
            whole = z < 0  # no slicing: the traced (ONNX) graph keeps a dynamic length
            part = self.embedding(ids if whole else ids[:, a:z]) if ids is not None else None
            if part is None:
                assert e is not None
                part = e if whole else e[:, a:z]
            m = mask if whole else mask[:, a:z]
            part = part * m.unsqueeze(-1).to(part.dtype)
            extra = k - 1 if whole else z - a - part.shape[1]
            return F.pad(part.transpose(1, 2), (0, extra))

        def windows(starts: Tensor) -> Tensor:
            c = starts.shape[1]
            idx = starts.unsqueeze(-1) + torch.arange(k, device=starts.device)  # (B, C, k)
            inside = idx < length
            flat = idx.clamp(max=length - 1).view(b, c * k)
            keep = (inside & mask.gather(1, flat).view(b, c, k)).unsqueeze(-1)
            if ids is not None:
                w = self.embedding(ids.gather(1, flat)).view(b, c, k, -1)
            else:
                assert e is not None
                w = e.gather(1, flat.unsqueeze(-1).expand(-1, -1, e.shape[-1])).view(b, c, k, -1)
            return w * keep.to(w.dtype)

        return self._max_pool(valid, embed_range, windows)

    # -- the model surface --------------------------------------------------------------------------
    def features_embedded(self, e: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.act(self.fc1(self._pooled(None, e, mask)))

    def forward_features(self, x: Tensor) -> Tensor:
        """Pre-logit features, embedding the ids chunk by chunk (never the whole input at once)."""
        self._check_input(x)
        return self.act(self.fc1(self._pooled(x, None, self.padding_mask(x))))

    def forward(self, x: Tensor) -> Tensor:
        """Logits (B, n_classes) in memory bounded by ``chunk_size``."""
        return self.forward_head(self.forward_features(x))
