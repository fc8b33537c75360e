"""Byte sequences for raw-byte models and token sequences for opcode models.

Bytes are shifted up by one so that 0 is padding and never collides with a byte value (as MalConv2's
``binaryLoader.py`` does); opcode ids reserve 0 for padding and 1 for unknown mnemonics.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from malvision.errors import ConversionError

__all__ = [
    "DEFAULT_MAX_LEN",
    "PAD",
    "UNK",
    "byte_sequence",
    "pad_batch",
    "Vocabulary",
]

DEFAULT_MAX_LEN = 2 * 1024 * 1024  # 2 MiB
PAD = 0
UNK = 1


def byte_sequence(data: bytes | memoryview | np.ndarray, max_len: int = DEFAULT_MAX_LEN) -> np.ndarray:
    """The first ``max_len`` bytes of ``data`` as uint16 values byte + 1 (0 is left for padding)."""
    if max_len < 1:
        raise ConversionError(f"max_len must be positive, got {max_len}")
    flat = data.reshape(-1) if isinstance(data, np.ndarray) else np.frombuffer(data, dtype=np.uint8)
    if flat.dtype != np.uint8:
        raise ConversionError(f"expected uint8 bytes, got {flat.dtype}")
    if flat.size == 0:
        raise ConversionError("no bytes to make a sequence from")
    return flat[:max_len].astype(np.uint16) + 1


def pad_batch(seqs: Sequence[np.ndarray], length: int | None = None) -> np.ndarray:
    """Stack sequences into a (batch, length) int64 array padded with 0 (default: longest item)."""
    if not seqs:
        raise ConversionError("cannot pad an empty batch")
    length = max(len(s) for s in seqs) if length is None else length
    if not length >= 0:
        raise ConversionError(f"pad length must be at least 0, got {length}")
    out = np.zeros((len(seqs), length), dtype=np.int64)
    for row, seq in zip(out, seqs, strict=True):
        n = min(len(seq), length)
        row[:n] = seq[:n]
    return out


class _Ids(dict):
    """Token -> id, ``UNK`` for a token it does not hold (and it stays out)."""

    def __missing__(self, token: str) -> int:
        return UNK


class Vocabulary:
    """Token <-> id map built from training data only; id 0 is padding, 1 is unknown."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self.tokens = tuple(tokens)
        self.index = _Ids({tok: i + 2 for i, tok in enumerate(self.tokens)})
        if len(self.index) != len(self.tokens):
            raise ConversionError("vocabulary has duplicate tokens")

    @classmethod
    def build(
        cls, docs: Iterable[Iterable[str]], max_size: int | None = None, min_count: int = 1
    ) -> Vocabulary:
        """Count tokens over training documents; most frequent first, ties broken by name."""
        counts: Counter[str] = Counter()
        for doc in docs:
            counts.update(doc)
        ranked = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
        return cls(ranked[:max_size] if max_size else ranked)

    def __len__(self) -> int:
        """Number of ids, including padding and unknown."""
        return len(self.tokens) + 2

    def encode(self, tokens: Iterable[str], max_len: int | None = None) -> np.ndarray:
        """Token ids (uint16/int32) for ``tokens``, unknown ones as ``UNK``, cut at ``max_len``."""
        if max_len is not None:
            tokens = itertools.islice(tokens, max_len)
        dtype = np.uint16 if len(self) < 65536 else np.int32
        return np.fromiter(map(self.index.__getitem__, tokens), dtype=dtype)  # the lookups run in C

    def to_list(self) -> list[str]:
        return list(self.tokens)
