"""How close a sample is to the nearest training samples of each class, from SimHash sign bits.

Each sample's sublinear TF-IDF vector over ``top_k`` grams is kept as ``bits`` signs of random
projections (SimHash: ``bits`` / 8 bytes a training sample); the share of bits two samples differ in
estimates the angle between their vectors, so cos(pi x share) estimates their cosine similarity. The
projections are drawn from each gram's key (splitmix64 of the key and the bit's index), so a model keeps
its keys, never a matrix, and no library's random stream decides them. ``ngram``'s tree head stacks these
similarities (nearest and third-nearest of each class) beside the grams' frequencies: measured on the
BIG2015 folds in ``benchmarks/ngram_search.py`` (``extra=knn,knn_bits=1024``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from malvision.errors import ModelError
from malvision.models.grams import check_sorted, idf_of, select_grams, tfidf_rows

__all__ = ["Neighbours", "planes"]

MIN_DF = 2  # a gram the similarities weigh is in at least this many training samples
RANKS = (1, 3)  # the nearest and the third-nearest training sample of each class
_GOLDEN, _M1, _M2 = (np.uint64(v) for v in (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB))


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser (uint64 in, uint64 out; arithmetic wraps)."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def planes(keys: np.ndarray, bits: int) -> np.ndarray:
    """(len(keys), bits) int8 of +-1: the random hyperplanes of gram ``keys``, each entry the top bit of
    splitmix64 of the key and the bit's index."""
    out = np.empty((len(keys), bits), dtype=np.int8)
    step = _GOLDEN * np.arange(1, bits + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for lo in range(0, len(keys), 2048):
            seed = _mix(np.asarray(keys[lo : lo + 2048]).astype(np.uint64))
            top = (_mix(seed[:, None] + step[None]) >> np.uint64(63)).astype(np.int8)
            out[lo : lo + 2048] = 1 - 2 * top
    return out


class Neighbours(nn.Module):
    """Similarities (B, 2 x classes) of samples to the nearest and third-nearest training sample of each
    class, from their gram counts over ``keys`` (``forward``)."""

    def __init__(self, n_classes: int, bits: int, top_k: int) -> None:
        super().__init__()
        self.n_classes, self.n_bits = n_classes, bits
        self.n_out = len(RANKS) * n_classes
        self.register_buffer("keys", torch.full((top_k,), -1, dtype=torch.int64))  # sorted; -1 never matches
        self.register_buffer("idf", torch.zeros(top_k))
        self.register_buffer("signs", torch.zeros((0, bits // 8), dtype=torch.uint8))  # training rows, packed
        self.register_buffer("labels", torch.zeros(0, dtype=torch.int64))
        self._planes: tuple[int, Tensor] | None = None  # the unused leading columns, the used keys' planes
        self._rows: Tensor | None = None  # the training rows' bits as +-1

    def fit(self, counts: Any, vocab: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Keep the training samples (``counts``: scipy sparse, samples x ``vocab`` keys; class ids ``y``);
        return their own similarities, each left out of its neighbours, so they read as a new sample's."""
        kept, df = select_grams(counts, y, MIN_DF, len(self.keys))
        pad = len(self.keys) - len(kept)  # unused columns first: their key, -1, never matches
        with torch.no_grad():
            self.keys.copy_(torch.from_numpy(np.concatenate([np.full(pad, -1), vocab[kept]])))
            idf = idf_of(df[kept], counts.shape[0])
            self.idf.copy_(torch.from_numpy(np.concatenate([np.zeros(pad), idf]).astype(np.float32)))
        self._planes = self._rows = None
        counts = counts[:, kept].tocsr()
        spans = [(lo, min(lo + 1024, len(y))) for lo in range(0, len(y), 1024)]
        # the counts over every column, as forward reads them: one path from counts to bits
        dense = (np.hstack([np.zeros((hi - lo, pad)), counts[lo:hi].toarray()]) for lo, hi in spans)
        parts = [self._project(torch.from_numpy(d).float()) for d in dense]
        signs, empty = torch.cat([b for b, _ in parts]), torch.cat([e for _, e in parts])
        self.signs = torch.from_numpy(np.packbits(signs.numpy(), axis=1))
        self.labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
        own = [self._similarities(signs[lo:hi], empty[lo:hi], torch.arange(lo, hi)) for lo, hi in spans]
        return torch.cat(own).numpy()

    def forward(self, counts: Tensor) -> Tensor:
        """Similarities (B, 2 x classes) from gram counts (B, top_k) over ``keys``."""
        return self._similarities(*self._project(counts))

    def _project(self, counts: Tensor) -> tuple[Tensor, Tensor]:
        """Sign bits (B, bits, bool) of the TF-IDF rows of gram counts (B, top_k), and which rows are empty
        (no counted gram: all bits 0, no similarity)."""
        skip, p = self._hyperplanes()
        weights = tfidf_rows(counts, self.idf)[:, skip:]
        return (weights @ p) > 0, ~(weights != 0).any(dim=1)

    def _hyperplanes(self) -> tuple[int, Tensor]:
        """How many leading columns are unused, and the used keys' hyperplanes (K, bits, float), made once."""
        if self._planes is None:
            skip = int((self.keys < 0).sum())
            self._planes = (skip, torch.from_numpy(planes(self.keys[skip:].numpy(), self.n_bits)).float())
        return self._planes

    def _similarities(self, signs: Tensor, empty: Tensor, own: Tensor | None = None) -> Tensor:
        """Each row's estimated cosine similarity to the ``RANKS``-th nearest training row of each class
        (-1 where the class has no such row, and for an empty row); ``own``: the rows' own indices among the
        training rows, left out."""
        if self._rows is None:
            self._rows = torch.from_numpy(np.unpackbits(self.signs.numpy(), axis=1)).float() * 2 - 1
        dot = (signs.float() * 2 - 1) @ self._rows.T  # bits - 2 x (bits that differ)
        sim = torch.cos(torch.pi * (self.n_bits - dot) / (2 * self.n_bits))
        if own is not None:
            sim[torch.arange(len(own)), own] = -torch.inf
        out = torch.full((len(signs), self.n_out), -1.0)
        for c in range(self.n_classes):
            of_c = sim[:, self.labels == c]
            if of_c.shape[1]:
                top = of_c.topk(min(max(RANKS), of_c.shape[1]), dim=1).values
                found = torch.isfinite(top).sum(dim=1)  # a class's rows less the row itself
                for j, rank in enumerate(RANKS):
                    at = (torch.clamp(found, max=rank) - 1).clamp(min=0)
                    value = top.gather(1, at[:, None])[:, 0]
                    out[:, j * self.n_classes + c] = torch.where(found > 0, value, -1.0)
        out[empty] = -1.0
        return out

    def check(self) -> None:
        """Refuse loaded keys out of order, or rows without one class id each (a damaged checkpoint)."""
        check_sorted(self.keys)
        labels = self.labels
        if len(labels) != len(self.signs) or bool(((labels < 0) | (labels >= self.n_classes)).any()):
            raise ModelError(
                f"ngram: the checkpoint's {len(self.signs)} neighbours do not have one class id each"
            )

    def take_sizes(self, state_dict: dict, prefix: str) -> None:
        """Take the training rows' count from a checkpoint's ``state_dict`` (a fit decides it)."""
        for name in ("signs", "labels"):
            mine = getattr(self, name)
            if isinstance(got := state_dict.get(prefix + name), Tensor) and got.dim() == mine.dim():
                setattr(self, name, mine.new_empty((len(got), *mine.shape[1:])))
        self._planes = self._rows = None

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        self.take_sizes(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
