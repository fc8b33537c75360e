"""Torch data loaders over a dataset cache: seeded, sequences batched by length, ready for DDP."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler

from malvision.convert.batch import batch

__all__ = ["collate", "SizeBucketSampler", "make_loader"]


class _Subset(Dataset):
    def __init__(self, ds: Any, indices: Sequence[int], max_len: int | None) -> None:
        self.ds, self.indices, self.max_len = ds, np.asarray(indices), max_len

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        x, y = self.ds[int(self.indices[i])]
        if x.ndim == 1 and self.max_len is not None:
            x = x[: self.max_len]
        return x, y


def collate(items: list[tuple[np.ndarray, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels) as the tensors a model reads: ``convert.batch`` of the inputs, as the
    scanner batches them."""
    xs, ys = zip(*items, strict=True)
    return torch.from_numpy(batch(xs)), torch.as_tensor(ys, dtype=torch.long)


class SizeBucketSampler(Sampler[list[int]]):
    """Batches of similar-length sequences (less padding), batch order shuffled each epoch."""

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int) -> None:
        self.lengths, self.batch_size, self.seed, self.epoch = lengths, batch_size, seed, 0

    def __iter__(self):
        rng = np.random.default_rng(self.seed + self.epoch)
        self.epoch += 1
        noisy = self.lengths * rng.uniform(0.9, 1.1, len(self.lengths))
        order = np.argsort(noisy, kind="stable")
        batches = [order[i : i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)]
        rng.shuffle(batches)
        yield from batches

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)


def make_loader(
    ds: Any,
    indices: Sequence[int],
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    max_len: int | None = None,
    distributed: bool = False,
) -> DataLoader:
    """A loader over ``indices`` of a cached dataset; sequences are batched by length when shuffling."""
    sub = _Subset(ds, indices, max_len)
    g = torch.Generator()
    g.manual_seed(seed)
    if distributed:
        sampler = DistributedSampler(sub, shuffle=shuffle, seed=seed, drop_last=False)
        return DataLoader(sub, batch_size=batch_size, sampler=sampler, collate_fn=collate)
    lengths = getattr(ds, "lengths", None)
    if lengths is not None and ds.spec.fixed_shape is None:
        lens = np.asarray(lengths)[np.asarray(indices)]
        if max_len is not None:
            lens = np.minimum(lens, max_len)
        if shuffle:
            return DataLoader(
                sub, batch_sampler=SizeBucketSampler(lens, batch_size, seed), collate_fn=collate
            )
        order = np.argsort(lens, kind="stable")  # evaluation: sorted, then restored by the caller
        sub.indices = sub.indices[order]
        loader = DataLoader(sub, batch_size=batch_size, shuffle=False, collate_fn=collate)
        loader.restore_order = np.argsort(order, kind="stable")  # type: ignore[attr-defined]
        return loader
    return DataLoader(sub, batch_size=batch_size, shuffle=shuffle, generator=g, collate_fn=collate)
