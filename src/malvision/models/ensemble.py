"""Several networks of one recipe as one model: the mean of their logits (for two classes, of their log-odds).

``create_model(name, ..., members=K)`` builds it; ``train.fit`` trains each member as its own run with its own
seed (weights, batch order, dropout) and then joins them, so a checkpoint, ONNX export and scan treat it as one
network. Members read the input as it is (pictures and vectors): ``embed`` is the identity and gradients reach
the input through every member, so explanations work as for one network. Sequence models are left out: each
member would have an embedding of its own, and the gradient seam has one. The trees' counterpart is ``lgbm``'s
``bags``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from malvision.errors import ModelError
from malvision.models._base import KINDS, MalvisionModel

__all__ = ["Ensemble"]


class Ensemble(MalvisionModel):
    """The mean of the logits of ``members``, networks alike but for their weights."""

    input_kinds = KINDS

    def __init__(self, members: Sequence[MalvisionModel]) -> None:
        first = members[0]
        super().__init__(in_kind=first.in_kind, n_classes=first.n_classes, vocab_size=first.vocab_size)
        if first.is_sequence:
            raise ModelError(
                f"members: a {type(first).__name__} on {first.in_kind} embeds its input, and an ensemble's members "
                "would each embed it their own way; ensembles take pictures and vectors"
            )
        self.members = nn.ModuleList(members)

    def embed(self, x: Tensor) -> Tensor:
        return self.members[0].embed(x)  # the input itself, checked

    def forward_embedded(self, e: Tensor, mask: Tensor | None = None) -> Tensor:
        return torch.stack([m.forward_embedded(e, mask) for m in self.members]).mean(0)

    def features_embedded(self, e: Tensor, mask: Tensor | None = None) -> Tensor:
        raise ModelError("an ensemble has no one feature layer: each member has its own")

    def reset_classifier(self, n_classes: int) -> None:
        raise ModelError("an ensemble's members each have a classifier; fine-tune one network instead")

    def typical_input(self) -> tuple[Tensor, Tensor]:
        """The first member's baseline (every member saw the same training rows)."""
        return self.members[0].typical_input()
