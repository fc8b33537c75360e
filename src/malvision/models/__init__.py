"""The model zoo: every model is registered by name and built with ``create_model``.

    model = create_model("cnn", in_kind="image", n_classes=9)

Models return logits and follow one of two protocols (``_base``): networks (``MalvisionModel``) share
``embed`` / ``forward_embedded`` (the gradient seam for sequence inputs), ``forward_features``
(pre-logits), ``forward_head`` and ``reset_classifier``; fitted models (``FittedModel``: trees,
logistic regression) learn in one ``fit`` call. ``model_info(name).fitted`` says which.
"""

from __future__ import annotations

from malvision.models import cnn, crnn, fused, linear, malconv, mlp, ngrams, rnn, trees  # noqa: F401  (importing registers the models)
from malvision.models._base import FittedModel, MalvisionModel, is_fitted, learned_numbers
from malvision.models._registry import (
    BYTES_VOCAB,
    KINDS,
    ModelInfo,
    create_model,
    input_kwargs,
    list_models,
    model_info,
    register_model,
)

__all__ = [
    "BYTES_VOCAB",
    "KINDS",
    "FittedModel",
    "MalvisionModel",
    "is_fitted",
    "learned_numbers",
    "ModelInfo",
    "create_model",
    "input_kwargs",
    "list_models",
    "model_info",
    "register_model",
]
