"""``mlp``: a multilayer perceptron over a vector a file: the PE structure vector (``features``,
``convert.pefeatures``) or a file's histograms and strings (``histograms``, ``convert.histograms``).

The first layer is a BatchNorm without affine weights: it standardises each feature with running
statistics learnt in training, so raw log-sizes, flags and shares can go in as they are, and the
export to ONNX keeps that step inside the model. Standardised values are clipped to +-CLIP: a feature
that never varied in training (an import only one held-out project uses) would otherwise come out
hundreds of deviations off and push every file that has it to a certain verdict.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from malvision.convert.spec import ConvertSpec
from malvision.errors import ModelError
from malvision.models._base import MalvisionModel, check_positive, int_tuple
from malvision.models._registry import register_model

__all__ = ["MLP", "CLIP"]

CLIP = 5.0


class _Standardise(nn.BatchNorm1d):
    """BatchNorm without affine weights, its output clipped to +-CLIP (same weights as a BatchNorm1d).
    A training batch of one row has no batch statistics: it is standardised with the running ones."""

    def forward(self, x: Tensor) -> Tensor:
        if self.training and x.shape[0] == 1:
            mean, var = self.running_mean, self.running_var
            assert mean is not None and var is not None
            return ((x - mean) / (var + self.eps).sqrt()).clamp(-CLIP, CLIP)
        return super().forward(x).clamp(-CLIP, CLIP)


@register_model("mlp")
class MLP(MalvisionModel):
    """MLP on a vector a file: standardise, hidden ReLU layers with dropout, one linear layer."""

    input_kinds = ("features", "histograms")

    def __init__(
        self,
        *,
        in_kind: str,
        n_classes: int,
        vocab_size: int | None = None,
        n_features: int | None = None,
        hidden: Sequence[int] = (128, 64),
        dropout: float = 0.2,
    ) -> None:
        super().__init__(in_kind=in_kind, n_classes=n_classes, vocab_size=vocab_size)
        if n_features is None:  # the length of the kind's vector
            n_features = ConvertSpec(kind=in_kind).fixed_shape[0]  # type: ignore[arg-type,index]
        check_positive("mlp", n_features=n_features)
        widths = int_tuple("mlp", "hidden", hidden)
        if not 0.0 <= dropout < 1.0:
            raise ModelError(f"mlp: dropout must be in [0, 1), got {dropout}")
        self.n_features = n_features
        layers: list[nn.Module] = [_Standardise(n_features, affine=False)]
        width = n_features
        for w in widths:
            layers += [nn.Linear(width, w), nn.ReLU(), nn.Dropout(dropout)]
            width = w
        self.body = nn.Sequential(*layers)
        self._init_head(width, 0.0)

    def _check_input(self, x: Tensor) -> None:
        super()._check_input(x)
        if x.shape[1] != self.n_features:
            raise ModelError(f"mlp expects {self.n_features} features per row, got {x.shape[1]}")

    def typical_input(self) -> tuple[Tensor, Tensor]:
        """Mean and standard deviation of the training inputs, per feature (the input BatchNorm's
        running statistics): the baseline explanations measure against."""
        bn = self.body[0]
        return bn.running_mean.detach().clone(), bn.running_var.detach().sqrt()

    def features_embedded(self, e: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.body(e)
