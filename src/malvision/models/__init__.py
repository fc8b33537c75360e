"""The model zoo: every model is registered by name and built with ``create_model``.

    model = create_model("cnn", in_kind="image", n_classes=9)

Models return logits and share one surface (see ``_base.MalvisionModel``): ``embed`` and
``forward_embedded`` (the gradient seam for sequence inputs), ``forward_features`` (pre-logits),
``forward_head`` and ``input_kinds``.
"""

from __future__ import annotations

from malvision.models import cnn, crnn, malconv, mlp, rnn, trees  # noqa: F401  (importing registers the models)
from malvision.models._base import MalvisionModel
from malvision.models._registry import (
    BYTES_VOCAB,
    KINDS,
    ModelInfo,
    create_model,
    list_models,
    model_info,
    register_model,
)

__all__ = [
    "BYTES_VOCAB",
    "KINDS",
    "MalvisionModel",
    "ModelInfo",
    "create_model",
    "list_models",
    "model_info",
    "register_model",
]
