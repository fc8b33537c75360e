"""Shared fixtures: seeded random bytes and a helper that writes small files into tmp_path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """A freshly seeded generator, so every test sees the same bytes on every run."""
    return np.random.default_rng(20110714)


@pytest.fixture
def make_file(tmp_path: Path) -> Callable[[str, bytes], Path]:
    """Write ``data`` to ``tmp_path/<relative name>`` (folders created) and return the path."""

    def make(name: str, data: bytes) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    return make


@pytest.fixture(scope="session")
def tiny_detector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained benign/malware detector checkpoint: a small cnn on 32x32 byte-plot images."""
    import torch

    from malvision.checkpoint import save_checkpoint
    from malvision.convert.spec import ConvertSpec
    from malvision.models import create_model

    torch.manual_seed(0)
    kwargs = {"channels": [8, 16]}
    model = create_model("cnn", in_kind="image", n_classes=2, **kwargs)
    return save_checkpoint(
        tmp_path_factory.mktemp("tiny-detector") / "detector.pt",
        model,
        model_name="cnn",
        model_kwargs=kwargs,
        in_kind="image",
        n_classes=2,
        vocab_size=None,
        spec=ConvertSpec(kind="image", image_size=32).to_dict(),
        classes=["benign", "malware"],
        seed=0,
        manifest_hash=None,
    )
