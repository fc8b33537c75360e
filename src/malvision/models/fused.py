"""``fused``: a byte-picture branch and a PE-structure branch read together (input kind ``fused``).

One float32 row holds the PE feature vector and then the byte plot's S x S image in [0, 1]
(``convert.prepare``). The features go through the MLP's body (standardised, clipped, hidden layers),
the image through the CNN's convolutional blocks and global pooling; their outputs are joined before
one linear layer, so the model learns what the picture adds to the structure and the other way round.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from malvision.convert.pefeatures import N_FEATURES
from malvision.errors import ModelError
from malvision.models._base import MalvisionModel, check_positive
from malvision.models._registry import register_model
from malvision.models.cnn import CNN
from malvision.models.mlp import MLP

__all__ = ["Fused"]


@register_model("fused")
class Fused(MalvisionModel):
    """Byte-plot CNN branch and PE-feature MLP branch, joined before one linear layer."""

    input_kinds = ("fused",)

    def __init__(
        self,
        *,
        in_kind: str,
        n_classes: int,
        vocab_size: int | None = None,
        n_features: int = N_FEATURES,
        image_size: int = 64,
        channels: Sequence[int] = (16, 32, 64),
        hidden: Sequence[int] = (128, 64),
        dropout: float = 0.2,
    ) -> None:
        super().__init__(in_kind=in_kind, n_classes=n_classes, vocab_size=vocab_size)
        check_positive("fused", n_features=n_features, image_size=image_size)
        self.n_features, self.image_size = n_features, image_size
        self.tabular = MLP(
            in_kind="features", n_classes=n_classes, n_features=n_features, hidden=hidden, dropout=dropout
        )
        self.picture = CNN(in_kind="image", n_classes=n_classes, channels=channels, dropout=0.0)
        for branch in (self.tabular, self.picture):  # their own heads are not used
            branch.fc = nn.Identity()
        self._init_head(self.tabular.num_features + self.picture.num_features, dropout)

    def _check_input(self, x: Tensor) -> None:
        width = self.n_features + self.image_size**2
        if x.dim() != 2 or not x.is_floating_point() or x.shape[1] != width:
            raise ModelError(
                f"fused expects a float (B, {width}) tensor ({self.n_features} features, then a "
                f"{self.image_size}x{self.image_size} image), got {x.dtype} {tuple(x.shape)}"
            )

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(features (B, F), image (B, 1, S, S)) of a fused row."""
        s = self.image_size
        return x[:, : self.n_features], x[:, self.n_features :].reshape(-1, 1, s, s)

    def features_embedded(self, e: Tensor, mask: Tensor | None = None) -> Tensor:
        import torch

        feats, image = self.split(e)
        return torch.cat([self.tabular.forward_features(feats), self.picture.forward_features(image)], dim=1)

    def typical_input(self) -> tuple[Tensor, Tensor]:
        """The baseline explanations measure against: the average training file's features, a black image."""
        import torch

        mean, std = self.tabular.typical_input()
        pixels = self.image_size**2
        return torch.cat([mean, torch.zeros(pixels)]), torch.cat([std, torch.ones(pixels)])

    def cam_layer(self) -> nn.Module:
        return self.picture.cam_layer()

    @staticmethod
    def side(width: int, n_features: int = N_FEATURES) -> int:
        """The image side of a fused row ``width`` values wide."""
        return math.isqrt(width - n_features)
