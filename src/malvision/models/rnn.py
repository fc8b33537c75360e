"""Recurrent models: ``rnn`` (vanilla tanh), ``lstm`` and ``gru`` over tokens or image rows.

Sequences (bytes, opcode ids) are embedded, one step per token. Images are read row by row (file
order): each of the S rows is one step, area-resized to ``row_features`` values and projected to
``embed_dim``. The recurrent outputs (B, T, hidden * directions) are pooled over real steps:
"last" (last non-pad step; for the backward direction, its final state at step 0), "max" or "mean".

Padding never changes a real sample's output, without packing: the forward direction is causal, so
right padding comes after every real step, and the backward direction runs on each sequence reversed
within its own length (a gather), so its padding also comes last. This keeps the graph free of
data-dependent Python (ONNX-friendly).

``forward_sequence`` returns the top layer's states (B, T, hidden * directions) wired into the
recurrence, so after a backward pass ``states.grad[:, t]`` is the total dL/dh_t (through later steps,
not only the pooling): what a vanishing-gradient study needs.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from malvision.models._base import MalvisionModel, check_choice, check_positive
from malvision.models._registry import BYTE_KINDS, register_model

__all__ = ["POOLS", "CELLS", "RecurrentLayers", "pool_states", "RecurrentNet", "RNN", "LSTM", "GRU"]

POOLS = ("last", "max", "mean")
CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def _reverse_index(lengths: Tensor, steps: int) -> Tensor:
    """(B, T) index reversing each row within its length (pad steps stay put); its own inverse."""
    t = torch.arange(steps, device=lengths.device).unsqueeze(0)
    n = lengths.unsqueeze(1)
    return torch.where(t < n, n - 1 - t, t)


def _area_matrix(n_in: int, n_out: int, like: Tensor) -> Tensor:
    """(n_in, n_out) weights averaging n_in values into n_out by overlapped area (a MatMul in ONNX)."""
    r = n_in / n_out
    i = torch.arange(n_in, device=like.device, dtype=like.dtype).unsqueeze(1)
    j = torch.arange(n_out, device=like.device, dtype=like.dtype).unsqueeze(0)
    overlap = torch.minimum(i + 1, (j + 1) * r) - torch.maximum(i, j * r)
    return overlap.clamp(min=0) / r


def _take(x: Tensor, index: Tensor) -> Tensor:
    """x (B, T, F) reordered along T by index (B, T)."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class RecurrentLayers(nn.Module):
    """Stacked RNN/LSTM/GRU layers, optionally bidirectional, exact under right padding."""

    def __init__(
        self, cell: str, input_size: int, hidden: int, layers: int, bidirectional: bool, dropout: float
    ) -> None:
        super().__init__()
        rnn_cls = CELLS[cell]
        self.hidden = hidden
        self.bidirectional = bidirectional
        dirs = 2 if bidirectional else 1
        sizes = [input_size] + [hidden * dirs] * (layers - 1)
        self.fwd = nn.ModuleList(rnn_cls(s, hidden, batch_first=True) for s in sizes)
        self.bwd = None
        if bidirectional:
            self.bwd = nn.ModuleList(rnn_cls(s, hidden, batch_first=True) for s in sizes)
        self.drop = nn.Dropout(dropout)
        if cell == "lstm":  # forget-gate bias 1: remember by default (Jozefowicz et al. 2015)
            with torch.no_grad():
                for m in self.modules():
                    if isinstance(m, nn.LSTM):  # gates i, f, g, o: f is the second quarter
                        m.bias_ih_l0[hidden : 2 * hidden].fill_(1.0)
                        m.bias_hh_l0[hidden : 2 * hidden].fill_(0.0)

    @property
    def out_features(self) -> int:
        return self.hidden * (2 if self.bidirectional else 1)

    def _layer(self, i: int, h: Tensor, rev: Tensor | None, taps: Tensor | None = None) -> Tensor:
        """Outputs of layer ``i`` (both directions); ``taps`` (B, T, D) are added to them step by step."""
        fwd = self.fwd[i]
        out = fwd(h)[0] if taps is None else _run_tapped(fwd, h, taps[..., : self.hidden])
        if self.bwd is not None and rev is not None:
            hr = _take(h, rev)
            if taps is None:
                back = self.bwd[i](hr)[0]
            else:
                back = _run_tapped(self.bwd[i], hr, _take(taps[..., self.hidden :], rev))
            out = torch.cat([out, _take(back, rev)], dim=-1)
        return out

    def _below_top(self, x: Tensor, rev: Tensor | None) -> Tensor:
        """Input of the top layer: x through the lower layers (with dropout between layers)."""
        h = x
        for i in range(len(self.fwd) - 1):
            h = self.drop(self._layer(i, h, rev))
        return h

    def _rev(self, x: Tensor, lengths: Tensor) -> Tensor | None:
        return _reverse_index(lengths, x.shape[1]) if self.bwd is not None else None

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        """States (B, T, hidden * directions) of the top layer for x (B, T, F) with real ``lengths``."""
        rev = self._rev(x, lengths)
        return self._layer(len(self.fwd) - 1, self._below_top(x, rev), rev)

    def forward_tapped(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """(states, outputs): ``states`` holds the top layer's h_t and is wired into the recurrence.

        The top layer is recomputed step by step with ``states[:, t] - states[:, t].detach()`` (zero)
        added to h_t before it feeds step t + 1 and the output, so ``states.grad`` after a backward
        pass is the total dL/dh_t through the recurrence, not only the direct path to the pooling.
        """
        rev = self._rev(x, lengths)
        h = self._below_top(x, rev)
        top = len(self.fwd) - 1
        if not torch.is_grad_enabled():
            out = self._layer(top, h, rev)
            return out, out
        with torch.no_grad():
            values = self._layer(top, h, rev)
        states = values.requires_grad_(True)
        return states, self._layer(top, h, rev, taps=states)


def _run_tapped(rnn: nn.RNNBase, x: Tensor, taps: Tensor) -> Tensor:
    """Run a one-layer ``rnn`` over x (B, T, F) step by step (PyTorch's cell equations), adding
    zero-valued taps to each h_t before it feeds the next step."""
    w_hh, b_hh = rnn.weight_hh_l0, rnn.bias_hh_l0
    pre = F.linear(x, rnn.weight_ih_l0, rnn.bias_ih_l0)  # input projections of all steps at once
    h = x.new_zeros(x.shape[0], rnn.hidden_size)
    c = torch.zeros_like(h)
    outs = []
    # unbind once: one backward node for all steps (indexing per step would cost O(T^2) in backward)
    for pre_t, tap in zip(pre.unbind(1), taps.unbind(1), strict=True):
        gh = F.linear(h, w_hh, b_hh)
        if rnn.mode == "LSTM":
            i, f, g, o = (pre_t + gh).chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
        elif rnn.mode == "GRU":
            ir, iz, in_ = pre_t.chunk(3, dim=1)
            hr, hz, hn = gh.chunk(3, dim=1)
            r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
            h = (1 - z) * torch.tanh(in_ + r * hn) + z * h
        else:  # RNN_TANH
            h = torch.tanh(pre_t + gh)
        h = h + (tap - tap.detach())
        outs.append(h)
    return torch.stack(outs, dim=1)


def pool_states(
    states: Tensor, lengths: Tensor, mask: Tensor | None, mode: str, hidden: int, bidirectional: bool
) -> Tensor:
    """(B, T, D) recurrent states -> (B, D): last real step, or max / mean over real steps."""
    if mode == "last":
        idx = (lengths - 1).view(-1, 1, 1).expand(-1, 1, states.shape[-1])
        last = states.gather(1, idx).squeeze(1)
        if bidirectional:  # the backward direction ends at step 0
            last = torch.cat([last[:, :hidden], states[:, 0, hidden:]], dim=1)
        return last
    if mode == "max":
        if mask is not None:
            states = states.masked_fill(~mask.unsqueeze(-1), float("-inf"))
        return states.amax(1)
    if mask is None:
        return states.mean(1)
    m = mask.unsqueeze(-1).to(states.dtype)
    return (states * m).sum(1) / lengths.unsqueeze(1).to(states.dtype)


class RecurrentReadout:
    """What every model with a recurrent layer shares: states, pooled features, dL/dh_t access.

    Subclasses give ``_steps(e, mask) -> (steps (B, T, C), lengths (B,), mask)``, ``rnn``
    (a ``RecurrentLayers``) and ``pool``.
    """

    rnn: RecurrentLayers
    pool: str

    def sequence_states(self, e: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
        """Recurrent states (B, T, H * dirs), real lengths (B,), step mask (B, T) or None."""
        steps, lengths, mask = self._steps(e, mask)
        return self.rnn(steps, lengths), lengths, mask

    def features_embedded(self, e: Tensor, mask: Tensor | None = None) -> Tensor:
        states, lengths, mask = self.sequence_states(e, mask)
        return pool_states(states, lengths, mask, self.pool, self.rnn.hidden, self.rnn.bidirectional)

    def forward_sequence(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(logits, states): after a backward pass ``states.grad[:, t]`` is dL/dh_t (B, T, H * dirs).

        For analysis (e.g. vanishing gradients): the top layer runs step by step, so it is slower than
        ``forward``; the logits match ``forward``'s up to float rounding.
        """
        steps, lengths, mask = self._steps(self.embed(x), self.padding_mask(x))
        states, out = self.rnn.forward_tapped(steps, lengths)
        feats = pool_states(out, lengths, mask, self.pool, self.rnn.hidden, self.rnn.bidirectional)
        return self.forward_head(feats), states


class RecurrentNet(RecurrentReadout, MalvisionModel):
    """Recurrent classifier; subclasses pick the cell."""

    cell: ClassVar[str] = "lstm"
    input_kinds = BYTE_KINDS

    def __init__(
        self,
        *,
        in_kind: str,
        n_classes: int,
        vocab_size: int | None = None,
        embed_dim: int = 64,
        hidden: int = 128,
        layers: int = 1,
        bidirectional: bool = False,
        pool: str = "max",
        row_features: int = 64,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(in_kind=in_kind, n_classes=n_classes, vocab_size=vocab_size)
        name = self.cell
        check_positive(name, embed_dim=embed_dim, hidden=hidden, layers=layers, row_features=row_features)
        check_choice(name, "pool", pool, POOLS)
        self.pool = pool
        self.row_features = row_features
        self._init_embedding(embed_dim)
        if not self.is_sequence:
            self.row_proj = nn.Linear(row_features, embed_dim)
        self.rnn = RecurrentLayers(self.cell, embed_dim, hidden, layers, bool(bidirectional), dropout)
        self._init_head(self.rnn.out_features, dropout)

    def _steps(self, e: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
        """Time-major input (B, T, E), real lengths (B,) and mask (B, T) or None."""
        if self.is_sequence:
            steps = e if mask is None else e * mask.unsqueeze(-1).to(e.dtype)
        else:
            rows = e[:, 0]  # (B, S rows, S columns): row i is step i
            if rows.shape[-1] != self.row_features:
                rows = rows @ _area_matrix(rows.shape[-1], self.row_features, rows)
            steps, mask = self.row_proj(rows), None
        b, t = steps.shape[:2]
        if mask is None:
            lengths = torch.full((b,), t, dtype=torch.long, device=steps.device)
        else:
            lengths = mask.sum(1).clamp(min=1)
        return steps, lengths, mask


@register_model("rnn")
class RNN(RecurrentNet):
    """Vanilla (Elman, tanh) RNN classifier over tokens or image rows."""

    cell = "rnn"


@register_model("lstm")
class LSTM(RecurrentNet):
    """LSTM classifier over tokens or image rows."""

    cell = "lstm"


@register_model("gru")
class GRU(RecurrentNet):
    """GRU classifier over tokens or image rows."""

    cell = "gru"
