"""Tiny model sizes and inputs shared by the model tests (every registered model gets tested)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import nn

from malvision.models import create_model

# Small kwargs per model so the suite stays fast; a model missing here is tested at its defaults.
TINY: dict[str, dict[str, Any]] = {
    "cnn": {"channels": (4, 8), "embed_dim": 4, "stem_stride": 2},
    "resnet": {"channels": (4, 8), "depths": (1, 1), "embed_dim": 4, "stem_stride": 2},
    "rnn": {"embed_dim": 6, "hidden": 8, "row_features": 8},
    "lstm": {"embed_dim": 6, "hidden": 8, "row_features": 8},
    "gru": {"embed_dim": 6, "hidden": 8, "row_features": 8},
    "crnn": {"embed_dim": 4, "channels": (4, 8), "hidden": 8},
    "malconv": {"embed_dim": 4, "window": 8, "stride": 8, "channels": 6, "hidden": 6},
    "mlp": {"n_features": 12, "hidden": (8, 6)},
    "fused": {"n_features": 12, "image_size": 16, "channels": (4, 8), "hidden": (8,)},
}
N_FEATURES = 12
OPCODE_VOCAB = 23
IMAGE_SIZE = 16
SEQ_LEN = 80
N_CLASSES = 3


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny tensors run much faster on one thread than with threads contending for 2 shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def vocab_for(kind: str) -> int | None:
    return OPCODE_VOCAB if kind == "opcodes" else None


@pytest.fixture
def tiny_kwargs() -> Callable[[str], dict[str, Any]]:
    return lambda name: dict(TINY.get(name, {}))


@pytest.fixture
def build() -> Callable[..., nn.Module]:
    """build(name, kind, **overrides): a seeded tiny model with N_CLASSES outputs."""

    def make(name: str, kind: str, **overrides: Any) -> nn.Module:
        torch.manual_seed(0)
        kwargs = {**TINY.get(name, {}), **overrides}
        return create_model(name, in_kind=kind, n_classes=N_CLASSES, vocab_size=vocab_for(kind), **kwargs)

    return make


@pytest.fixture
def make_input() -> Callable[..., torch.Tensor]:
    """make_input(kind, batch=4, seed=0, length=SEQ_LEN): image in [0, 1] or right-padded id rows."""

    def make(kind: str, batch: int = 4, seed: int = 0, length: int = SEQ_LEN) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        if kind in ("image", "views"):
            return torch.rand(batch, 1 if kind == "image" else 2, IMAGE_SIZE, IMAGE_SIZE, generator=g)
        if kind in ("features", "histograms"):  # the models here read N_FEATURES of either
            return torch.randn(batch, N_FEATURES, generator=g) * 3 + 1
        if kind == "fused":  # features, then an image in [0, 1]
            feats = torch.randn(batch, N_FEATURES, generator=g) * 3 + 1
            return torch.cat([feats, torch.rand(batch, IMAGE_SIZE**2, generator=g)], dim=1)
        high = 257 if kind == "bytes" else OPCODE_VOCAB
        x = torch.randint(1, high, (batch, length), generator=g)
        for i in range(1, batch):  # row 0 is full, later rows are shorter
            x[i, length - 7 * i :] = 0
        return x

    return make
